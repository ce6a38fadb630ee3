"""A slow health endpoint costs its own fleet, nothing else (issue #26, item 11).

Each probe has one deadline in all (``health.timeout``): a URL that trickles a byte a second, which per-read
timeouts never end, is a failed check once the deadline has passed.  And passes of different infrastructures
do not wait for each other: while one fleet's probe hangs, another fleet's dead node is replaced, and the
manager's rounds go on (it does not look stuck)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import async_wait_until, node_folders, recorded_infrastructure, spec_of, wait_until, write_spec

from cloudherd.api import SyncClient
from cloudherd.engine.health import check
from cloudherd.engine.manager import Manager
from cloudherd.engine.reconcile import PassReport
from cloudherd.remote.ssh import Target
from cloudherd.spec.model import Health
from cloudherd.state.models import Infrastructure
from cloudherd.state.repo import Store


class Trickle:
    """An HTTP server on 127.0.0.1 that answers each request one byte a second and never finishes its headers:
    what per-read timeouts never end.  Knows which of its connections the client still holds open."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/health"
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._open: set[int] = set()
        self._ids = itertools.count(1)
        self.left = 0  # connections the client closed
        self._threads = [threading.Thread(target=self._accept, name="trickle", daemon=True)]
        self._threads[0].start()

    def open_connections(self) -> set[int]:
        with self._lock:
            return set(self._open)

    def _accept(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed: stopping
            thread = threading.Thread(target=self._trickle, args=(conn, next(self._ids)), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _trickle(self, conn: socket.socket, number: int) -> None:
        with self._lock:
            self._open.add(number)
        answer = itertools.chain(b"HTTP/1.1 200 OK\r\nX-Slowly: ", itertools.repeat(ord("a")))
        try:
            with conn:
                while not self._done.is_set():
                    # one byte a second; a readable socket is the request, or the client hanging up
                    readable, _, _ = select.select([conn], [], [], 1.0)
                    if readable and not conn.recv(4096):
                        with self._lock:
                            self.left += 1
                        return
                    conn.sendall(bytes([next(answer)]))
        except OSError:
            with self._lock:
                self.left += 1
        finally:
            with self._lock:
                self._open.discard(number)

    def close(self) -> None:
        self._done.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (a close alone does not, on Linux)
        self._listener.close()
        for thread in self._threads:
            thread.join(10)


@pytest.fixture
def trickle() -> Iterator[Trickle]:
    server = Trickle()
    try:
        yield server
    finally:
        server.close()


def test_a_url_that_trickles_fails_its_check_at_the_deadline(trickle: Trickle) -> None:
    health = Health(ssh=False, urls=[trickle.url], timeout=2.0)
    target = Target(name="n", address="127.0.0.1", port=22, user="me")

    async def run() -> tuple[bool, str]:
        # the bound of the test itself: before the deadline per probe, this check never returned
        result = await asyncio.wait_for(check({"address": "127.0.0.1"}, target, health, None, [trickle.url], None), 60)
        return result.healthy, result.detail

    healthy, detail = asyncio.run(run())
    assert not healthy
    assert detail == f"GET {trickle.url}: no answer within 2s"
    wait_until(lambda: trickle.left >= 1 and not trickle.open_connections(), 30, "the probe to hang up")


def _sshd_pid(home: Path, node: str) -> int:
    return int((node_folders(home)[node] / "sshd.pid").read_text().split()[0])


def test_a_slow_fleet_holds_back_no_other_fleets_heal(home: Path, tmp_path: Path, trickle: Trickle) -> None:
    slow_health = (f"    health: {{ssh: false, urls: ['{trickle.url}'], interval: 0.1s, grace: 0s, timeout: 45s, "
                   "unhealthy_after: 1000}\n")
    quick_health = "    health: {interval: 0.1s, grace: 0s, timeout: 1s, unhealthy_after: 2}\n"
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "slow", "name: slow\ngroups:\n  web:\n    count: 1\n" + slow_health))
    herd.up(write_spec(tmp_path / "quick", "name: quick\ngroups:\n  web:\n    count: 1\n    scripts: [s.sh]\n"
                       + quick_health, {"s.sh": "echo '{{ node.name }}' > me.txt\n"}))
    manager = subprocess.Popen([sys.executable, "-m", "cloudherd", "manage", "slow", "quick", "--interval", "0.2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        hanging = wait_until(trickle.open_connections, 60, "the slow fleet's probe to reach the trickling URL")
        os.kill(_sshd_pid(home, "quick-web-1"), signal.SIGKILL)
        wait_until(lambda: {(n.name, n.state, n.health) for n in herd.status("quick").live}
                   == {("quick-web-2", "ready", "healthy")}, 120, "quick-web-1 replaced by a healthy quick-web-2")
        # ...while the slow fleet's probe that hung before the kill still hangs: its pass held nothing back
        assert hanging & trickle.open_connections(), "the heal waited for the slow fleet's probe"
        assert [r.stdout for r in herd.exec("quick", "cat me.txt", node="quick-web-2")] == ["quick-web-2\n"]
        slow = wait_until(lambda: (n := herd.status("slow").node("slow-web-1")) and n.last_check
                          and "no answer within" in n.last_check and n, 120, "the slow probe's deadline")
        assert slow.last_check == f"GET {trickle.url}: no answer within 45s"
        assert slow.health == "unhealthy"
    finally:
        trickle.close()  # a probe in flight fails at once: the manager's last pass ends without waiting
        manager.send_signal(signal.SIGTERM)
        _out, err = manager.communicate(timeout=120)
    assert manager.returncode == 0, err
    herd.down("slow")
    herd.down("quick")


def test_rounds_go_on_while_one_pass_hangs_and_a_stop_lets_it_finish(tmp_path: Path, memory_store: Store) -> None:
    """The manager's own loop: a pass that does not end delays only its infrastructure's next pass; the others
    get theirs round after round, ``rounds`` grows (so /healthz does not call the manager stuck), and a stop
    waits for the hanging pass to end rather than cutting it."""
    slow = recorded_infrastructure(memory_store, spec_of(tmp_path / "a", "name: slow\ngroups:\n  web: {count: 1}\n"))
    quick = recorded_infrastructure(memory_store, spec_of(tmp_path / "b", "name: quick\ngroups:\n  web: {count: 1}\n"))
    passes: dict[str, int] = {slow.id: 0, quick.id: 0}
    ended: list[str] = []

    async def run() -> None:
        release = asyncio.Event()
        manager = Manager(memory_store, [slow.id, quick.id], interval=0.05)

        async def pass_over(infra: Infrastructure) -> PassReport:
            passes[infra.id] += 1
            if infra.id == slow.id:
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    ended.append("slow cancelled")
                    raise
                ended.append("slow finished")
            return PassReport(infra.id, infra.name)

        manager.pass_over = pass_over  # type: ignore[method-assign]
        running = asyncio.create_task(manager.run())
        await async_wait_until(lambda: passes[slow.id] == 1 and passes[quick.id] >= 5, 30,
                               "five passes over quick while slow's first one hangs")
        rounds = manager.rounds
        await async_wait_until(lambda: manager.rounds >= rounds + 3, 30, "more rounds while slow's pass hangs")
        assert passes[slow.id] == 1  # never a second pass beside the first
        manager.stop.set()
        await async_wait_until(lambda: quick.id not in manager._passes, 30, "quick's last pass to end")
        assert not running.done()  # the stop waits for slow's pass...
        release.set()
        await asyncio.wait_for(running, 30)  # ...which then ends, and so does the manager
        assert ended == ["slow finished"] and manager._passes == {}

    asyncio.run(run())
    assert memory_store.leases_under("manager:") == []  # its claims let go
