"""The manager pass's scaling step: sample the groups' metrics, keep the samples, let each group's policies decide,
and ask for the size they decide as a scale request, which the same pass then applies (clamped, under the
circuit breaker, like a ``cloudherd scale``).  Every decision is an event with its reason (``scale-out`` /
``scale-in``); a manual scale is one too (``scale``), and the policies start from it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cloudherd.engine.metrics import Sampler
from cloudherd.engine.policies import Decision, Since, decide
from cloudherd.engine.processes import held_groups
from cloudherd.engine.session import RunSession
from cloudherd.lifecycle import Process
from cloudherd.observe import metrics, tracing
from cloudherd.spec import LoadedSpec
from cloudherd.spec.cron import due
from cloudherd.spec.parts import Policy, TargetTracking
from cloudherd.state.models import Infrastructure, Node, utcnow
from cloudherd.state.repo import Store

SCALING_KINDS = ("scale-out", "scale-in", "scale")  # the events that say a group was scaled


async def autoscale(store: Store, infra: Infrastructure, loaded: LoadedSpec, nodes: Sequence[Node], run: RunSession,
                    sampler: Sampler, now: datetime | None = None) -> list[str]:
    """One scaling step at ``now`` (the pass's clock); returns the decisions' lines (empty when no group has a
    schedule, a policy or a metric)."""
    now = now or utcnow()
    said = fire_schedules(store, infra, loaded, now)
    if not any(g.policies or g.metrics for g in loaded.spec.groups.values()):
        return said
    # a node in standby is out of service: not in the group's aggregate (as AWS leaves it out of its metrics)
    samples = await sampler.sample(infra, loaded, [n for n in nodes if not n.standby and not n.warm], run.pool,
                                   run.reach, now)
    sampler.forget({n.id: n for n in nodes})
    store.add_samples(infra.id, [(s.group, s.metric, s.value, s.nodes) for s in samples], at=now)
    fresh = {(s.group, s.metric) for s in samples}
    sizes = {g.name: g.count for g in infra.groups}
    limits = bounds_in_force(store, infra.id, loaded)
    held = held_groups(infra.groups, Process.POLICIES)  # still sampled, for the faces; not followed
    for name, group in loaded.spec.groups.items():
        if not group.policies or name not in sizes or name in held:
            continue
        since = since_scaled(store, infra.id, name, now)
        low, high = limits[name]
        decisions = [(policy, decide(name, policy, [row.value for row in store.samples(
            infra.id, name, policy.metric, limit=policy.samples_needed)], sizes[name], low, high, since))
            for policy in group.policies if (name, policy.metric) in fresh]
        decision = _combined(decisions, sizes[name])
        if decision is None:
            continue
        line = f"{name}: {decision.reason}"
        direction = decision.direction(sizes[name])
        with tracing.span("scale-decision", infrastructure=infra.name, group=name, direction=direction,
                          desired=decision.desired):
            decided = store.add_event(infra.id, f"scale-{direction}", line)
            store.add_scale_request(infra.id, name, "set", decision.desired, cause_id=decided)
        metrics.scaling_decision(_policy_label(decisions, decision), direction)
        said.append(line)
    return said


def _policy_label(decisions: Sequence[tuple[Policy, Decision | None]], chosen: Decision) -> str:
    """The policy that decided, as a bounded metric label: its type and metric (``target_tracking cpu``)."""
    policy = next((p for p, d in decisions if d is chosen), None)
    return f"{policy.type} {policy.metric}" if policy is not None else "policy"


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


def since_scaled(store: Store, infra_id: str, group: str, now: datetime) -> Since:
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


def bounds_in_force(store: Store, infra_id: str, loaded: LoadedSpec) -> dict[str, tuple[int | None, int | None]]:
    """Each group's min and max: the spec's, or what a scheduled action set since the latest release (an ``up``
    brings the spec's back)."""
    scheduled = store.scheduled_bounds(infra_id) if any(g.schedules for g in loaded.spec.groups.values()) else {}
    limits = {}
    for name, group in loaded.spec.groups.items():
        low, high = scheduled.get(name, (None, None))
        limits[name] = (group.min if low is None else low, group.max if high is None else high)
    return limits


def fire_schedules(store: Store, infra: Infrastructure, loaded: LoadedSpec, now: datetime) -> list[str]:
    """Apply the scheduled actions due at ``now``, each occurrence once (:func:`cloudherd.spec.cron.due`): the
    bounds it sets recorded with the firing, the size asked for (clamped to the bounds then in force) as a scale
    request; each an event."""
    if not any(g.schedules for g in loaded.spec.groups.values()):
        return []
    sizes = {g.name: g.count for g in infra.groups}
    fired = store.last_firings(infra.id)
    held = held_groups(infra.groups, Process.SCHEDULED_ACTIONS)
    said = []
    for name, group in loaded.spec.groups.items():
        for schedule in group.schedules if name in sizes else ():
            since = max(infra.created_at, fired.get((name, schedule.name), infra.created_at))
            moment = due(schedule.cron, schedule.at, schedule.timezone, now, since)
            if moment is None:
                continue
            if name in held:  # passed over, not kept for later (AWS's rule): the occurrence is recorded, no bounds
                store.add_firing(infra.id, name, schedule.name, moment, min=None, max=None, desired=None)
                line = f"{name}: {schedule.name} at {moment.isoformat()} skipped (scheduled-actions suspended)"
                store.add_event(infra.id, "scheduled", line)
                said.append(line)
                continue
            store.add_firing(infra.id, name, schedule.name, moment, min=schedule.min, max=schedule.max,
                             desired=schedule.desired)
            low, high = bounds_in_force(store, infra.id, loaded)[name]
            wanted = schedule.desired if schedule.desired is not None else sizes[name]
            target = min(max(wanted, low or 0), high if high is not None else wanted)
            line = (f"{name}: {schedule.name} at {moment.isoformat()} → {schedule.sets()} "
                    f"(size {sizes[name]} → {target})")
            firing = store.add_event(infra.id, "scheduled", line)
            if target != sizes[name]:
                store.add_scale_request(infra.id, name, "set", target, cause_id=firing)
                metrics.scaling_decision(f"schedule {schedule.name}", "out" if target > sizes[name] else "in")
            said.append(line)
            sizes[name] = target
    return said
