"""Budgets: what an infrastructure may cost an hour and in all (the spec's ``budget:``, else the server-wide
``CLOUDHERD_BUDGET_HOURLY`` / ``CLOUDHERD_BUDGET_TOTAL``).

Why by group sizes and not by a bill: an hourly budget must hold *before* a machine is made — ``up`` refuses a
spec whose sizes cost more, and the manager grows a group only as far as the budget allows (an event says what it
held back).  A group whose price is unknown is not held back (there is nothing to hold it against): the refusal
and the events say so instead of guessing.

A total budget is checked by each pass against what the machines have cost so far (:func:`node_costs`).  Reached,
the infrastructure is stopped (``on_total: stop``: its machines stopped where the provider can, kept) or brought
to nothing (``down``: every group's size 0, its machines ended, its record kept); either way the manager's own
processes that would make or start a machine are suspended with the reason, until a user resumes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cloudherd.engine.idle_times import done_by, hold
from cloudherd.engine.pricing import Prices, node_costs
from cloudherd.errors import CloudherdError, UsageError
from cloudherd.lifecycle import NodeState
from cloudherd.settings import current
from cloudherd.spec import LoadedSpec, Spec
from cloudherd.spec.parts import Budget

if TYPE_CHECKING:
    from cloudherd.engine.session import RunSession
    from cloudherd.state.models import Infrastructure, Node
    from cloudherd.state.repo import Store

RUNNING = frozenset({NodeState.BOOTING, NodeState.DEPLOYING, NodeState.WAITING, NodeState.READY,
                     NodeState.UNHEALTHY, NodeState.FAILED})


class OverBudget(UsageError):
    """A change would cost more an hour than the infrastructure's budget allows."""


@dataclass(frozen=True)
class Hourly:
    """What groups of given sizes cost an hour, and the groups whose price is unknown."""

    dollars: float
    unknown: tuple[str, ...] = ()


def budget_of(spec: Spec) -> Budget | None:
    """The spec's budget, else the server-wide default (None: no budget)."""
    if spec.budget is not None:
        return spec.budget
    settings = current()
    hourly, total = _dollars(settings.budget_hourly), _dollars(settings.budget_total)
    return Budget(hourly=hourly, total=total) if hourly or total else None


def _dollars(text: str | None) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"a budget setting is not a number of dollars: {text!r}") from None
    return value if value > 0 else None


def hourly_at(spec: Spec, sizes: Mapping[str, int], prices: Prices) -> Hourly:
    """What the spec's groups cost an hour at ``sizes`` (group → nodes)."""
    dollars = 0.0
    unknown = []
    for name, count in sizes.items():
        priced = prices.of_group(spec, name)
        cost = priced.for_count(spec.groups[name].market if name in spec.groups else None, count)
        if cost is None:
            if count:
                unknown.append(name)
            continue
        dollars += cost
    return Hourly(dollars, tuple(unknown))


def refusal(spec: Spec, sizes: Mapping[str, int], prices: Prices | None = None) -> str | None:
    """Why ``sizes`` are over the hourly budget, with the numbers (None: within it, or no hourly budget)."""
    budget = budget_of(spec)
    if budget is None or budget.hourly is None:
        return None
    cost = hourly_at(spec, sizes, prices or Prices())
    if cost.dollars <= budget.hourly + 1e-9:
        return None
    shown = ", ".join(f"{name} {count}" for name, count in sizes.items())
    unpriced = f" (not priced, so not counted: {', '.join(cost.unknown)})" if cost.unknown else ""
    return (f"over the hourly budget: ${cost.dollars:,.4f}/h for {shown} > ${budget.hourly:,.4f}/h "
            f"(budget.hourly){unpriced}; shrink a group or raise the budget")


def check_spec(spec: Spec) -> None:
    """Refuse a spec whose groups, at their sizes, cost more an hour than its budget."""
    why = refusal(spec, {name: group.count for name, group in spec.groups.items()})
    if why is not None:
        raise OverBudget(f"{spec.name}: {why}")


def affordable(spec: Spec, sizes: Mapping[str, int], group: str, wanted: int, prices: Prices) -> int:
    """The largest size of ``group`` up to ``wanted`` (not below its size now) that the hourly budget allows."""
    budget = budget_of(spec)
    now = sizes.get(group, 0)
    if budget is None or budget.hourly is None or wanted <= now:
        return wanted
    priced = prices.of_group(spec, group)
    if priced.price is None or priced.price.hourly <= 0:
        return wanted
    others = hourly_at(spec, {n: c for n, c in sizes.items() if n != group}, prices).dollars
    room = int((budget.hourly - others + 1e-9) // priced.price.hourly)
    return max(now, min(wanted, room))


async def enforce_total(store: Store, infra: Infrastructure, loaded: LoadedSpec, run: RunSession,
                        nodes: Sequence[Node]) -> str | None:
    """Stop (or bring down) an infrastructure whose machines have cost its total budget; returns what it did."""
    budget = budget_of(loaded.spec)
    if budget is None or budget.total is None or _held_for_budget(infra):
        return None
    spent = sum(c.cost or 0.0 for c in node_costs(infra, loaded.spec, nodes, Prices()))
    if spent < budget.total:
        return None
    why = f"budget: ${spent:,.4f} spent, total ${budget.total:,.4f} reached"
    hold(store, infra, why)
    if budget.on_total == "down":
        store.update_groups(infra.id, {g.name: {"count": 0} for g in infra.groups})
        for request in store.pending_scale_requests(infra.id):  # none may grow it again behind the budget's back
            store.consume_scale_request(request.id, f"dropped: {why}")
        done = f"{why}: every group to size 0 (on_total: down)"
    else:
        done = f"{why}: {await stop_machines(store, infra, run, nodes)} machine(s) stopped (on_total: stop)"
    store.add_event(infra.id, "budget", done)
    return done


def _held_for_budget(infra: Infrastructure) -> bool:
    return done_by(infra, "budget")


async def stop_machines(store: Store, infra: Infrastructure, run: RunSession, nodes: Sequence[Node],
                        why: str = "stopped: total budget reached", kind: str = "budget") -> int:
    """Stop the running machines of every provider that can; the others are said (an event of ``kind``) and left
    running."""
    live = [n for n in nodes if n.state in RUNNING and n.provider_id and not n.standby]
    stopped = 0
    for name in sorted({n.provider for n in live}):
        mine = [n for n in live if n.provider == name]
        try:
            await run.providers.get(name).stop([n.provider_id or "" for n in mine])
        except CloudherdError as exc:
            store.add_event(infra.id, kind, f"provider {name} cannot stop its machines ({exc}): left running")
            continue
        store.update_nodes(infra.id, [(n.id, {"state": NodeState.STOPPED, "reason": why}) for n in mine])
        stopped += len(mine)
    return stopped
