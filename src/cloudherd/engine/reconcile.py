"""One reconcile pass: compare what an infrastructure should be with what it is, and act on the difference.

Level-based, like a Kubernetes controller: a pass remembers nothing from the last one.  It reads the
spec as applied (and the sizes asked for since), lists the machines (one call per provider), checks
health, and then, only if something differs, converges through the same code ``up`` uses.  A pass over
a healthy fleet at size makes the list call, the health checks, and nothing else.

A pass runs under the infrastructure's lease (see :mod:`cloudherd.engine.locks`): never beside an
``up`` or a ``down`` of the same infrastructure, nor beside another pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cloudherd.engine import market, node_timer, rollout
from cloudherd.engine.apply import pause_limit, roll_out
from cloudherd.engine.autoscale import autoscale
from cloudherd.engine.budget import enforce_total
from cloudherd.engine.causes import log_converge
from cloudherd.engine.context import snapshot
from cloudherd.engine.converge import converge, cooling
from cloudherd.engine.diff import behind, diff_groups
from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.engine.health import CheckResult
from cloudherd.engine.hooks import advance
from cloudherd.engine.idle import watch_idle
from cloudherd.engine.lifetime import end_if_due
from cloudherd.engine.liveness import observe, record
from cloudherd.engine.membership import move_members
from cloudherd.engine.metrics import Sampler
from cloudherd.engine.probe import probe
from cloudherd.engine.processes import held_groups
from cloudherd.engine.reach import Reach
from cloudherd.engine.scale_requests import consume_scale_requests
from cloudherd.engine.session import RunSession
from cloudherd.engine.wake import stop_requested, wake
from cloudherd.errors import CloudherdError, FencedOut
from cloudherd.lifecycle import InfraState, NodeState, Process, RevisionState
from cloudherd.observe import cause, tracing
from cloudherd.remote.pool import ConnectionPool
from cloudherd.spec import LoadedSpec
from cloudherd.spec.model import Group as GroupSpec
from cloudherd.state.models import Infrastructure, Node, utcnow
from cloudherd.state.repo import Store

CHECKED_STATES = frozenset({NodeState.READY, NodeState.UNHEALTHY})


@dataclass
class PassReport:
    """What one pass saw and did, for the event log, ``status`` and the ``manage`` output."""

    infrastructure: str
    name: str
    checked: int = 0
    unhealthy: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    made: list[str] = field(default_factory=list)  # nodes this pass made (replacements and scale-ups)
    retired: list[str] = field(default_factory=list)  # nodes this pass terminated (failed, dead, surplus)
    scaled: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # circuit breaker: groups whose failed nodes were kept
    converged: bool = False
    error: str | None = None

    def line(self) -> str:
        parts = [f"{self.checked} checked"]
        if self.unhealthy:
            parts.append(f"unhealthy: {', '.join(self.unhealthy)}")
        if self.failed:
            parts.append(f"failed: {', '.join(self.failed)}")
        if self.retired:
            parts.append(f"retired: {', '.join(self.retired)}")
        if self.made:
            parts.append(f"made: {', '.join(self.made)}")
        parts += self.scaled + self.held
        if self.error:
            parts.append(f"error: {self.error}")
        return "; ".join(parts)


def applied_spec(infra: Infrastructure) -> LoadedSpec:
    """The spec as last applied, with the scripts stored when it was and each group's size as asked for since
    (scale requests change the stored size, not the spec text)."""
    loaded = snapshot(infra)
    rows = {g.name: g for g in infra.groups}
    groups = {}
    for name, group in loaded.spec.groups.items():
        row = rows.get(name)
        groups[name] = group.model_copy(update={"count": row.count}) if row is not None else group
        config = (row.config or {}) if row is not None else {}
        loaded.restore(name, config)
    loaded.spec = loaded.spec.model_copy(update={"groups": groups})
    return loaded


def first_cause(exc: BaseException) -> BaseException:
    """The first error of a group of them (a TaskGroup of deploys raises a group), or the error itself."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def pass_failure(exc: BaseException) -> str:
    """A failed pass in one line: a known error as it words itself, anything else as an internal error with
    its type."""
    exc = first_cause(exc)
    if isinstance(exc, CloudherdError):
        return Exception.__str__(exc)
    return f"internal error: {exc.__class__.__name__}: {exc}"


PASS_EVENT, PASS_EVENTS = "pass", 200  # the event kind of a logged pass, and how many of them are kept


class CheckTimes:
    """When this process last checked each node, and since when it has seen one failing, by the monotonic clock:
    what makes a node due for its next check, and how long it has been failing.

    A pass remembers nothing else from the last one; this is kept by whoever runs passes again and again (a
    manager), so that a wall clock stepped back (or on) changes nothing: before the fix, a clock stepped back an
    hour made every node's last check an hour in the future, and none was checked for an hour.  A node this
    process has not checked yet falls back on its recorded times (wall clock), a time in the future counting
    as long ago."""

    def __init__(self) -> None:
        self._checked: dict[str, dict[str, float]] = {}  # infrastructure id → node id → when
        self._failing: dict[str, dict[str, float]] = {}
        self.sampler = Sampler()  # each node's cpu counters at its last sample, also from pass to pass
        self.idle_sampler = Sampler()  # autostop's own: its cpu windows are pass to pass, apart from the policies'
        self.clock: Callable[[], datetime] = utcnow  # the wall clock scheduled actions are due by (a test's own)
        self.deadlines: dict[str, int] = {}  # infrastructure id → the machines' deadline this manager last tagged

    def due(self, infra_id: str, node: Node, interval: float, now: datetime) -> bool:
        at = self._checked.get(infra_id, {}).get(node.id)
        if at is not None:
            return time.monotonic() - at >= interval * 0.9  # a pass tick early still checks
        elapsed = _elapsed(node.last_check_at, now)
        return elapsed is None or elapsed >= interval * 0.9

    def failing_for(self, infra_id: str, node: Node, now: datetime) -> float:
        """Seconds ``node`` has been failing its counted checks in a row, this failed one included (0 when it is
        the first: the node has no ``failing_since`` yet)."""
        failing = self._failing.setdefault(infra_id, {})
        if node.failing_since is None:
            failing[node.id] = time.monotonic()
            return 0.0
        at = failing.get(node.id)
        if at is not None:
            return time.monotonic() - at
        return _elapsed(node.failing_since, now) or 0.0

    def checked(self, infra_id: str, nodes: Sequence[Node], at: float, keep: set[str]) -> None:
        """``nodes`` were checked at ``at`` (``time.monotonic()`` as the checks began); the nodes not in ``keep``
        (gone from the checked states) are forgotten."""
        self._checked[infra_id] = {k: v for k, v in self._checked.get(infra_id, {}).items() if k in keep}
        self._checked[infra_id].update((n.id, at) for n in nodes)
        self._failing[infra_id] = {k: v for k, v in self._failing.get(infra_id, {}).items() if k in keep}


def _elapsed(moment: datetime | None, now: datetime) -> float | None:
    """Seconds from a recorded ``moment`` to ``now`` by the wall clock; None when there is none, or when it lies
    in the future (the clock was stepped back since: it says nothing)."""
    at = moment
    if at is None:
        return None
    seconds = (now - at).total_seconds()
    return seconds if seconds >= 0 else None


async def reconcile(store: Store, infra_id: str, *, sink: EventSink | None = None, connect_timeout: float = 60.0,
                    log_pass: Callable[[PassReport], str] | None = None,
                    times: CheckTimes | None = None, keeper: bool = False) -> PassReport:
    """One pass over ``infra_id``: settle, refresh, check, scale, heal.  The caller holds the lease.

    ``keeper``: a manager's pass, which also ends an infrastructure whose time to live ran out and watches it
    for autostop / autodown.  A command's own pass (``scale``, ``standby``…) does neither: a command run a week
    later must not be what brings a fleet down.

    ``log_pass`` words the pass's event (a manager's: who held the lease, when), written with the pass's
    result in the same transaction.  ``times``: when this process checked the nodes before (a manager keeps
    them from pass to pass); without it, the recorded times say when a node is due."""
    times = times if times is not None else CheckTimes()
    seen = store.snapshot(infra_id)
    infra = seen.infra
    report = PassReport(infra.id, infra.name)
    if infra.state == InfraState.DESTROYED:
        report.error = "destroyed"
        return report
    if keeper and infra.ends_at is not None and await _ended(store, infra, seen.nodes, times.clock(), sink, report):
        return report
    try:
        loaded = applied_spec(infra)
        async with RunSession(store, infra, loaded, sink=sink, connect_timeout=connect_timeout,
                              groups=infra.groups) as run:
            # the nodes are read once (with the infrastructure) and again only after something changed them
            nodes = seen.nodes
            if seen.leftovers and await run.settle(seen):
                nodes = store.nodes(infra.id)
            else:
                run.use_pins(seen.pins)
            changes = await observe(run.providers, infra.id, nodes)
            record(store, infra.id, nodes, changes, times.clock())
            if changes:
                nodes = store.nodes(infra.id)
            spot = any(g.market is not None for g in loaded.spec.groups.values())
            if spot and market.review(store, infra, loaded, nodes, times.clock()):
                infra = store.infrastructure(infra.id)  # a group left spot or came back to it
            stale = await _check_health(store, infra, loaded, nodes, run.pool, run.reach, report, times)
            stale = await advance(store, infra, loaded, store.nodes(infra.id) if stale else nodes, run) or stale
            await autoscale(store, infra, loaded, nodes, run, times.sampler, times.clock())
            spent = await enforce_total(store, infra, loaded, run, nodes)  # a total budget reached: stop or down
            if spent:
                report.scaled.append(spent)
            if await stop_requested(store, infra, run, nodes, report.scaled):  # `cloudherd stop`
                spent = spent or "stopped"
                infra, nodes = store.infrastructure(infra.id), store.nodes(infra.id)
            if await move_members(store, infra, loaded, run, report.scaled) or spent:  # detach and attach requests
                infra = store.infrastructure(infra.id)  # the sizes they wrote, for the requests after them
            victims, renew = consume_scale_requests(store, infra, loaded, report.scaled)
            woke = await wake(store, infra, run, store.nodes(infra.id) if report.scaled or spent else nodes)
            if woke:  # stopped nodes of groups that may launch again: started, deployed by the converge below
                report.scaled.append(woke)
            if report.scaled:  # sizes changed: the spec as applied is read again (else it is what we have)
                infra = store.infrastructure(infra.id)
                loaded = applied_spec(infra)
            if stale or report.scaled:
                nodes = store.nodes(infra.id)
            replace = _to_replace(store, infra, loaded, nodes, report) | renew
            if not replace and not victims:
                replace = _misplaced(store, infra, loaded, nodes) or market.returning(store, infra, loaded, nodes,
                                                                                             times.clock())
            if _differs(loaded, infra, nodes, replace, victims):
                report.converged = True
                # a row still pending (submitted, or a create that failed) had no machine: made by this pass if
                # it has one after
                before = {n.id: n for n in nodes if n.state not in (NodeState.TERMINATED, NodeState.PENDING)}
                with tracing.span("heal" if replace else "converge", infrastructure=infra.name,
                                  replacing=len(replace)):
                    await converge(loaded, store, infra, run, replace=replace, victims=victims)
                after = store.nodes(infra.id)
                report.made = [n.name for n in after if n.id not in before
                               and n.state not in (NodeState.TERMINATED, NodeState.PENDING)]
                report.retired = [n.name for n in after if n.id in before and n.state == NodeState.TERMINATED]
                log_converge(store, infra, before, after, report.made, report.retired)
                nodes = after  # what the pass goes on from
            late = {n.group_name for n in behind(loaded, nodes)}  # a suspended rollout holds the whole release
            if late and not late & held_groups(infra.groups, Process.ROLLOUT):
                await _roll_on(store, infra, loaded, rollout.Rollout(store, infra, run, []), report)
            if changes or stale or report.converged or report.scaled:
                _record_sizes(store, infra, store.nodes(infra.id))
            if infra.state in (InfraState.CREATING, InfraState.FAILED, InfraState.UPDATING):
                store.set_infrastructure_state(infra.id, InfraState.READY)  # at size, every node deployed
            if report.converged or infra.state != InfraState.READY:
                store.settle_revisions(infra.id)  # the spec as applied is what runs now
            idle = await watch_idle(store, store.infrastructure(infra.id), loaded, run, store.nodes(infra.id),
                                    times.idle_sampler, times.clock()) \
                if keeper and (loaded.spec.autostop or loaded.spec.autodown) else None
            if idle:
                report.scaled.append(idle)
            if keeper and (loaded.spec.autostop or loaded.spec.autodown or infra.ends_at is not None):
                fresh = store.infrastructure(infra.id)  # the machines end themselves if no manager is left to
                await node_timer.keep(store, fresh, loaded, run, store.nodes(infra.id), times.deadlines)
    except FencedOut:
        raise  # another manager keeps it now: this one writes nothing more, not even the error
    except Exception as exc:  # the pass failed, whatever the cause: this infrastructure's failure (an event;
        # the next pass starts from what is recorded), never the manager's
        if isinstance(first_cause(exc), FencedOut):
            raise first_cause(exc) from None
        report.error = pass_failure(exc)
        store.add_event(infra.id, "error", f"reconcile: {report.error}")
        emit(sink, ProgressEvent("error", f"{infra.name}: {report.error}"))
    event = (PASS_EVENT, log_pass(report)) if log_pass is not None else None
    store.finish_pass(infra.id, {"last_pass_at": utcnow(), "last_pass": report.line()}, event, keep=PASS_EVENTS)
    return report


async def _ended(store: Store, infra: Infrastructure, nodes: Sequence[Node], now: datetime,
                 sink: EventSink | None, report: PassReport) -> bool:
    """The infrastructure brought down when its time to live ran out; the pass then does nothing else."""
    try:
        if not await end_if_due(store, infra, now, sink):
            return False
        report.retired = [n.name for n in nodes if n.state != NodeState.TERMINATED]
    except Exception as exc:  # the down failed: said as the pass's failure; the next pass tries again
        report.error = pass_failure(exc)
        store.add_event(infra.id, "error", f"time to live: {report.error}")
    store.finish_pass(infra.id, {"last_pass_at": utcnow(), "last_pass": report.line()}, None, keep=PASS_EVENTS)
    return True


SIZES_EVENT = "sizes"


def _record_sizes(store: Store, infra: Infrastructure, nodes: Sequence[Node]) -> None:
    """A ``sizes`` event: each group's desired, healthy and total nodes after a pass that changed something
    (what the dashboard plots over time: the event log is its only history)."""
    parts = []
    for group in sorted(infra.groups, key=lambda g: g.name):
        mine = [n for n in nodes if n.group_name == group.name and n.state != NodeState.TERMINATED]
        healthy = sum(n.state == NodeState.READY for n in mine)
        parts.append(f"{group.name} desired={group.count} healthy={healthy} total={len(mine)}")
    if parts:
        store.add_event(infra.id, SIZES_EVENT, "; ".join(parts))


async def _roll_on(store: Store, infra: Infrastructure, loaded: LoadedSpec, roll: rollout.Rollout,
                   report: PassReport) -> None:
    """Nodes are behind the release as applied: a release submitted through the server, or an ``up`` killed
    mid-rollout.  The pass rolls it on, as ``up`` does (health gates, automatic rollback, pauses), unless its
    revision is paused, failed (``--no-rollback``) or aborted: those wait for an ``up`` or ``rollout resume``."""
    latest = store.revisions(infra.id)[-1:]
    if not latest or latest[0].state != RevisionState.APPLYING:
        return
    report.converged = True
    stopped = await roll_out(loaded, roll, latest[0], False, pause_limit(loaded, None))
    if isinstance(stopped, rollout.RolloutPaused):
        store.end_revision(latest[0].id, RevisionState.PAUSED, str(stopped))
        store.add_event(infra.id, "rollout", f"paused at revision {latest[0].number}: {stopped}")
    elif stopped is not None:
        store.end_revision(latest[0].id, RevisionState.FAILED, stopped)
        store.add_event(infra.id, "error", f"rollout of revision {latest[0].number}: {stopped}")
        report.held.append(f"rollout stopped: {stopped}")


async def _check_health(store: Store, infra: Infrastructure, loaded: LoadedSpec, nodes: list[Node],
                        pool: ConnectionPool, reach: Reach, report: PassReport, times: CheckTimes) -> bool:
    """Check the ready and unhealthy nodes that are due, and move them along ready ⇄ unhealthy → failed.

    Returns whether a node's state changed (then ``nodes`` are stale and read again by the caller)."""
    import asyncio

    now = datetime.now(UTC)  # what is recorded; when a node is due again is the monotonic clock's (CheckTimes)
    # failed by its checks (not by its scripts): still checked, so that one the breaker kept comes back
    unchecked = held_groups(infra.groups, Process.HEALTH_CHECK)
    checked = [n for n in nodes if not n.standby and not n.warm and n.group_name not in unchecked
               and (n.state in CHECKED_STATES or (n.state == NodeState.FAILED and n.health == "unhealthy"))]
    due = [n for n in checked if n.group_name in loaded.spec.groups
           and times.due(infra.id, n, loaded.group(n.group_name).health.interval, now)]

    async def one(node: Node) -> tuple[Node, CheckResult]:
        return node, await probe(node, nodes, infra, loaded, pool, reach)

    healthy: list[tuple[str, dict[str, object]]] = []
    changed = False
    began = time.monotonic()
    results = await asyncio.gather(*(one(n) for n in due))
    times.checked(infra.id, due, began, {n.id for n in checked})
    for node, result in results:
        report.checked += 1
        if result.healthy and node.state == NodeState.READY and node.health == "healthy" and not node.failures:
            # the common case, still healthy: written with the others in one statement, not one transaction each
            healthy.append((node.id, {"last_check": result.detail, "last_check_at": now}))
            node.last_check, node.last_check_at = result.detail, now
            continue
        if result.healthy and node.state == NodeState.READY:  # healthy at its first check (or again): no event
            healthy.append((node.id, {"state": NodeState.READY, "health": "healthy", "failures": 0,
                                      "failing_since": None, "last_check": result.detail, "last_check_at": now,
                                      "reason": None}))
            changed = True
            continue
        _record(store, infra, loaded, node, result, now, times, report)
        changed = True
    store.update_nodes(infra.id, healthy)
    return changed


def _record(store: Store, infra: Infrastructure, loaded: LoadedSpec, node: Node, result: CheckResult,
            now: datetime, times: CheckTimes, report: PassReport) -> None:
    health = loaded.group(node.group_name).health
    if result.healthy:
        if node.state in (NodeState.UNHEALTHY, NodeState.FAILED):
            store.add_event(infra.id, "health", f"{node.name}: healthy again ({result.detail})", node_id=node.id)
        store.update_node(node.id, state=NodeState.READY, health="healthy", failures=0, failing_since=None,
                          last_check=result.detail, last_check_at=now, reason=None)
        return
    since_ready = _elapsed(node.ready_at, now)  # None in the future too: a clock stepped back ends the grace
    if since_ready is not None and since_ready < health.grace:  # within grace: not counted
        store.update_node(node.id, last_check=f"{result.detail} (in grace)", last_check_at=now)
        return
    failures = (node.failures or 0) + 1
    since = node.failing_since or now
    if node.state == NodeState.FAILED:  # already failed (kept by the breaker): counted, no new event
        store.update_node(node.id, failures=failures, last_check=result.detail, last_check_at=now)
        return
    failing_for = times.failing_for(infra.id, node, now)  # by the monotonic clock where this process saw it begin
    gone = (health.failures is not None and failures >= health.failures) or \
        (health.failing_for is not None and failing_for >= health.failing_for)
    state = NodeState.FAILED if gone else NodeState.UNHEALTHY
    store.update_node(node.id, state=state, health="unhealthy", failures=failures, failing_since=since,
                      last_check=result.detail, last_check_at=now,
                      reason=f"health check failed {failures} time(s): {result.detail}")
    if gone:
        report.failed.append(node.name)
        store.add_event(infra.id, "health", f"{node.name}: failed after {failures} failed check(s): {result.detail}",
                        node_id=node.id)
    else:
        report.unhealthy.append(node.name)
        if node.state != NodeState.UNHEALTHY:
            store.add_event(infra.id, "health", f"{node.name}: unhealthy: {result.detail}", node_id=node.id)


def _to_replace(store: Store, infra: Infrastructure, loaded: LoadedSpec, nodes: list[Node],
                report: PassReport) -> set[str]:
    """Failed nodes to retire and replace, unless too much of their group is unhealthy at once (the circuit
    breaker: a network blip must not recycle a whole fleet)."""
    replace: set[str] = set()
    kept = held_groups(infra.groups, Process.REPLACE_UNHEALTHY)
    for name, group in loaded.spec.groups.items():
        members = [n for n in nodes if n.group_name == name and n.state != NodeState.TERMINATED and not n.standby
                   and not n.warm]
        failed = [] if name in kept else [n for n in members if n.state == NodeState.FAILED]
        if not failed:
            continue
        # the breaker guards against a blip that makes healthy machines look sick; a node whose own scripts
        # failed (or whose deploy a killed process cut) is no sign of one, and waiting for it to "recover"
        # would hold the group short for good
        sick = [n for n in members if n.state == NodeState.UNHEALTHY
                or (n.state == NodeState.FAILED and n.health == "unhealthy")]
        allowed = group.health.max_unhealthy_of(max(group.count, len(members)))
        if len(sick) > allowed:
            message = (f"{name}: {len(sick)} of {len(members)} nodes unhealthy, more than max_unhealthy "
                       f"({allowed}): replacing none until some recover")
            report.held.append(message)
            if not _said_recently(store, infra, message):
                store.add_event(infra.id, "circuit-breaker", message)
            continue
        replace.update(n.id for n in failed)
    return replace


def placement_target(group: GroupSpec, count: int) -> dict[str, int]:
    """How many of ``count`` nodes each place holds when filled in order up to each cap (Phantom's
    n-preserving overflow); a place without a cap takes the rest."""
    target: dict[str, int] = {}
    left = count
    for place in group.placement:
        here = left if place.max is None else min(place.max, left)
        target[place.provider] = target.get(place.provider, 0) + here
        left -= here
    return target


def _misplaced(store: Store, infra: Infrastructure, loaded: LoadedSpec, nodes: list[Node]) -> set[str]:
    """One node per group to move, where the group's placement changed under it (a Phantom domain's
    ``clouds`` tag edited): a place holding more than its share gives one node up, replaced where a place
    holds less.  One a pass, only when the group is all ready and the short place is not cooling down, so
    a domain moves one machine at a time and never away from capacity it has."""
    moving: set[str] = set()
    kept = held_groups(infra.groups, Process.REBALANCE)
    for name, group in loaded.spec.groups.items():
        if not group.placement or name in kept:
            continue
        members = [n for n in nodes if n.group_name == name and n.state != NodeState.TERMINATED]
        if len(members) != group.count or any(n.state != NodeState.READY for n in members):
            continue
        target = placement_target(group, group.count)
        held: dict[str, list[Node]] = {}
        for node in members:
            held.setdefault(node.provider, []).append(node)
        short = [p for p, n in target.items() if len(held.get(p, [])) < n and p not in cooling(store, infra.id, name)]
        over = [p for p, found in held.items() if len(found) > target.get(p, 0)]
        if not short or not over:
            continue
        node = max(held[over[-1]], key=lambda n: n.index or 0)
        moving.add(node.id)
        message = (f"{name}: moving {node.name} from {node.provider} to {short[0]} (placement "
                   f"{', '.join(f'{p}:{n}' for p, n in target.items())})")
        cause.note(name, store.add_event(infra.id, "placement", message), "heal")
    return moving


def _said_recently(store: Store, infra: Infrastructure, message: str) -> bool:
    """The breaker says why once, not every pass: the same message within ten minutes is not repeated."""
    events = store.recent_events(infra.id, "circuit-breaker", datetime.now(UTC) - timedelta(minutes=10))
    return bool(events) and events[-1].message == message


def _differs(loaded: LoadedSpec, infra: Infrastructure, nodes: list[Node], replace: set[str],
             victims: set[str]) -> bool:
    """Whether converging would change anything: the same diff ``plan`` shows, without its script check
    (script changes come with ``up``, not with a pass)."""
    diffs = diff_groups(loaded, infra.groups, nodes, replace=replace, victims=victims)
    stuck = any(n.state in (NodeState.BOOTING, NodeState.PENDING) for n in nodes if n.group_name in loaded.spec.groups)
    return stuck or any(d.create or d.destroy or d.replace or d.warmed or d.pool_create for d in diffs)

