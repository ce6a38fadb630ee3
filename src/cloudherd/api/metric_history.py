"""Each group's metric over its kept samples, beside what its scaling policies hold it to (a target-tracking
policy's target, a step policy's threshold) and the group's last scaling decisions: what the dashboard plots.

Read from the store as the manager wrote it: the samples (:mod:`cloudherd.state.repo_metrics`, bounded per
group and metric), the spec the infrastructure was made from (its policies), and the ``scale-out`` /
``scale-in`` events :mod:`cloudherd.engine.autoscale` writes, one per decision, as ``"<group>: <reason>"``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cloudherd.engine.context import snapshot
from cloudherd.engine.policies import describe
from cloudherd.errors import CloudherdError
from cloudherd.spec.parts import Policy, StepScaling
from cloudherd.state.repo import Store
from cloudherd.state.repo_metrics import KEEP_SAMPLES
from cloudherd.times import as_utc

DECISION_KINDS = ("scale-out", "scale-in")  # a policy's decisions (a manual ``scale`` is not one)
DECISIONS_SHOWN = 5  # the newest of a group's decisions within the samples' window


@dataclass(frozen=True)
class Point:
    """One sample: the group's aggregate of the metric over ``nodes`` nodes at ``at``."""

    at: datetime
    value: float
    nodes: int


@dataclass(frozen=True)
class Level:
    """A value a policy holds the metric to: ``kind`` is ``target`` (target tracking) or ``threshold`` (step);
    ``policy`` is the policy in a line (as ``status`` shows it)."""

    kind: str
    value: float
    policy: str


@dataclass(frozen=True)
class ScalingDecision:
    """A scale-out or scale-in the group's policies decided; ``reason`` without the group's name."""

    at: datetime
    kind: str
    reason: str


@dataclass(frozen=True)
class MetricHistory:
    """A group's metric: its kept samples (oldest first, never empty), its policies' levels, and the group's
    newest scaling decisions since the oldest sample (oldest first)."""

    group: str
    metric: str
    points: tuple[Point, ...]
    levels: tuple[Level, ...]
    decisions: tuple[ScalingDecision, ...]

    @property
    def latest(self) -> Point:
        return self.points[-1]


def level_of(policy: Policy) -> Level:
    if isinstance(policy, StepScaling):
        return Level("threshold", policy.threshold, describe(policy))
    return Level("target", policy.target, describe(policy))


def metric_histories(store: Store, infra_id: str, *, keep: int = KEEP_SAMPLES,
                     decisions: int = DECISIONS_SHOWN) -> list[MetricHistory]:
    """Every group's metric that has samples, the spec's groups in order (a group's policies' metrics first),
    each with at most ``keep`` samples and ``decisions`` decisions."""
    series = store.latest_samples(infra_id)
    if not series:
        return []
    policies: dict[str, list[Policy]] = {}
    order: list[tuple[str, str]] = []
    try:
        spec = snapshot(store.infrastructure(infra_id)).spec
    except CloudherdError:  # a spec that no longer reads: the samples alone
        spec = None
    if spec is not None:
        for name, spec_group in spec.groups.items():
            policies[name] = list(spec_group.policies)
            order += [(name, m) for m in dict.fromkeys([*(p.metric for p in spec_group.policies),
                                                        *spec_group.metrics])]
    order = [key for key in order if key[1] in series.get(key[0], {})]
    order += sorted((g, m) for g, metrics in series.items() for m in metrics if (g, m) not in order)

    histories = []
    for group, metric in order:
        rows = store.samples(infra_id, group, metric, limit=keep)
        if not rows:
            continue
        points = tuple(Point(as_utc(r.at), r.value, r.nodes) for r in rows)
        levels = tuple(level_of(p) for p in policies.get(group, ()) if p.metric == metric)
        histories.append(MetricHistory(group, metric, points, levels, ()))
    return _with_decisions(store, infra_id, histories, decisions)


def _with_decisions(store: Store, infra_id: str, histories: list[MetricHistory],
                    shown: int) -> list[MetricHistory]:
    """Each history with its group's decisions since its oldest sample: those whose reason starts with the
    metric's name (as a policy's does) on that metric's plot; any other on each of the group's plots."""
    if not histories:
        return histories
    since = min(h.points[0].at for h in histories)
    found: dict[str, list[ScalingDecision]] = {}
    for kind in DECISION_KINDS:
        for event in store.recent_events(infra_id, kind, since):
            group, colon, reason = event.message.partition(": ")
            if colon:
                found.setdefault(group, []).append(ScalingDecision(as_utc(event.at), kind, reason))
    plotted: dict[str, set[str]] = {}
    for h in histories:
        plotted.setdefault(h.group, set()).add(h.metric)
    answer = []
    for h in histories:
        mine = [d for d in found.get(h.group, ()) if d.at >= h.points[0].at
                and _about(d.reason, h.metric, plotted[h.group])]
        mine.sort(key=lambda d: d.at)
        answer.append(MetricHistory(h.group, h.metric, h.points, h.levels, tuple(mine[-shown:] if shown else ())))
    return answer


def _about(reason: str, metric: str, metrics: set[str]) -> bool:
    first = reason.split(" ", 1)[0]
    return first == metric or first not in metrics
