"""Clocks (issue #26, item 14): leases are timed by the database's clock, intervals by the monotonic clock.

Before: a process whose clock ran an hour ahead took the lease of a running ``up`` (each process compared the
lease's expiry with its own clock), and a manager whose clock stepped back an hour stopped checking health
(every node's last check lay an hour in the future).

The process's wall clock is shifted here in two ways: in this process, by the ``wall_clock`` fixture (every
``datetime.now`` of cloudherd's code reads the shifted clock; the databases keep theirs: PostgreSQL is another
process, and SQLite's clock is read by SQLite itself), and for a whole child process by libfaketime, against
PostgreSQL (SQLite runs inside the process: libfaketime would shift its clock too, as it would for every
process sharing one SQLite file on one host, which share a clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import node_folders, recorded_infrastructure, spec_of, wait_until, write_spec

from cloudherd.api import SyncClient
from cloudherd.engine.locks import exclusive, infra_scope, try_hold
from cloudherd.engine.manager import Manager, is_managed, manager_scope
from cloudherd.state.db import open_engine
from cloudherd.state.models import utcnow
from cloudherd.state.repo import Store

_REAL = datetime
# the modules that read the wall clock on the paths tested, imported before the shift so that it reaches them
READERS = ("cloudherd.engine.apply", "cloudherd.engine.deploy", "cloudherd.engine.journal", "cloudherd.engine.fleet",
           "cloudherd.engine.reconcile", "cloudherd.engine.manager", "cloudherd.remote.ssh", "cloudherd.state.fence",
           "cloudherd.state.models", "cloudherd.state.repo", "cloudherd.providers.local")
ELSEWHERE = {"host": "another-host", "pid": 1, "user": "someone"}  # a live holder on another machine


class _AnyDatetime(type):
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, _REAL)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, _REAL)


class WallClock:
    """This process's wall clock as cloudherd's code reads it, shifted by ``offset`` (SQLite's and PostgreSQL's
    own clocks are not)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self.offset = timedelta(0)
        clock = self

        class Shifted(_REAL, metaclass=_AnyDatetime):
            @classmethod
            def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
                return _REAL.now(tz) + clock.offset

        self._shifted = Shifted

    def shift(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)
        for name in READERS:
            importlib.import_module(name)
        for name, module in list(sys.modules.items()):  # cloudherd's modules, as many as are imported now
            if (name == "cloudherd" or name.startswith("cloudherd.")) and getattr(module, "datetime", None) is _REAL:
                self._monkeypatch.setattr(module, "datetime", self._shifted)


@pytest.fixture
def wall_clock(monkeypatch: pytest.MonkeyPatch) -> WallClock:
    return WallClock(monkeypatch)


def _ahead(store: Store) -> timedelta:
    """How far this process's (shifted) clock is ahead of the database's."""
    return utcnow() - store.database_time()


def test_a_process_an_hour_ahead_takes_no_live_lease(any_store: Store, wall_clock: WallClock) -> None:
    scope = infra_scope("web")
    taken, _ = any_store.take_lease(scope, "running-up", "up", ELSEWHERE, 30)
    assert taken
    any_store.take_lease(manager_scope("web"), "a-manager", "manage", ELSEWHERE, 30)
    wall_clock.shift(3600)
    assert _ahead(any_store) > timedelta(minutes=50)  # the shift is in effect
    assert try_hold(any_store, scope, "up") is None
    assert any_store.take_lease(scope, "me", "up", {"pid": os.getpid()}, 30)[0] is False
    lease = any_store.lease(scope, live=True)
    assert lease is not None and lease.owner == "running-up" and lease.fence == 1
    assert is_managed(any_store, "web")  # another machine's manager keeps it: still so an hour "later"
    assert any_store.renew_lease(scope, "running-up", 30)  # and its holder goes on renewing it


def test_a_process_an_hour_behind_takes_a_lapsed_lease(any_store: Store, wall_clock: WallClock) -> None:
    scope = infra_scope("web")
    assert any_store.take_lease(scope, "gone", "up", ELSEWHERE, 30)[0]
    assert any_store.renew_lease(scope, "gone", -1)  # lapsed a second ago, by the database's clock
    any_store.take_lease(manager_scope("web"), "a-manager", "manage", ELSEWHERE, 30)
    assert any_store.renew_lease(manager_scope("web"), "a-manager", -1)
    wall_clock.shift(-3600)
    assert _ahead(any_store) < -timedelta(minutes=50)
    assert any_store.lease(scope, live=True) is None
    assert not is_managed(any_store, "web")
    held = try_hold(any_store, scope, "up")
    assert held is not None and held.fence == 2


def test_a_holder_whose_clock_runs_ahead_keeps_writing_under_its_live_lease(any_store: Store, wall_clock: WallClock,
                                                                            tmp_path: Path) -> None:
    """The fence (every write of a holder checks its lease inside the transaction) asks the database's clock too:
    a holder whose clock jumped on keeps its work; one whose lease lapsed by the database's clock is stopped."""
    from cloudherd.errors import FencedOut

    infra = recorded_infrastructure(any_store, spec_of(tmp_path / "spec", "name: fenced\ngroups:\n  web: {count: 1}\n"))

    async def run() -> None:
        async with exclusive(any_store, infra_scope("fenced"), "manage", wait=0, ttl=30) as held:
            wall_clock.shift(3600)
            any_store.add_event(infra.id, "note", "written an hour ahead")
            held._beat.cancel()  # type: ignore[union-attr]  # as if paused: no renewal...
            wall_clock.shift(-7200)
            assert any_store.renew_lease(held.scope, held.owner, -1)  # ...past its TTL by the database's clock
            with pytest.raises(FencedOut, match="lapsed"):
                any_store.add_event(infra.id, "note", "written an hour behind, after the lapse")

    asyncio.run(run())
    assert [e.message for e in any_store.events(infra.id) if e.kind == "note"] == ["written an hour ahead"]


CHILD = """
import json, os, sys
from datetime import UTC, datetime
from cloudherd.engine.locks import try_hold
from cloudherd.state.db import open_engine
from cloudherd.state.repo import Store

store = Store(open_engine(sys.argv[1]))
held = try_hold(store, sys.argv[2], "up", 30)
print(json.dumps({"now": datetime.now(UTC).isoformat(), "database": store.database_time().isoformat(),
                  "taken": held is not None, "fence": held.fence if held else None}))
"""


def _faked(offset: str, url: str, scope: str) -> dict[str, Any]:
    """Try to take ``scope`` from a child process whose clock libfaketime shifts by ``offset`` (its monotonic
    clock left alone)."""
    env = {**os.environ, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    done = subprocess.run(["faketime", "-f", offset, sys.executable, "-c", CHILD, url, scope], capture_output=True,
                          text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    answer["ahead"] = datetime.fromisoformat(answer["now"]) - datetime.fromisoformat(answer["database"])
    return answer


def test_libfaketime_processes_an_hour_off_on_postgresql(postgres: Any) -> None:
    """Whole processes with their clocks an hour off (libfaketime) against PostgreSQL's own clock: one an hour
    ahead takes no live lease (an ``up`` running here holds it); one an hour behind takes a lapsed one."""
    if shutil.which("faketime") is None:
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    url = str(postgres.fresh_database())
    store = Store(open_engine(url))
    try:
        running = try_hold(store, infra_scope("live"), "up", 30)  # this process: alive, its lease renewable
        assert running is not None
        assert store.take_lease(infra_scope("lapsed"), "gone", "up", ELSEWHERE, 30)[0]
        assert store.renew_lease(infra_scope("lapsed"), "gone", -1)

        ahead = _faked("+1h", url, infra_scope("live"))
        assert ahead["ahead"] > timedelta(minutes=50), ahead  # libfaketime took
        assert not ahead["taken"], ahead
        lease = store.lease(infra_scope("live"))
        assert lease is not None and lease.owner == running.owner

        behind = _faked("-1h", url, infra_scope("lapsed"))
        assert behind["ahead"] < -timedelta(minutes=50), behind
        assert behind["taken"] and behind["fence"] == 2, behind
    finally:
        store.engine.dispose()


@contextlib.contextmanager
def _running(manager: Manager) -> Iterator[None]:
    """The manager's loop in a thread of its own (its clock is this process's), stopped at the end."""
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            loop.run_until_complete(manager.run())
        except BaseException as exc:
            failure.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=main, name="manager", daemon=True)
    thread.start()
    try:
        yield
    finally:
        with contextlib.suppress(RuntimeError):  # its loop ended already
            loop.call_soon_threadsafe(manager.stop.set)
        thread.join(120)
    assert not thread.is_alive(), "the manager did not stop"
    if failure:
        raise failure[0]


def test_a_manager_whose_clock_steps_back_an_hour_still_checks_health(home: Path, tmp_path: Path,
                                                                     wall_clock: WallClock) -> None:
    # checked every 0.1 s; a banner slowed past a short deadline by a busy machine is not what is tested here (the
    # kill below is refused at once, whatever the deadline), so the deadline is long: no replacement but the one
    fast = "    health: {interval: 0.1s, grace: 0s, timeout: 30s, unhealthy_after: 2}\n"
    spec = write_spec(tmp_path / "s", "name: steady\ngroups:\n  web:\n    count: 1\n    scripts: [s.sh]\n" + fast,
                      {"s.sh": "echo '{{ node.name }}' > me.txt\n"})
    herd = SyncClient()
    herd.up(spec)
    manager = Manager(Store(), [herd.status("steady").id], interval=0.1)  # its own connections, for its own thread

    def node(name: str) -> Any:
        return next((n for n in herd.status("steady").live if n.name == name), None)

    with _running(manager):
        first = wait_until(lambda: (n := node("steady-web-1")) and n.last_check_at and n.last_check_at, 60,
                           "the manager's first check")
        wall_clock.shift(-3600)
        # checks go on: each one recorded by the stepped-back clock, an hour before the ones made until now
        wait_until(lambda: (n := node("steady-web-1")) and n.last_check_at
                   and n.last_check_at < first - timedelta(minutes=50), 60, "a check after the clock stepped back")
        sshd = node_folders(home)["steady-web-1"] / "sshd.pid"
        os.kill(int(sshd.read_text().split()[0]), signal.SIGKILL)
        wait_until(lambda: {(n.name, n.state, n.health) for n in herd.status("steady").live}
                   == {("steady-web-2", "ready", "healthy")}, 120, "steady-web-1 replaced after the step")
    manager.store.engine.dispose()
    assert [r.stdout for r in herd.exec("steady", "cat me.txt", node="steady-web-2")] == ["steady-web-2\n"]
    herd.down("steady")


def test_due_checks_and_failing_time_follow_the_monotonic_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The manager's memory of its checks (:class:`CheckTimes`), on a monotonic clock the test moves: the wall
    clock no longer says when a node is due, nor how long it has been failing, once this process has seen it."""
    from types import SimpleNamespace

    from cloudherd.engine import reconcile
    from cloudherd.state.models import Node

    monotonic = [1000.0]
    monkeypatch.setattr(reconcile, "time", SimpleNamespace(monotonic=lambda: monotonic[0]))
    times = reconcile.CheckTimes()
    now = datetime.now(UTC)
    node = Node(id="n1", last_check_at=now + timedelta(hours=1))  # recorded before the clock stepped back
    assert times.due("i", node, 10, now)  # a recorded time in the future says nothing: checked
    times.checked("i", [node], monotonic[0], {"n1"})
    assert not times.due("i", node, 10, now + timedelta(hours=5))  # the wall clock no longer decides...
    monotonic[0] += 9.5
    assert times.due("i", node, 10, now - timedelta(hours=5))  # ...the monotonic one does (a tick early is due)

    assert times.failing_for("i", node, now) == 0  # its first counted failure (no failing_since yet)
    node.failing_since = now + timedelta(hours=1)  # as recorded then, by a clock stepped back since
    monotonic[0] += 31
    assert times.failing_for("i", node, now) == 31
    stranger = Node(id="n2", failing_since=now + timedelta(hours=1))  # failing since before this process saw it
    assert times.failing_for("i", stranger, now) == 0  # a time in the future: no time counted, not an hour less
    times.checked("i", [], monotonic[0], {"n2"})  # n1 gone from the checked nodes: forgotten...
    node.last_check_at = now
    assert not times.due("i", node, 10, now)  # ...so its recorded time decides again (remembered, it was due)
