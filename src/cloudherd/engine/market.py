"""Spot with fallback and return: which market each new node is bought on, when a group leaves spot, and when it
comes back (the spec's ``market:``, :class:`cloudherd.spec.parts.Market`).

Why a group-level state (``groups.market``) and not a per-node retry: an interruption is the cloud saying it wants
its spare capacity back *in that place*; a second and a third within the window say it will go on wanting it, and
a node made there again is likely to go the same way.  So the group moves its *new* nodes (``fallback``) for
``return_after``, and keeps the spot nodes it still has.  After that it tries spot again, and moves the on-demand
nodes the distribution does not ask for back to spot, one a pass (each replaced), while spot answers; a spot
create refused for capacity sends it back to the fallback at once.  Every move is an event of kind ``market``.

SkyPilot's managed spot never returns from on-demand once it fell back; AWS Auto Scaling's capacity rebalancing
does.  This follows AWS.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cloudherd.engine.processes import held_groups
from cloudherd.lifecycle import COUNTED_NODE_STATES, NodeState, Process
from cloudherd.providers.base import SPOT_INTERRUPTED
from cloudherd.spec.durations import format_duration
from cloudherd.times import as_utc, utcnow

if TYPE_CHECKING:
    from cloudherd.spec import LoadedSpec
    from cloudherd.spec.model import Group as GroupSpec
    from cloudherd.state.models import Group, Infrastructure, Node
    from cloudherd.state.repo import Store

SPOT = "spot"
ON_DEMAND = "on-demand"
KIND = "market"  # the events of every move
INTERRUPTION = "interruption"  # the events of each machine the cloud took back (node_id set)


def fallen_back(row: Group | Any | None) -> dict[str, Any] | None:
    """The group's fallback state (``{"on", "since", "reason", "place"}``), or None while it buys on its market."""
    state = getattr(row, "market", None)
    return state if isinstance(state, dict) and state.get("on") else None


def avoided_place(row: Group | Any | None) -> str | None:
    """The place a ``next-place`` fallback keeps new nodes away from."""
    state = fallen_back(row)
    return str(state["place"]) if state and state.get("on") == "next-place" and state.get("place") else None


def _returned_at(row: Group | Any | None) -> datetime | None:
    state = getattr(row, "market", None)
    if isinstance(state, dict) and state.get("returned"):
        return as_utc(datetime.fromisoformat(str(state["returned"])))
    return None


def choose(group: GroupSpec, row: Group | None, members: Sequence[Node], pending: Sequence[Node]) -> dict[str, str]:
    """The market of each pending node (id → spot / on-demand): the distribution's on-demand share of the group
    as it will be, less the on-demand nodes it has, goes on-demand (oldest rows first); the rest spot.  A group
    fallen back to on-demand buys every new node on-demand."""
    market = group.market
    if market is None or not market.spot:
        return {n.id: ON_DEMAND for n in pending}
    state = fallen_back(row)
    if state is not None and state["on"] == ON_DEMAND:
        return {n.id: ON_DEMAND for n in pending}
    live = [n for n in members if n.state in COUNTED_NODE_STATES and n.state != NodeState.PENDING and not n.warm]
    have = sum(1 for n in live if n.market == ON_DEMAND)
    wanted = market.on_demand_of(len(live) + len(pending))
    on_demand = max(0, min(len(pending), wanted - have))
    return {n.id: (ON_DEMAND if position < on_demand else SPOT) for position, n in enumerate(pending)}


def fall_back(store: Store, infra_id: str, group: GroupSpec, group_name: str, why: str,
              place: str | None = None, now: datetime | None = None) -> str:
    """Move a spot group's new nodes to its fallback from ``now`` (``place``: where spot failed); the event's
    words."""
    now = now or utcnow()
    fallback = group.market.fallback if group.market is not None else ON_DEMAND
    state = {"on": fallback, "since": now.isoformat(), "reason": why, **({"place": place} if place else {})}
    store.update_group(infra_id, group_name, market=state)
    where = f"new nodes off {place}" if fallback == "next-place" else "new nodes on on-demand"
    message = f"{group_name}: {why} → {where}"
    store.add_event(infra_id, KIND, message, at=now)
    return message


def interruptions(store: Store, infra: Infrastructure, nodes: Sequence[Node], group_name: str, provider: str,
                  window: float, now: datetime, returned: datetime | None = None) -> int:
    """Machines of the group's nodes on ``provider`` the cloud took back within ``window`` seconds of ``now``
    (and since the group last ``returned`` to spot: those before it were answered by the fallback already)."""
    ids = {n.id for n in nodes if n.group_name == group_name and n.provider == provider}
    since = now - timedelta(seconds=window)
    if returned is not None:
        since = max(since, returned)
    return sum(1 for e in store.recent_events(infra.id, INTERRUPTION, since) if e.node_id in ids)


def review(store: Store, infra: Infrastructure, loaded: LoadedSpec, nodes: Sequence[Node],
           now: datetime | None = None) -> list[str]:
    """One pass's look at each spot group: too many interruptions in one place → fall back; fallen back for
    ``return_after`` → back to spot.  Returns what it did, in words (each also an event)."""
    now = now or utcnow()
    said: list[str] = []
    rows = {g.name: g for g in infra.groups}
    for name, group in loaded.spec.groups.items():
        market = group.market
        if market is None or not market.spot or name not in rows:
            continue
        state = fallen_back(rows[name])
        if state is None:
            if market.fallback == "none":
                continue
            returned = _returned_at(rows[name])
            for place in sorted({n.provider for n in nodes if n.group_name == name}):
                count = interruptions(store, infra, nodes, name, place, market.window, now, returned)
                if count >= market.interruptions:
                    said.append(fall_back(store, infra.id, group, name, f"{count} spot interruptions on {place} within "
                                          f"{format_duration(market.window)}", place, now))
                    break
        elif now - as_utc(datetime.fromisoformat(state["since"])) >= timedelta(seconds=market.return_after):
            store.update_group(infra.id, name, market={"returned": now.isoformat()})
            message = (f"{name}: trying spot again after {format_duration(market.return_after)} on "
                       f"{state['on']} ({state['reason']})")
            store.add_event(infra.id, KIND, message, at=now)
            said.append(message)
    return said


def returning(store: Store, infra: Infrastructure, loaded: LoadedSpec, nodes: Sequence[Node],
              now: datetime | None = None) -> set[str]:
    """One on-demand node per group to replace by a spot one, where a spot group on its market holds more
    on-demand nodes than its distribution asks for (it fell back and came back).  Only when the group is all
    ready, so that a group moves one machine at a time and never while short."""
    moving: set[str] = set()
    kept = held_groups(infra.groups, Process.REBALANCE)
    rows = {g.name: g for g in infra.groups}
    for name, group in loaded.spec.groups.items():
        market = group.market
        if market is None or not market.spot or name in kept or fallen_back(rows.get(name)) is not None:
            continue
        members = [n for n in nodes if n.group_name == name and n.state != NodeState.TERMINATED and not n.warm
                   and not n.standby]
        if len(members) != group.count or any(n.state != NodeState.READY for n in members):
            continue
        on_demand = [n for n in members if n.market == ON_DEMAND and not n.protected]
        if len(on_demand) <= market.on_demand_of(len(members)):
            continue
        node = max(on_demand, key=lambda n: (as_utc(n.created_at), n.index or 0))
        moving.add(node.id)
        store.add_event(infra.id, KIND, f"{name}: moving {node.name} from on-demand back to spot "
                                        f"({len(on_demand)} on-demand, the distribution asks "
                                        f"{market.on_demand_of(len(members))})", at=now)
    return moving


def interrupted(reason: str | None) -> bool:
    """Whether a node's end reason is the cloud taking its spot machine back."""
    return bool(reason) and str(reason).startswith(SPOT_INTERRUPTED)
