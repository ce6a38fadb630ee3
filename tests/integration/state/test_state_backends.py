"""The state on both backends: SQLite (the default) and a real PostgreSQL server started for the session.

The same repository calls and the same commands, so that `CLOUDHERD_DB=postgresql+psycopg://…` works for
everything: migrations, the one-live-name rule, leases and their fences, scale requests, events, the
server's tables, and `up` / `status` / `scale` / `manage` / `down` of real local nodes from the CLI.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import HELLO, cli
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from cloudherd.state.db import HEAD_REVISION, open_engine
from cloudherd.state.models import utcnow
from cloudherd.state.repo import Store


def store_on(url: str) -> Store:
    return Store(open_engine(url))


def test_migrations_make_every_table_on_both(db_url: str) -> None:
    store = store_on(db_url)
    tables = set(inspect(store.engine).get_table_names())
    assert {"infrastructures", "nodes", "leases", "scale_requests", "api_tokens", "scaling_groups", "jobs",
            "alembic_version"} <= tables
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == HEAD_REVISION
    store_on(db_url)  # opening again is a no-op


def test_one_live_infrastructure_per_name(db_url: str) -> None:
    store = store_on(db_url)
    user = store.ensure_user("alice", "", "")
    fields = {"owner_id": user.id, "state": "ready", "spec_path": "x", "spec_text": "", "ssh_key_path": "k"}
    first = store.create_infrastructure(name="web", **fields)
    with pytest.raises(IntegrityError):
        store.create_infrastructure(name="web", **fields)
    store.set_infrastructure_state(first.id, "destroyed")
    store.create_infrastructure(name="web", **fields)  # the name is free once the first is destroyed
    assert [i.name for i in store.infrastructures()] == ["web"]
    assert len(store.infrastructures(include_destroyed=True)) == 2


def test_leases_are_taken_renewed_and_fenced(db_url: str) -> None:
    store = store_on(db_url)
    taken, lease = store.take_lease("infra:web", "a", "up", {"pid": 1}, 30)
    assert taken and lease is not None and lease.fence == 1
    taken, lease = store.take_lease("infra:web", "b", "up", {"pid": 2}, 30)
    assert not taken and lease is not None and lease.owner == "a"
    assert store.renew_lease("infra:web", "a", 30)
    taken, lease = store.take_lease("infra:web", "b", "up", {"pid": 2}, 30, steal_from="a")
    assert taken and lease is not None and lease.fence == 2
    assert not store.renew_lease("infra:web", "a", 30)  # a lost it
    store.release_lease("infra:web", "b")
    assert store.lease("infra:web") is None


def test_scale_requests_events_and_server_rows(db_url: str) -> None:
    store = store_on(db_url)
    user = store.ensure_user("alice", "", "")
    infra = store.create_infrastructure(name="app", owner_id=user.id, state="ready", spec_path="x", spec_text="",
                                        ssh_key_path="k")
    first = store.add_scale_request(infra.id, "web", "add", 2)
    store.add_scale_request(infra.id, "web", "set", 5, ["n1"])
    assert [r.kind for r in store.pending_scale_requests(infra.id)] == ["add", "set"]
    store.consume_scale_request(first, "done")
    assert [r.kind for r in store.pending_scale_requests(infra.id)] == ["set"]
    asked = store.events(infra.id)  # each request is an event of its own, what the pass's work follows from
    assert [(e.kind, e.message) for e in asked] == [("request", "web: add 2 requested"),
                                                     ("request", "web: set 5 requested")]
    for index in range(5):
        store.add_event(infra.id, "e", f"m{index}")
    events = [e for e in store.events(infra.id) if e.kind == "e"]
    assert [e.message for e in store.events_after(infra.id, events[1].id)] == ["m2", "m3", "m4"]
    assert store.recent_events(infra.id, "e", utcnow() - timedelta(minutes=1))
    token = store.add_token(user_id=user.id, name="t", kind="bearer", key_id="k1", secret_hash="h")
    assert store.token_and_user("k1") is not None and store.token_and_user("k1")[1].name == "alice"  # type: ignore[index]
    store.revoke_token(token.id)
    assert store.token_by_key("k1").revoked_at is not None  # type: ignore[union-attr]
    assert store.add_launch_configuration(owner_id=user.id, name="w@a", template="w", cloud="a", image="i",
                                          instance_type=None, settings={}) is not None
    assert store.add_launch_configuration(owner_id=user.id, name="w@a", template="w", cloud="a", image="i",
                                          instance_type=None, settings={}) is None  # duplicate
    job = store.add_job(owner_id=user.id, infrastructure_id=infra.id, kind="exec", request={"command": "x"})
    assert store.interrupt_running_jobs() == 1 and store.job(job.id).state == "interrupted"  # type: ignore[union-attr]


def test_the_cli_on_postgresql_end_to_end(postgres: object, home: Path, tmp_path: Path) -> None:
    url = postgres.fresh_database()  # type: ignore[attr-defined]
    env = {"CLOUDHERD_DB": url}
    made = cli("up", str(HELLO), env=env, timeout=300)
    assert made.returncode == 0, made.stderr
    infra_id = made.stdout.strip().splitlines()[-1]
    status = json.loads(cli("status", infra_id, "--json", env=env).stdout)
    assert status["ready_nodes"] == 3 and status["state"] == "ready"
    assert cli("scale", infra_id, "web", "+1", env=env).returncode == 0
    status = json.loads(cli("status", infra_id, "--json", env=env).stdout)
    assert status["ready_nodes"] == 4
    assert cli("manage", infra_id, "--once", env=env).returncode == 0
    listed = json.loads(cli("ls", "--json", env=env).stdout)
    assert [i["id"] for i in listed] == [infra_id]
    gone = cli("down", infra_id, env=env, timeout=300)
    assert gone.returncode == 0, gone.stderr
    assert json.loads(cli("ls", "--json", env=env).stdout) == []
    assert not (tmp_path / "cloudherd-home" / "state.db").exists()  # nothing went to SQLite


_FIRST_USE = """
import sys
from cloudherd.engine.context import ensure_identity
from cloudherd.state.db import open_engine
from cloudherd.state.repo import Store
store = Store(open_engine(sys.argv[1]))
sys.stdin.readline()  # all of them start together
identity = ensure_identity(store)
print(identity.user_id, identity.public_key)
"""


def test_first_commands_started_together_agree_on_one_user_and_key(db_url: str, home: Path) -> None:
    """Nine `up`s started at once on a fresh database: each must come out with the same user row and the
    same key pair (a lost insert reads the winner's row; a key placed first is never swapped)."""
    import os
    import subprocess
    import sys

    store_on(db_url)  # migrated once, so the race is on the user and the key only
    procs = [subprocess.Popen([sys.executable, "-c", _FIRST_USE, db_url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
             for _ in range(6)]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    answers = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        answers.append(out.strip())
    assert len(set(answers)) == 1, answers
    public = (home / "keys" / "id_ed25519.pub").read_text().strip()
    assert answers[0].split(" ", 1)[1] == public
