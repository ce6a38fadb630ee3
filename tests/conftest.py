"""Shared fixtures: every test gets its own cloudherd home (database, keys, local nodes) and leaves no
node running: whatever nodes a test's home still holds at the end are terminated by the provider
(which stops only the processes it started, by pid)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import scenarios
from helpers import SERVERS, has_sshd, require_postgres
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from cloudherd.providers.local import LocalProvider
from cloudherd.state.db import open_engine
from cloudherd.state.models import Base
from cloudherd.state.repo import Store


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", scenarios.MARKER)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    scenarios.select(config, items)


def pytest_report_header(config: pytest.Config) -> str:
    return scenarios.header()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "cloudherd-home"
    monkeypatch.setenv("CLOUDHERD_HOME", str(folder))
    monkeypatch.delenv("CLOUDHERD_DB", raising=False)
    monkeypatch.delenv("CLOUDHERD_LOCAL_ROOT", raising=False)
    # the test's own folder is seen by sandboxed local nodes (scripts leave markers there for the test);
    # cloudherd's folder inside it stays hidden from them
    monkeypatch.setenv("CLOUDHERD_LOCAL_SHARED", str(tmp_path))
    yield folder
    root = folder / "local"
    if root.is_dir():
        provider = LocalProvider("local", {"root": str(root)})
        leftovers = asyncio.run(provider.list({}))
        asyncio.run(provider.terminate([i.id for i in leftovers]))


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each local-node test runs on OpenSSH's sshd and on the built-in asyncssh server."""
    kind: str = request.param
    if kind == "openssh" and not has_sshd():
        pytest.skip("openssh-server is not installed")
    monkeypatch.setenv("CLOUDHERD_LOCAL_SERVER", kind)
    return kind


@pytest.fixture
def memory_store() -> Store:
    """A real state Store on a private in-memory SQLite database (schema from the models: no Alembic, no files),
    for unit tests of the engine's logic."""
    return _in_memory_store()


def _in_memory_store() -> Store:
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    return Store(engine)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """A state Store on each backend: SQLite in memory, and a fresh database of the session's PostgreSQL
    (migrated by Alembic), for the state and journal tests that must hold on both."""
    if request.param == "sqlite":
        yield _in_memory_store()
        return
    store = Store(open_engine(request.getfixturevalue("postgres").fresh_database()))
    try:
        yield store
    finally:
        store.engine.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server for the session (see tests/support/pg_harness.py); skipped where there is none,
    except under CI=true, where its absence fails."""
    from pg_harness import start_postgres

    require_postgres()
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty state database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("postgres").fresh_database())
