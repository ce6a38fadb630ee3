"""A sandboxed local node's ``cpu`` is its own: the node sees its cgroup (top: the node's own, its quota of one cpu
for ``size: small``) at /sys/fs/cgroup, and the manager's sample is its cgroup's cpu time over the time between
two samples, of that one cpu.  A node busy in a loop reads (most of) its cpu while its idle sibling reads about
nothing, where the host's /proc/stat — what both would read without it — shows the same for both."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from helpers import require_sandbox, write_spec

from cloudherd.api import SyncClient
from cloudherd.engine.metrics import PROC, cgroup_cpu
from cloudherd.engine.reconcile import CheckTimes, reconcile
from cloudherd.state.repo import Store

# each group one node of one cpu, a policy on cpu only so that the manager samples it (min = max: never scaled)
SPEC = "name: cpus\ngroups:\n" + "".join(
    f"  {name}:\n    count: 1\n    size: small\n    min: 1\n    max: 1\n"
    "    scaling:\n      policies:\n        - {metric: cpu, target: 50, warmup: 0s}\n" for name in ("hot", "idle"))
HOG = "timeout 150 sh -c 'while :; do :; done'"  # an exec waits for what it started: run beside the test


def test_a_busy_node_reads_its_own_cpu_and_its_idle_sibling_none(home: Path, tmp_path: Path) -> None:
    require_sandbox()
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "c", SPEC))
    try:
        machines = [n.machine or "" for n in herd.status("cpus").nodes]
        if not all("1 cpu" in m for m in machines):  # a host where no cgroup can be made (rootless, say)
            pytest.skip(f"no cpu limit is applied to nodes here: {machines}")
        # what each node sees: its own cgroup, a quota of one cpu (the host's top has none)
        for seen in herd.exec("cpus", PROC):
            own = cgroup_cpu(seen.stdout)
            assert seen.ok and own is not None and own.cpus == 1, seen
        hog = threading.Thread(target=herd.exec, args=("cpus", HOG), kwargs={"node": "cpus-hot-1"}, daemon=True)
        hog.start()

        store = Store()
        infra = store.active_named("cpus")
        assert infra is not None
        times = CheckTimes()  # the manager's: each node's last sample kept from pass to pass
        seen_values: list[dict[str, float]] = []
        deadline = time.monotonic() + 120
        while True:
            report = asyncio.run(reconcile(store, infra.id, times=times))
            assert report.error is None, report
            latest = store.latest_samples(infra.id)
            values = {group: latest.get(group, {}).get("cpu", -1.0) for group in ("hot", "idle")}
            seen_values.append(values)
            # the hog's node: its one cpu (near all of it on an idle machine; with every core busy beside it, its
            # fair share, about half or more); the idle one: near nothing — the host-wide reading would be the
            # same for both (half the machine on an idle one, all of it on a busy one)
            if values["hot"] >= 40 and 0 <= values["idle"] <= 15:
                break
            assert time.monotonic() < deadline, f"no pass saw the hog on its node alone: {seen_values}"
            time.sleep(1)  # the time between two samples a percent is taken over, not an assertion
        store.engine.dispose()
    finally:
        herd.down("cpus")  # the hog with its node
    hog.join(30)
