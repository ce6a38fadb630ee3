"""Sampling a group's metrics on its nodes, over the manager's pooled connections (no agent to install).

Built in: ``cpu`` (percent busy since this process's last sample of the node — the first sample of a node has
none: of the cpus the node's cgroup may use where the node sees a cpu limit of its own at ``/sys/fs/cgroup``, as
a sandboxed local node does, its cgroup's cpu time over the time between the samples; else the machine's, from
``/proc/stat``'s counters), ``memory`` (percent in use, from ``/proc/meminfo``'s
MemAvailable) and ``load1``.  Declared under a group's ``metrics:``: a ``command`` whose standard output is a
number (run like a health command: in the node's work folder, with its environment), or a ``url`` whose
Prometheus text the manager reads one ``series`` of.  A group's value is the aggregate (average, sum, max) over
the ready nodes that answered, its nodes' first ``warmup`` seconds left out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cloudherd.engine.reach import Reach
from cloudherd.engine.templates import node_env, template_context
from cloudherd.errors import CloudherdError
from cloudherd.lifecycle import NodeState
from cloudherd.remote.pool import ConnectionPool
from cloudherd.remote.scripts import in_workdir, render
from cloudherd.spec import LoadedSpec
from cloudherd.spec.parts import BUILTIN_METRICS, Metric
from cloudherd.state.models import Infrastructure, Node

# The node's cgroup (v2, or v1's cpu and cpuacct), as the node sees its own at /sys/fs/cgroup, with the clock
# read with it and the machine's cpus online: each line as FILE:LINE (grep -H), the missing files left out (-s).
CGROUP_CPU_FILES = ("/proc/uptime", "/sys/devices/system/cpu/online", "/sys/fs/cgroup/cpu.max",
                    "/sys/fs/cgroup/cpu.stat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                    "/sys/fs/cgroup/cpu/cpu.cfs_period_us", "/sys/fs/cgroup/cpuacct/cpuacct.usage")
PROC = ("head -1 /proc/stat; grep -E '^(MemTotal|MemAvailable):' /proc/meminfo; cat /proc/loadavg; "
        f"grep -sH '' {' '.join(CGROUP_CPU_FILES)} || true")
TIMEOUT = 5.0  # seconds a node has to answer one sample


@dataclass(frozen=True)
class GroupSample:
    """A group's metric as aggregated over ``nodes`` nodes."""

    group: str
    metric: str
    value: float
    nodes: int


def cpu_counters(stat_line: str) -> tuple[float, float] | None:
    """(busy + idle, idle) jiffies from ``/proc/stat``'s first line (idle counting iowait)."""
    fields = stat_line.split()
    if len(fields) < 5 or fields[0] != "cpu":
        return None
    try:
        numbers = [float(f) for f in fields[1:9]]
    except ValueError:
        return None
    idle = numbers[3] + (numbers[4] if len(numbers) > 4 else 0.0)
    return sum(numbers), idle


def cpu_percent(before: tuple[float, float] | None, now: tuple[float, float]) -> float | None:
    """Percent busy between two samples of the counters; None without an earlier one (or no time between)."""
    if before is None:
        return None
    total, idle = now[0] - before[0], now[1] - before[1]
    if total <= 0:
        return None
    return round(100.0 * (1.0 - idle / total), 2)


@dataclass(frozen=True)
class CgroupCpu:
    """A node's cgroup's cpu time: ``used`` seconds of cpu by then, at ``clock`` (seconds, the node's uptime read
    with it), and the ``cpus`` its quota lets it use (at most the machine's)."""

    used: float
    clock: float
    cpus: float


def cgroup_cpu(text: str, clock: float | None = None) -> CgroupCpu | None:
    """The node's cgroup's cpu from :data:`PROC`'s ``FILE:LINE`` lines (:data:`CGROUP_CPU_FILES`): cgroup v2's
    ``cpu.stat`` usage_usec and ``cpu.max``, else v1's ``cpuacct.usage`` and ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``; the clock from ``/proc/uptime`` (``clock`` where it is missing).  None where there is
    no cgroup of the node's with a cpu limit (a machine's own, a cloud's VM: ``cpu.max`` is ``max`` or absent,
    the quota -1): its cpu is then the machine's (:func:`cpu_counters`)."""
    files: dict[str, list[str]] = {}
    for line in text.splitlines():
        path, colon, rest = line.partition(":")
        if colon and path in CGROUP_CPU_FILES:
            files.setdefault(path, []).append(rest.strip())

    def first(path: str, at: int = 0) -> float | None:
        words = (files.get(path) or [""])[0].split()
        return _number(words[at]) if len(words) > at else None

    used = cpus = None
    stat = dict(line.split(None, 1) for line in files.get("/sys/fs/cgroup/cpu.stat", []) if len(line.split()) == 2)
    quota, period = first("/sys/fs/cgroup/cpu.max"), first("/sys/fs/cgroup/cpu.max", 1)
    if "usage_usec" in stat and quota is not None and period:
        used, cpus = _number(stat["usage_usec"]), quota / period
    else:
        quota, period = first("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), first("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        usage = first("/sys/fs/cgroup/cpuacct/cpuacct.usage")
        if usage is not None and quota is not None and quota > 0 and period:
            used, cpus = usage / 1e3, quota / period  # nanoseconds: in microseconds as v2's
    online = _cpus_online((files.get("/sys/devices/system/cpu/online") or [""])[0])
    when = first("/proc/uptime")
    when = when if when is not None else clock
    if used is None or cpus is None or cpus <= 0 or when is None:
        return None
    return CgroupCpu(used / 1e6, when, min(cpus, online) if online else cpus)


def _cpus_online(text: str) -> int | None:
    """How many cpus a list as ``/sys/devices/system/cpu/online`` writes it names (``0-3,6``)."""
    count = 0
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            return None
        count += int(high) - int(low) + 1 if dash else 1
    return count or None


def cgroup_cpu_percent(before: CgroupCpu | None, now: CgroupCpu) -> float | None:
    """Percent of the cpus the node may use that it used between two samples (at most 100: a quota is kept per
    period, and a period may straddle the samples); None without an earlier one, with no time between, or when
    the counter went back (a node started again has a new cgroup)."""
    if before is None:
        return None
    elapsed, used = now.clock - before.clock, now.used - before.used
    if elapsed <= 0 or used < 0:
        return None
    return round(min(100.0, 100.0 * used / (elapsed * now.cpus)), 2)


def parse_proc(text: str) -> tuple[tuple[float, float] | None, float | None, float | None]:
    """The cpu counters, memory in use (percent) and load1 from :data:`PROC`'s output."""
    lines = text.splitlines()
    counters = cpu_counters(lines[0]) if lines else None
    memory: dict[str, float] = {}
    load1 = None
    for line in lines[1:]:
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable") and rest.split():
            memory[key] = float(rest.split()[0])
        elif not rest and line.split():
            load1 = _number(line.split()[0])
    used = None
    if memory.get("MemTotal"):
        used = round(100.0 * (1.0 - memory.get("MemAvailable", 0.0) / memory["MemTotal"]), 2)
    return counters, used, load1


def prometheus_value(text: str, series: str) -> float | None:
    """The value of ``series`` (a name, or a name with its labels as written) in the Prometheus text format; with
    a bare name and several labelled series of it, their sum."""
    found: list[float] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "}" in line:
            labels, _, rest = line.rpartition("}")
            name = labels + "}"
        else:
            name, _, rest = line.partition(" ")
        bare = name.split("{", 1)[0]
        if name.replace(" ", "") == series.replace(" ", "") or ("{" not in series and bare == series):
            number = _number(rest)
            if number is not None:
                found.append(number)
    return sum(found) if found else None


def _number(text: str) -> float | None:
    try:
        value = float(text.strip().split()[0]) if text.strip() else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def aggregate(values: Sequence[float], how: str) -> float:
    if how == "sum":
        return sum(values)
    if how == "max":
        return max(values)
    return sum(values) / len(values)


class Sampler:
    """Samples groups' metrics; keeps each node's last cpu counters between passes (a manager keeps one): its
    cgroup's cpu time with the clock it was read at, or the machine's /proc/stat counters."""

    def __init__(self) -> None:
        self._cpu: dict[str, CgroupCpu | tuple[float, float]] = {}
        self._read_at: dict[str, float] = {}  # when each node's counters were read (the monotonic clock)

    async def sample(self, infra: Infrastructure, loaded: LoadedSpec, nodes: Sequence[Node], pool: ConnectionPool,
                     reach: Reach, now: datetime) -> list[GroupSample]:
        """Every metric a policy of a group names, or that the group declares, aggregated over its ready nodes
        past the warm-up of the policies reading it; no sample of a metric no such node answered."""
        wanted = {name: _metrics_of(loaded, name) for name in loaded.spec.groups}
        members = {name: [n for n in nodes if n.group_name == name and n.state == NodeState.READY]
                   for name, metrics in wanted.items() if metrics}
        asked = [(name, n) for name, group_nodes in members.items() for n in group_nodes]
        answers = await asyncio.gather(*(self._node(infra, loaded, n, nodes, pool, reach, wanted[name])
                                         for name, n in asked))
        by_node = {n.id: values for (_, n), values in zip(asked, answers, strict=True)}
        samples = []
        for name, group_nodes in members.items():
            declared = loaded.group(name).metrics
            for metric in wanted[name]:
                warmup = _warmup(loaded, name, metric)
                values = [v for n in group_nodes if not _warming(n, warmup, now)
                          and (v := by_node[n.id].get(metric)) is not None]
                if values:
                    how = declared[metric].aggregate if metric in declared else "average"
                    samples.append(GroupSample(name, metric, round(aggregate(values, how), 4), len(values)))
        return samples

    async def _node(self, infra: Infrastructure, loaded: LoadedSpec, node: Node, nodes: Sequence[Node],
                    pool: ConnectionPool, reach: Reach, metrics: Sequence[str]) -> dict[str, float | None]:
        values: dict[str, float | None] = {}
        declared = loaded.group(node.group_name).metrics
        if any(m in BUILTIN_METRICS for m in metrics):
            values.update(await self.builtin(node, pool, reach))
        for metric in (m for m in metrics if m in declared):
            values[metric] = await _declared(declared[metric], infra, loaded, node, nodes, pool, reach)
        return values

    async def builtin(self, node: Node, pool: ConnectionPool, reach: Reach,
                      min_window: float = 0.0) -> dict[str, float | None]:
        """A node's ``cpu`` (since this sampler last read it; None the first time), ``memory`` and ``load1``.
        ``min_window``: nothing is read (and the window grows on) until that many seconds have passed since the
        last read: a cpu over a shorter time is mostly the reading's own work."""
        started = time.monotonic()
        if min_window and started - self._read_at.get(node.id, -min_window) < min_window:
            return {}
        self._read_at[node.id] = started
        try:
            result = await pool.run(reach.target(node), PROC, timeout=TIMEOUT)
        except (CloudherdError, TimeoutError, OSError):
            return {}
        counters, memory, load1 = parse_proc(result.stdout)
        own = cgroup_cpu(result.stdout, time.monotonic())
        before = self._cpu.get(node.id)
        cpu = None
        if own is not None:  # a node with a cpu limit of its own: its share of that
            cpu = cgroup_cpu_percent(before if isinstance(before, CgroupCpu) else None, own)
            self._cpu[node.id] = own
        elif counters is not None:  # the machine's
            cpu = cpu_percent(before if isinstance(before, tuple) else None, counters)
            self._cpu[node.id] = counters
        return {"cpu": cpu, "memory": memory, "load1": load1}

    def forget(self, keep: Mapping[str, object]) -> None:
        """Drop the counters of nodes not in ``keep`` (gone)."""
        self._cpu = {k: v for k, v in self._cpu.items() if k in keep}
        self._read_at = {k: v for k, v in self._read_at.items() if k in keep}


async def _declared(metric: Metric, infra: Infrastructure, loaded: LoadedSpec, node: Node, nodes: Sequence[Node],
                    pool: ConnectionPool, reach: Reach) -> float | None:
    if metric.command is not None:
        command = in_workdir(metric.command, node_env(node, loaded.group(node.group_name).env))
        try:
            result = await pool.run(reach.target(node), command, timeout=TIMEOUT)
        except (CloudherdError, TimeoutError, OSError):
            return None
        return _number(result.stdout) if result.exit_code == 0 else None
    import httpx

    context = template_context(node, nodes, infra, loaded.variables_for(node.group_name), loaded.env)
    try:
        url = render(f"metric url of {node.group_name}", metric.url or "", context)
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client:
            response = await client.get(url)
    except (CloudherdError, httpx.HTTPError):
        return None
    return prometheus_value(response.text, metric.series or "") if response.status_code == 200 else None


def _metrics_of(loaded: LoadedSpec, group: str) -> list[str]:
    spec = loaded.group(group)
    return list(dict.fromkeys([*(p.metric for p in spec.policies), *spec.metrics]))


def _warmup(loaded: LoadedSpec, group: str, metric: str) -> float:
    """How long a new node is left out of ``metric``'s aggregate: the longest warm-up of the policies reading it."""
    return max((p.warmup for p in loaded.group(group).policies if p.metric == metric), default=0.0)


def _warming(node: Node, warmup: float, now: datetime) -> bool:
    """Whether the node became ready less than ``warmup`` seconds ago (its scripts' last success)."""
    return bool(warmup) and node.ready_at is not None and (now - node.ready_at).total_seconds() < warmup
