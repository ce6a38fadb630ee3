"""Shared fixtures: every test gets its own cloudherd home (database, keys, local nodes) and leaves no
node running: whatever nodes a test's home still holds at the end are terminated by the provider
(which stops only the processes it started, by pid)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import scenarios
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from cloudherd.providers.local import LocalProvider
from cloudherd.spec.loader import LoadedSpec, load_spec_text
from cloudherd.state.db import open_engine
from cloudherd.state.models import Base, Infrastructure
from cloudherd.state.repo import Store

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "examples" / "hello" / "cloudherd.yml"
SERVERS = ["openssh", "builtin"]
T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", scenarios.MARKER)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    scenarios.select(config, items)


def pytest_report_header(config: pytest.Config) -> str:
    return scenarios.header()


def has_sshd() -> bool:
    return any(os.access(p, os.X_OK) for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd"))


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


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a user would (in ``cwd``: where the user is)."""
    return subprocess.run(
        [sys.executable, "-m", "cloudherd", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, cwd=cwd,
    )


def node_processes(folder: Path) -> list[int]:
    """Live (non-zombie) processes that belong to local nodes under ``folder``."""
    marker = f"CLOUDHERD_LOCAL_NODE={folder}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if marker in environ and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, what: str = "the condition",
               interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); AssertionError naming ``what`` once
    ``timeout`` seconds pass.  For synchronising on a condition instead of sleeping a guessed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout:g}s waiting for {what}")
        time.sleep(interval)


async def async_wait_until(predicate: Callable[[], T], timeout: float = 30.0, what: str = "the condition",
                           interval: float = 0.02) -> T:
    """:func:`wait_until` inside an event loop (the loop keeps running between polls)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


def process_gone(pid: int) -> bool:
    """The process has exited (no /proc entry, or a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


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


def spec_of(tmp_path: Path, text: str, scripts: dict[str, str] | None = None) -> LoadedSpec:
    """A loaded spec from ``text`` (its scripts written beside it first), as ``up`` would read it."""
    for name, body in (scripts or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "cloudherd.yml"
    path.write_text(text)
    return load_spec_text(text, path, environ={})


def recorded_infrastructure(store: Store, loaded: LoadedSpec, state: str = "ready") -> Infrastructure:
    """An infrastructure row for ``loaded`` (owner, spec snapshot), as ``up`` records one; no groups or nodes."""
    user = store.ensure_user("tester", "ssh-ed25519 AAAA tester", "/nonexistent/id_ed25519")
    return store.create_infrastructure(name=loaded.spec.name, owner_id=user.id, state=state,
                                       spec_path=str(loaded.path), spec_text=loaded.raw_text,
                                       ssh_key_path="/nonexistent/id_ed25519")


def require(missing: str | None, what: str) -> None:
    """Skip a test whose part this computer lacks (``missing`` says which); under CI=true, which has them all
    (root, sshd, PostgreSQL), fail instead: a skipped test there would be a test that never runs."""
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {what} must run here: {missing}")
        pytest.skip(missing)


def require_sandbox(network: bool = False) -> None:
    """Local nodes as sandboxes (root, OpenSSH's sshd), and with ``network`` their networks of their own."""
    from cloudherd.providers.local import net as local_net
    from cloudherd.providers.local import sandbox as local_sandbox

    require(local_sandbox.unavailable() or (local_net.unavailable() if network else None)
            or (None if has_sshd() else "no OpenSSH sshd"), "the sandbox tests")


def require_postgres() -> None:
    from pg_harness import pg_bin

    require("PostgreSQL binaries (initdb, pg_ctl) or psycopg not installed"
            if pg_bin() is None or importlib.util.find_spec("psycopg") is None else None, "the PostgreSQL tests")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server for the session (see tests/pg_harness.py); skipped where there is none,
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
