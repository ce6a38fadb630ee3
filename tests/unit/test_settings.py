"""One settings object: every CLOUDHERD_* variable cloudherd reads is declared in cloudherd/settings.py, read
there and nowhere else, and read anew each time (an empty variable is unset, a secret stays out of repr)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import cloudherd
from cloudherd.settings import Settings, current

SRC = Path(cloudherd.__file__).parent
READ = re.compile(r"""(?:environ\.get|environ\[|getenv)\(?\s*["'](CLOUDHERD_[A-Z_]+)""")


def test_no_module_reads_a_setting_of_its_own() -> None:
    readers = {f"{path.relative_to(SRC)}: {name}" for path in SRC.rglob("*.py") if path.name != "settings.py"
               for name in READ.findall(path.read_text(encoding="utf-8"))}
    assert not readers, readers


def test_the_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLOUDHERD_HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDHERD_DB", "")
    monkeypatch.setenv("CLOUDHERD_TOKEN", "chd_secret_value")
    settings = current()
    assert settings.home == str(tmp_path) and settings.db is None and settings.token == "chd_secret_value"
    assert "chd_secret_value" not in repr(settings)
    monkeypatch.setenv("CLOUDHERD_DEBUG", "1")
    assert current().debugging and not settings.debugging
    assert "CLOUDHERD_SSH_CONCURRENCY" in Settings.variables()


def test_the_data_folder_and_database_come_from_the_settings(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    from cloudherd.paths import data_dir
    from cloudherd.state.db import database_url

    monkeypatch.setenv("CLOUDHERD_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("CLOUDHERD_DB", raising=False)
    assert data_dir() == tmp_path / "data" and database_url() == f"sqlite:///{tmp_path / 'data' / 'state.db'}"


def test_the_lease_ttl_is_a_duration_above_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudherd.engine.locks import DEFAULT_TTL, lease_ttl
    from cloudherd.errors import UsageError

    monkeypatch.delenv("CLOUDHERD_LEASE_TTL", raising=False)
    assert lease_ttl() == DEFAULT_TTL
    for text, seconds in (("5", 5.0), ("5s", 5.0), (" 1m ", 60.0)):
        monkeypatch.setenv("CLOUDHERD_LEASE_TTL", text)
        assert lease_ttl() == seconds
    for bad in ("soon", "0", "-5s"):
        monkeypatch.setenv("CLOUDHERD_LEASE_TTL", bad)
        with pytest.raises(UsageError, match=f"CLOUDHERD_LEASE_TTL='{bad}': a duration above zero, such as 15"):
            lease_ttl()
