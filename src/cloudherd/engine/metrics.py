"""Sampling a group's metrics on its nodes, over the manager's pooled connections (no agent to install).

Built in: ``cpu`` (percent busy, from the difference of ``/proc/stat``'s counters since this process's last
sample of the node: the first sample of a node has none), ``memory`` (percent in use, from ``/proc/meminfo``'s
MemAvailable) and ``load1``.  Declared under a group's ``metrics:``: a ``command`` whose standard output is a
number (run like a health command: in the node's work folder, with its environment), or a ``url`` whose
Prometheus text the manager reads one ``series`` of.  A group's value is the aggregate (average, sum, max) over
the ready nodes that answered, its nodes' first ``warmup`` seconds left out.
"""

from __future__ import annotations

import asyncio
import math
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

PROC = "head -1 /proc/stat; grep -E '^(MemTotal|MemAvailable):' /proc/meminfo; cat /proc/loadavg"
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
    """Samples groups' metrics; keeps each node's last cpu counters between passes (a manager keeps one)."""

    def __init__(self) -> None:
        self._cpu: dict[str, tuple[float, float]] = {}

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
            values.update(await self._builtin(node, pool, reach))
        for metric in (m for m in metrics if m in declared):
            values[metric] = await _declared(declared[metric], infra, loaded, node, nodes, pool, reach)
        return values

    async def _builtin(self, node: Node, pool: ConnectionPool, reach: Reach) -> dict[str, float | None]:
        try:
            result = await pool.run(reach.target(node), PROC, timeout=TIMEOUT)
        except (CloudherdError, TimeoutError, OSError):
            return {}
        counters, memory, load1 = parse_proc(result.stdout)
        cpu = None
        if counters is not None:
            cpu = cpu_percent(self._cpu.get(node.id), counters)
            self._cpu[node.id] = counters
        return {"cpu": cpu, "memory": memory, "load1": load1}

    def forget(self, keep: Mapping[str, object]) -> None:
        """Drop the counters of nodes not in ``keep`` (gone)."""
        self._cpu = {k: v for k, v in self._cpu.items() if k in keep}


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
