"""The lean reader answers as the store does, and the read-only commands go through it without SQLAlchemy.

A real fleet of local nodes is made by ``up``; then every question ``ls``, ``status`` and ``plan`` ask is put to
the reader and to the store, and the answers compared; the API's answers are compared through both; and the
CLI's read-only commands are shown not to import SQLAlchemy at all.  Where the reader cannot serve (no file yet,
an older schema, another database), the store does, as before."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import spec_of

from cloudherd.api.client import Client
from cloudherd.engine.apply import up
from cloudherd.engine.holders import is_managed, manager_scope
from cloudherd.errors import UsageError
from cloudherd.state.db import open_engine
from cloudherd.state.reader import Reader
from cloudherd.state.repo import Store

SPEC = "name: rd\ngroups:\n  web:\n    count: 2\n    scripts: [a.sh]\n  db:\n    count: 1\n"


@pytest.fixture
def fleet(home: Path, tmp_path: Path) -> Iterator[tuple[str, Store, Reader, Path]]:
    """A fleet made by ``up`` on a SQLite file: its URL, a store and a reader on it, and its spec file."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    loaded = spec_of(tmp_path / "spec", SPEC, {"a.sh": "echo {{ node.name }}\n"})
    store = Store(open_engine(url))
    asyncio.run(up(loaded, store))
    reader = Reader.open(url)
    assert reader is not None
    yield url, store, reader, loaded.path
    reader.close()
    store.engine.dispose()


def same(record: Any, row: Any) -> None:
    """A record and a row agree on every column the record reads."""
    for name in type(record).columns():
        assert getattr(record, name) == getattr(row, name), name


def test_the_reader_answers_what_the_store_answers(fleet: tuple[str, Store, Reader, Path]) -> None:
    _, store, reader, _ = fleet
    [row] = store.infrastructures()
    [record] = reader.infrastructures()
    same(record, row)
    assert reader.node_counts() == store.node_counts() == {row.id: (3, 3)}

    for ref in (row.id, row.id[:4], "rd"):
        infra, expected = reader.resolve(ref), store.resolve(ref)
        same(infra, expected)
        assert [g.name for g in infra.groups] == [g.name for g in expected.groups] == ["web", "db"]
        for got, want in zip(infra.groups, expected.groups, strict=True):
            same(got, want)
        for got_node, want_node in zip(infra.nodes, expected.nodes, strict=True):
            same(got_node, want_node)
    for bad in ("nope", " "):
        with pytest.raises(UsageError) as by_reader:
            reader.resolve(bad)
        with pytest.raises(UsageError) as by_store:
            store.resolve(bad)
        assert str(by_reader.value) == str(by_store.value)

    assert [n.id for n in reader.nodes(row.id, alive_only=True)] == [n.id for n in store.nodes(row.id, alive_only=True)]
    assert reader.script_digests(row.id) == store.script_digests(row.id) != {}
    assert reader.pins(row.id) == store.pins(row.id) != {}
    last = store.last_actions(row.id)
    assert {k: v.id for k, v in reader.last_actions(row.id).items()} == {k: v.id for k, v in last.items()}
    for got_revision, want_revision in zip(reader.revisions(row.id), store.revisions(row.id), strict=True):
        same(got_revision, want_revision)
    assert reader.has_leftovers(row.id) is store.has_leftovers(row.id) is False
    assert reader.has_open_intents(row.id) is store.has_open_intents(row.id) is False
    assert reader.node_defs() == store.node_defs()
    assert reader.notifications_given_up(row.id) == store.notifications_given_up(row.id) == 0
    hook = store.add_webhook(row.owner_id, "http://127.0.0.1:9/", "sealed", kinds=["*"])
    store.add_event(row.id, "made", "rd-web-3 made")
    [queued] = store.outbox_rows(hook.id)
    assert store.claim_outbox(queued.id, "a-sender", 30)
    assert store.outbox_retry(queued.id, "a-sender", status=500, error="HTTP 500", delay=None)  # given up
    assert reader.notifications_given_up(row.id) == store.notifications_given_up(row.id) == 1


def test_a_lease_read_by_the_reader_lapses_by_the_same_clock(fleet: tuple[str, Store, Reader, Path]) -> None:
    _, store, reader, _ = fleet
    elsewhere = {"host": "another-host", "pid": 1}
    store.take_lease(manager_scope("rd"), "a-manager", "manage", elsewhere, 30)
    lease = reader.lease(manager_scope("rd"), live=True)
    assert lease is not None and lease.holder == elsewhere
    assert is_managed(reader, "rd") and is_managed(store, "rd")
    assert store.renew_lease(manager_scope("rd"), "a-manager", -1)  # lapsed a second ago
    assert reader.lease(manager_scope("rd"), live=True) is None and reader.lease(manager_scope("rd")) is not None
    assert not is_managed(reader, "rd") and not is_managed(store, "rd")


def test_ls_status_and_plan_answer_the_same_through_the_reader_and_the_store(
        fleet: tuple[str, Store, Reader, Path]) -> None:
    url, _, _, spec = fleet

    async def both() -> list[tuple[Any, Any]]:
        client = Client(url)
        try:
            lean = type(client.reads)
            first = [await client.ls(), await client.status("rd"), await client.plan(spec)]
            assert client.store is not None and type(client.reads) is Store and lean is Reader
            again = [await client.ls(), await client.status("rd"), await client.plan(spec)]
        finally:
            await client.close()
        return list(zip(first, again, strict=True))

    for by_reader, by_store in asyncio.run(both()):
        assert by_reader == by_store


def test_the_read_only_commands_import_no_sqlalchemy(fleet: tuple[str, Store, Reader, Path]) -> None:
    url, _, _, spec = fleet
    env_db = {"CLOUDHERD_DB": url}
    for args in (["ls"], ["status", "rd"], ["plan", str(spec)]):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "cloudherd", *args], capture_output=True,
                              text=True, timeout=120, env=_env(env_db))
        assert done.returncode == 0, done.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
        assert "rd" in done.stdout and not {"sqlalchemy", "alembic"} & imported, args


def test_where_the_reader_cannot_serve_the_store_does(home: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "new.db"
    assert Reader.open(f"sqlite:///{fresh}") is None  # no file yet: the store makes and migrates it
    assert asyncio.run(_ls(f"sqlite:///{fresh}")) == [] and fresh.is_file()
    assert Reader.open(f"sqlite:///{fresh}") is not None
    older = tmp_path / "older.db"
    shutil.copy(fresh, older)
    with sqlite3.connect(older) as db:
        db.execute("UPDATE alembic_version SET version_num = '0001'")
    assert Reader.open(f"sqlite:///{older}") is None  # an older schema: the store migrates it first
    for other in (f"sqlite:///{fresh}?timeout=5", "sqlite:///:memory:", "postgresql+psycopg://u@127.0.0.1/db"):
        assert Reader.open(other) is None


async def _ls(url: str) -> list[Any]:
    client = Client(url)
    try:
        return await client.ls()
    finally:
        await client.close()


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}
