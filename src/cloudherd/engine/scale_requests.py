"""Scale requests (``cloudherd scale``, a policy's decision, a schedule's firing, the Auto Scaling API's sizes):
written durably by whoever asks, consumed by the next pass here, each clamped to the group's bounds in force and
told as an event."""

from __future__ import annotations

from cloudherd.engine.autoscale import bounds_in_force
from cloudherd.engine.budget import affordable, budget_of
from cloudherd.engine.context import snapshot
from cloudherd.engine.membership import ATTACH, DETACH
from cloudherd.engine.pricing import Prices
from cloudherd.observe import cause
from cloudherd.spec import LoadedSpec
from cloudherd.state.models import Infrastructure, ScaleRequest
from cloudherd.state.repo import Store

MEMBERSHIP = frozenset({DETACH, ATTACH, "stop"})  # carried out by a pass of their own (membership, wake), not here


def consume_scale_requests(store: Store, infra: Infrastructure, loaded: LoadedSpec,
                           scaled: list[str]) -> tuple[set[str], set[str]]:
    """Apply pending scale requests to the groups' sizes (clamped to min / max); returns the node ids of the
    victims (to remove) and of the nodes to replace (a ``replace`` request: terminated and made anew, the size
    kept, whatever the circuit breaker says: a user asked for it)."""
    victims: set[str] = set()
    renew: set[str] = set()
    rows = {g.name: g for g in infra.groups}
    requests = store.pending_scale_requests(infra.id)
    limits = bounds_in_force(store, infra.id, loaded) if requests else {}
    for request in requests:
        if request.kind in MEMBERSHIP:
            continue  # a machine's detach or attach: the pass's own step (:mod:`cloudherd.engine.membership`)
        row = rows.get(request.group_name)
        if row is None or request.group_name not in loaded.spec.groups:
            store.consume_scale_request(request.id, f"no group {request.group_name}")
            continue
        if request.kind == "replace":
            named = list((request.victims or {}).get("nodes") or [])
            renew.update(named)
            outcome = f"{request.group_name}: replacing {len(named)} node(s)"
            store.consume_scale_request(request.id, outcome)
            cause.note(request.group_name, store.add_event(infra.id, "scale", outcome, cause_id=_asked(request)),
                       "heal")
            scaled.append(outcome)
            continue
        target, note = scale_target(row.count, request.kind, request.amount, *limits[request.group_name])
        if note and _newer_bounds_allow(store, infra, request.group_name, row.count, request.kind, request.amount):
            continue  # written with new bounds this pass has not read: the next pass applies it under them
        target, note = _within_budget(store, infra, loaded, row.name, row.count, target, note)
        named = list((request.victims or {}).get("nodes") or [])
        victims.update(named)
        store.update_group(infra.id, row.name, count=target)
        row.count = target
        outcome = f"{request.group_name}: {_verb(request.kind, request.amount)} → {target}{note}"
        store.consume_scale_request(request.id, outcome)
        cause.note(request.group_name, store.add_event(infra.id, "scale", outcome, cause_id=_asked(request)),
                   "scale")
        scaled.append(outcome)
    return victims, renew


def _within_budget(store: Store, infra: Infrastructure, loaded: LoadedSpec, group: str, current: int, target: int,
                   note: str) -> tuple[int, str]:
    """A growth held to what the hourly budget allows, said as an event (the size unchanged otherwise)."""
    if target <= current:
        return target, note
    sizes = {g.name: g.count for g in infra.groups if g.name in loaded.spec.groups}
    allowed = affordable(loaded.spec, sizes, group, target, Prices())
    if allowed >= target:
        return target, note
    budget = budget_of(loaded.spec)
    limit = f"${budget.hourly:,.4f}/h" if budget is not None and budget.hourly is not None else "its budget"
    store.add_event(infra.id, "budget",
                    f"{group}: {target} node(s) asked, {allowed} kept: the hourly budget is {limit}")
    return allowed, note + f" (held at {allowed} by the hourly budget, {limit}: asked for {target})"


def _newer_bounds_allow(store: Store, infra: Infrastructure, group_name: str, current: int, kind: str,
                        amount: int) -> bool:
    """Whether a request this pass would clamp fits the bounds of a spec written since the pass read its own
    (an Auto Scaling update writes new min / max and the size together: a pass between must not clamp the
    size to the old bounds and consume the request)."""
    fresh = store.infrastructure(infra.id)
    if fresh.spec_text == infra.spec_text:
        return False
    try:
        group = snapshot(fresh).group(group_name)
    except Exception:  # a spec that no longer loads: the request is judged by the one this pass has
        return False
    return not scale_target(current, kind, amount, group.min, group.max)[1]


def _verb(kind: str, amount: int) -> str:
    return {"add": f"+{amount}", "remove": f"-{amount}"}.get(kind, f"={amount}")


def scale_target(current: int, kind: str, amount: int, low: int | None, high: int | None) -> tuple[int, str]:
    """The size a request asks for, clamped to ``[low, high]``, and a note saying so when it was."""
    wanted = current + amount if kind == "add" else current - amount if kind == "remove" else amount
    wanted = max(wanted, 0)
    if high is not None and wanted > high:
        return high, f" (clamped to max {high}: asked for {wanted})"
    if low is not None and wanted < low:
        return low, f" (clamped to min {low}: asked for {wanted})"
    return wanted, ""


def _asked(request: ScaleRequest) -> int | None:
    """The event a request follows from: the policy's decision, or the request itself (see ``add_scale_request``)."""
    asked = (request.victims or {}).get("cause")
    return asked if isinstance(asked, int) else None
