"""A command killed while it makes a new state database leaves no half schema: the next command finds either
nothing (and migrates) or the whole (before, a kill between two CREATE TABLEs of SQLite's first migration left
"table users already exists" for every command after)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cloudherd.state.db import HEAD_REVISION, open_engine
from cloudherd.state.repo import Store

KILLER = textwrap.dedent("""
    import os, sys
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "after_cursor_execute")
    def die(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(sys.argv[2]):
            os._exit(9)  # as a SIGKILL would: no cleanup, no rollback

    from cloudherd.state.db import open_engine
    open_engine(sys.argv[1])
    sys.exit(3)  # the statement never ran: the test is wrong
""")


@pytest.mark.parametrize("after", ["CREATE TABLE INFRASTRUCTURES", "CREATE INDEX", "INSERT INTO ALEMBIC_VERSION"])
def test_a_kill_during_the_first_migration_leaves_nothing_half_made(tmp_path: Path, after: str) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    killed = subprocess.run([sys.executable, "-c", KILLER, url, after], capture_output=True, text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    store = Store(open_engine(url))  # the next command: migrates from where the kill left it
    with store.engine.connect() as conn:
        tables = {row[0] for row in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert {"users", "infrastructures", "nodes", "leases", "revisions"} <= tables and version == HEAD_REVISION
    assert store.ensure_user("ada", "ssh-ed25519 AAAA", str(tmp_path / "k")).name == "ada"
