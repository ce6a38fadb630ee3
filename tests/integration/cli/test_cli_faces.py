"""The CLI's two clients: what needs the machine holding the state is refused, with the remedy, when a server
is configured; never an internal error from a client that lacks the method."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import HELLO, cli

LOCAL_ONLY = [
    ("manage", "--all", "--once"),
    ("gc",),
    ("adopt", "x", "web", "i-1"),
    ("push", "x", str(HELLO), "/tmp"),
    ("pull", "x", "a", "/tmp"),
    ("ssh", "x", "web-1"),
    ("import", str(HELLO)),
    ("sizes", "local"),
    ("token", "ls"),
    ("user", "ls"),
]


@pytest.mark.parametrize("argv", LOCAL_ONLY, ids=lambda argv: argv[0])
def test_a_local_only_command_is_refused_through_a_server(tmp_path: Path, argv: tuple[str, ...]) -> None:
    # nothing listens there: the refusal comes before any connection, and no local state is made
    env = {"CLOUDHERD_HOME": str(tmp_path / "home"), "CLOUDHERD_SERVER": "http://127.0.0.1:9",
           "CLOUDHERD_TOKEN": "chd_anything"}
    done = cli(*argv, env=env)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert f"`{argv[0]}` runs where the state is, not through a server" in done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "home" / "state.db").exists()


def test_files_only_commands_work_with_a_server_configured(tmp_path: Path) -> None:
    env = {"CLOUDHERD_HOME": str(tmp_path / "home"), "CLOUDHERD_SERVER": "http://127.0.0.1:9",
           "CLOUDHERD_TOKEN": "chd_anything"}
    checked = cli("validate", str(HELLO), env=env)
    assert checked.returncode == 0 and ": ok (hello:" in checked.stdout, checked.stderr
    converted = cli("convert", str(HELLO), env=env)
    assert converted.returncode == 0 and "groups:" in converted.stdout, converted.stderr
