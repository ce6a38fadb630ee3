"""Several managers on one PostgreSQL share the attached infrastructures evenly, each kept by exactly one of
them; when one dies (SIGKILL), the survivors take its infrastructures over and keep healing them."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

from conftest import cli, process_gone, wait_until

from cloudherd.state.db import open_engine
from cloudherd.state.repo import Store

SPEC = "name: {name}\ngroups:\n  web:\n    count: 1\n    health: {{interval: 1s, grace: 0s, unhealthy_after: 1}}\n"


def holders(store: Store) -> Counter[int]:
    """How many infrastructures each manager process keeps (by its pid, from the leases)."""
    return Counter(int(lease.holder.get("pid", 0)) for lease in store.leases_under("manager:"))


def test_three_managers_share_six_infrastructures_and_take_over_from_a_dead_one(
        postgres: object, home: Path, tmp_path: Path) -> None:
    from test_remote import node_folders

    url = postgres.fresh_database()  # type: ignore[attr-defined]
    env = {"CLOUDHERD_DB": url}
    names = [f"ha-{i}" for i in range(6)]
    for name in names:
        spec = tmp_path / f"{name}.yml"
        spec.write_text(SPEC.format(name=name))
        made = cli("up", str(spec), env=env, timeout=300)
        assert made.returncode == 0, made.stderr
        assert cli("attach", name, env=env).returncode == 0
    store = Store(open_engine(url))
    managers = [subprocess.Popen([sys.executable, "-m", "cloudherd", "manage", "--all", "--interval", "1"],
                                 env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 stdin=subprocess.DEVNULL) for _ in range(3)]
    pids = {m.pid for m in managers}
    try:
        wait_until(lambda: set(holders(store)) == pids and set(holders(store).values()) == {2}, timeout=120,
                   what="two infrastructures kept by each of the three managers")
        victim = managers[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        survivors = pids - {victim.pid}
        wait_until(lambda: set(holders(store)) == survivors and set(holders(store).values()) == {3}, timeout=120,
                   what="the dead manager's infrastructures taken over, three each")
        # a node dies under a survivor: healed
        owned = {lease.scope.partition(":")[2] for lease in store.leases_under("manager:")}
        target = sorted(owned)[0]
        before = {n.name for n in store.nodes(store.active_named(target).id) if n.state == "ready"}  # type: ignore[union-attr]
        folder = node_folders(home)[next(iter(before))]
        os.kill(int((folder / "sshd.pid").read_text().split()[0]), signal.SIGKILL)
        wait_until(lambda: (ready := {n.name for n in store.nodes(store.active_named(target).id)  # type: ignore[union-attr]
                                      if n.state == "ready"}) and ready.isdisjoint(before),
                   timeout=120, what=f"the killed node of {target} replaced by a survivor")
        # the event log records every pass with its lease holder: no two passes of one infrastructure overlap
        takeovers = 0
        for name in names:
            passes = [_pass(e.message) for e in store.events(store.active_named(name).id)  # type: ignore[union-attr]
                      if e.kind == "pass"]
            assert passes, f"no pass of {name} recorded"
            passes.sort(key=lambda p: p[2])
            for (_, _, _, ended), (_, _, began, _) in itertools.pairwise(passes):
                assert began >= ended, f"two passes of {name} overlapped"
            takeovers += len({pid for _, pid, _, _ in passes}) > 1
        assert takeovers >= 2  # the dead manager's two infrastructures were passed over by survivors since
    finally:
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
    for name in names:
        assert cli("down", name, env=env, timeout=300).returncode == 0


def _pass(message: str) -> tuple[int, int, datetime, datetime]:
    """(fence, pid, start, end) of a pass event: ``fence F pid P START END: summary``."""
    words = message.split()
    return int(words[1]), int(words[3]), datetime.fromisoformat(words[4]), datetime.fromisoformat(words[5].rstrip(":"))
