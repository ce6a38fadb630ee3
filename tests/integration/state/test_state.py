"""State: migrations on first use, any SQLAlchemy URL, secrets never stored in clear."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from helpers import cli

from cloudherd.state.db import HEAD_REVISION, MIGRATIONS, open_engine
from cloudherd.state.repo import Store


def test_head_revision_constant_matches_alembic() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_migrations_make_every_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    Store(open_engine(url))
    with sqlite3.connect(tmp_path / "x.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert {"users", "infrastructures", "groups", "nodes", "actions", "events"} <= tables
    assert version == HEAD_REVISION
    Store(open_engine(url))  # a second open is a no-op, not an error


def test_cloudherd_db_points_anywhere(tmp_path: Path, home: Path) -> None:
    db = tmp_path / "elsewhere.db"
    result = cli("init", env={"CLOUDHERD_DB": f"sqlite:///{db}"})
    assert result.returncode == 0, result.stderr
    assert db.exists()
    assert not (home / "state.db").exists()
    assert (home / "keys" / "id_ed25519").exists()


def test_broken_database_url_is_one_line(home: Path) -> None:
    result = cli("ls", env={"CLOUDHERD_DB": "nosuchdialect://user:hunter22@host/db"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: state database nosuchdialect://user:***@host/db")
    assert "hunter22" not in result.stderr


def test_secrets_are_masked_in_stored_output(tmp_path: Path, home: Path) -> None:
    (tmp_path / ".env").write_text("DB_PASSWORD=correct-horse-battery\n")
    (tmp_path / "leak.sh").write_text("echo the password is {{ env.DB_PASSWORD }}\necho $DB_PASS >&2\n")
    spec = tmp_path / "spec.yml"
    spec.write_text("name: sec\ngroups:\n  app:\n    scripts: [leak.sh]\n    env: {DB_PASS: '${DB_PASSWORD}'}\n")
    assert cli("up", str(spec)).returncode == 0
    try:
        logs = cli("logs", "sec")
        assert "the password is ***" in logs.stdout
        assert "correct-horse-battery" not in logs.stdout + logs.stderr
        dump = b"".join(p.read_bytes() for p in home.glob("state.db*"))
        assert b"correct-horse-battery" not in dump
    finally:
        assert cli("down", "sec").returncode == 0
