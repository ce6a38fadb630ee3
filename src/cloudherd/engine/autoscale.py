"""The manager pass's scaling step: sample the groups' metrics, keep the samples, let each group's policies decide,
and ask for the size they decide as a scale request, which the same pass then applies (clamped, under the
circuit breaker, like a ``cloudherd scale``).  Every decision is an event with its reason (``scale-out`` /
``scale-in``); a manual scale is one too (``scale``), and the policies start from it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cloudherd.engine.metrics import Sampler
from cloudherd.engine.policies import Decision, Since, decide
from cloudherd.engine.session import RunSession
from cloudherd.spec import LoadedSpec
from cloudherd.spec.parts import Policy, TargetTracking
from cloudherd.state.models import Infrastructure, Node, utcnow
from cloudherd.state.repo import Store

SCALING_KINDS = ("scale-out", "scale-in", "scale")  # the events that say a group was scaled


async def autoscale(store: Store, infra: Infrastructure, loaded: LoadedSpec, nodes: Sequence[Node], run: RunSession,
                    sampler: Sampler) -> list[str]:
    """One scaling step; returns the decisions' lines (empty when no group has a policy or a metric)."""
    if not any(g.policies or g.metrics for g in loaded.spec.groups.values()):
        return []
    now = utcnow()
    samples = await sampler.sample(infra, loaded, nodes, run.pool, run.reach, now)
    sampler.forget({n.id: n for n in nodes})
    store.add_samples(infra.id, [(s.group, s.metric, s.value, s.nodes) for s in samples], at=now)
    fresh = {(s.group, s.metric) for s in samples}
    sizes = {g.name: g.count for g in infra.groups}
    said = []
    for name, group in loaded.spec.groups.items():
        if not group.policies or name not in sizes:
            continue
        since = _since(store, infra.id, name, now)
        decisions = [(policy, decide(name, policy, [row.value for row in store.samples(
            infra.id, name, policy.metric, limit=policy.samples_needed)], sizes[name], group.min, group.max, since))
            for policy in group.policies if (name, policy.metric) in fresh]
        decision = _combined(decisions, sizes[name])
        if decision is None:
            continue
        store.add_scale_request(infra.id, name, "set", decision.desired)
        line = f"{name}: {decision.reason}"
        store.add_event(infra.id, f"scale-{decision.direction(sizes[name])}", line)
        said.append(line)
    return said


def _combined(decisions: Sequence[tuple[Policy, Decision | None]], current: int) -> Decision | None:
    """Several policies of one group, as AWS combines them: the largest scale-out wins; a scale-in only when no
    policy scales out and every target-tracking policy wants one (a step policy's alarm acts on its own): then
    the one that removes the fewest nodes."""
    made = [d for _, d in decisions if d is not None]
    out = [d for d in made if d.desired > current]
    if out:
        return max(out, key=lambda d: d.desired)
    if any(d is None for p, d in decisions if isinstance(p, TargetTracking)):
        return None
    return max(made, key=lambda d: d.desired) if made else None


def _since(store: Store, infra_id: str, group: str, now: datetime) -> Since:
    """Seconds since the group last scaled out, and since it last scaled at all, by the event log (the last day)."""
    horizon = now - timedelta(days=1)
    last: dict[str, datetime] = {}
    for kind in SCALING_KINDS:
        for event in store.recent_events(infra_id, kind, horizon):
            if event.message.startswith(f"{group}: "):
                last[kind] = max(last.get(kind, event.at), event.at)
    out = last.get("scale-out")
    any_at = max(last.values(), default=None)
    return Since(scale_out=(now - out).total_seconds() if out else None,
                 any_scaling=(now - any_at).total_seconds() if any_at else None)
