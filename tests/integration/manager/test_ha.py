"""Several managers on one PostgreSQL share the attached infrastructures evenly, each kept by exactly one of
them; when one dies (SIGKILL), the survivors take its infrastructures over and keep healing them; one paused
past its lease's TTL (SIGSTOP) loses what it kept and, woken (SIGCONT), does not act on it."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from helpers import process_gone, wait_until

from cloudherd.api import SyncClient
from cloudherd.state.db import open_engine
from cloudherd.state.repo import Store

SPEC = "name: {name}\ngroups:\n  web:\n    count: 1\n    health: {{interval: 1s, grace: 0s, unhealthy_after: 1}}\n"


TTL = "4"  # seconds: the managers' lease TTL (CLOUDHERD_LEASE_TTL), short so that a pause outlives it soon


def holders(store: Store) -> Counter[int]:
    """How many infrastructures each manager process keeps (by its pid, from the leases not lapsed)."""
    now = datetime.now(UTC)
    return Counter(int(lease.holder.get("pid", 0)) for lease in store.leases_under("manager:")
                   if (lease.expires_at if lease.expires_at.tzinfo else lease.expires_at.replace(tzinfo=UTC)) > now)


def test_three_managers_share_nine_infrastructures_survive_a_kill_and_a_pause(
        postgres: object, home: Path, tmp_path: Path) -> None:
    from helpers import node_folders

    url = postgres.fresh_database()  # type: ignore[attr-defined]
    env = {"CLOUDHERD_DB": url}
    names = [f"ha-{i}" for i in range(9)]
    ups = []
    for name in names:  # made side by side: each `up` holds its own infrastructure's lease only
        spec = tmp_path / f"{name}.yml"
        spec.write_text(SPEC.format(name=name))
        ups.append(subprocess.Popen([sys.executable, "-m", "cloudherd", "up", str(spec)], env={**os.environ, **env},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL))
    for up in ups:
        _, err = up.communicate(timeout=300)
        assert up.returncode == 0, err.decode()
    with SyncClient(url) as herd:
        for name in names:
            herd.attach(name)
    store = Store(open_engine(url))
    managers = [subprocess.Popen([sys.executable, "-m", "cloudherd", "manage", "--all", "--interval", "1"],
                                 env={**os.environ, **env, "CLOUDHERD_LEASE_TTL": TTL}, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL) for _ in range(3)]
    pids = {m.pid for m in managers}
    paused: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: set(holders(store)) == pids and set(holders(store).values()) == {3}, timeout=120,
                   what="three infrastructures kept by each of the three managers")
        victim = managers[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        survivors = pids - {victim.pid}
        wait_until(lambda: set(holders(store)) == survivors and sorted(holders(store).values()) == [4, 5],
                   timeout=120, what="the dead manager's infrastructures taken over, five and four")
        # a node dies under a survivor: healed
        owned = {lease.scope.partition(":")[2] for lease in store.leases_under("manager:")}
        target = sorted(owned)[0]
        before = {n.name for n in store.nodes(store.active_named(target).id) if n.state == "ready"}  # type: ignore[union-attr]
        folder = node_folders(home)[next(iter(before))]
        os.kill(int((folder / "sshd.pid").read_text().split()[0]), signal.SIGKILL)
        wait_until(lambda: (ready := {n.name for n in store.nodes(store.active_named(target).id)  # type: ignore[union-attr]
                                      if n.state == "ready"}) and ready.isdisjoint(before),
                   timeout=120, what=f"the killed node of {target} replaced by a survivor")
        # a survivor paused past its TTL: the other takes everything over; woken, it acts on none of it, and the
        # two share the work again
        paused, awake = managers[1], managers[2]
        paused.send_signal(signal.SIGSTOP)
        wait_until(lambda: holders(store) == {awake.pid: 9}, timeout=120,
                   what="the paused manager's infrastructures taken over by the other")
        paused.send_signal(signal.SIGCONT)
        paused = None
        wait_until(lambda: set(holders(store)) == survivors and sorted(holders(store).values()) == [4, 5],
                   timeout=120, what="the woken manager back to its share")
        # the event log records every pass with its lease holder: no two passes of one infrastructure overlap
        # (a pass the paused manager had begun, finished late, would overlap those of its successor)
        takeovers = 0
        for name in names:
            passes = [_pass(e.message) for e in store.events(store.active_named(name).id)  # type: ignore[union-attr]
                      if e.kind == "pass"]
            assert passes, f"no pass of {name} recorded"
            passes.sort(key=lambda p: p[2])
            for (_, _, _, ended), (_, _, began, _) in itertools.pairwise(passes):
                assert began >= ended, f"two passes of {name} overlapped"
            takeovers += len({pid for _, pid, _, _ in passes}) > 1
            live = [n for n in store.nodes(store.active_named(name).id) if n.state != "terminated"]  # type: ignore[union-attr]
            assert len(live) == 1, f"{name}: {[(n.name, n.state) for n in live]}: made twice?"
        assert takeovers >= 3  # the dead manager's infrastructures were passed over by survivors since
    finally:
        if paused is not None:
            paused.send_signal(signal.SIGCONT)
        for manager in managers:
            if manager.poll() is None:
                manager.send_signal(signal.SIGTERM)
        for manager in managers:
            try:
                manager.wait(timeout=60)
            except subprocess.TimeoutExpired:
                manager.kill()
                manager.wait(timeout=10)
            wait_until(lambda m=manager: process_gone(m.pid), timeout=10, what="manager gone")
    downs = [subprocess.Popen([sys.executable, "-m", "cloudherd", "down", name], env={**os.environ, **env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
             for name in names]
    for down in downs:
        _, err = down.communicate(timeout=300)
        assert down.returncode == 0, err.decode()


def _pass(message: str) -> tuple[int, int, datetime, datetime]:
    """(fence, pid, start, end) of a pass event: ``fence F pid P START END: summary``."""
    words = message.split()
    return int(words[1]), int(words[3]), datetime.fromisoformat(words[4]), datetime.fromisoformat(words[5].rstrip(":"))
