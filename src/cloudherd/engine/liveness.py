"""What the providers say of an infrastructure's nodes: the one liveness check every command shares.

``status`` / ``exec`` (which record what they find), ``plan`` (which records nothing) and ``up`` (which
replaces the dead) all ask the same question the same way: one list-by-tag call per provider, each
recorded machine looked up in the answer.  Asking in one place keeps their answers equal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cloudherd.engine.context import Providers, snapshot
from cloudherd.errors import CloudherdError
from cloudherd.lifecycle import COUNTED_NODE_STATES, NodeState
from cloudherd.providers.base import SPOT_INTERRUPTED, TAG_INFRA, Capability

if TYPE_CHECKING:
    from cloudherd.state.models import Infrastructure, Node
    from cloudherd.state.reader import Reader
    from cloudherd.state.records import InfraRecord, NodeRecord
    from cloudherd.state.repo import Store


@dataclass(frozen=True)
class Observed:
    """A node whose recorded state the providers contradict: what it is now, and why."""

    node_id: str
    state: NodeState
    reason: str | None


async def observe(providers: Providers, infra_id: str, nodes: Sequence[Node | NodeRecord],
                  machines: dict[str, str] | None = None) -> list[Observed]:
    """Changes of state the providers show for ``nodes`` that hold a machine (one list per provider).

    A provider that cannot be asked now is skipped: what we knew of its nodes stands, since a failed
    call says nothing about the machines.  ``machines``, when given, gets what the provider says of each
    node's machine, where it says something (a local node: isolated or not, its limits).
    """
    held = [n for n in nodes if n.provider_id and (n.state in COUNTED_NODE_STATES or n.state == NodeState.DRAINING)]
    changes: list[Observed] = []
    for provider_name in sorted({n.provider for n in held}):
        try:
            found = {i.id: i for i in await providers.get(provider_name).list({TAG_INFRA: infra_id})}
        except CloudherdError:
            continue
        mine = [n for n in held if n.provider == provider_name]
        ended = await _why_ended(providers, provider_name, [n.provider_id for n in mine
                                                            if n.provider_id not in found])
        for node in mine:
            instance = found.get(node.provider_id or "")
            if machines is not None and instance is not None and instance.extra.get("machine"):
                machines[node.id] = str(instance.extra["machine"])
            if instance is None or instance.state in ("dead", "terminated"):
                why = "its machine is gone" if instance is not None else "the provider no longer lists it"
                changes.append(Observed(node.id, NodeState.DEAD, ended.get(node.provider_id or "", why)))
            elif instance.state == "stopped" and node.state != NodeState.STOPPED:
                changes.append(Observed(node.id, NodeState.STOPPED, "the provider reports it stopped"))
    return changes


async def _why_ended(providers: Providers, provider_name: str, ids: Sequence[str | None]) -> dict[str, str]:
    """What a provider with a spot market says of machines it no longer lists (a spot interruption); {} from one
    without, or when it cannot be asked now."""
    provider = providers.get(provider_name)
    wanted = [i for i in ids if i]
    if not wanted or not provider.supports(Capability.SPOT):
        return {}
    try:
        return await provider.ended(wanted)
    except CloudherdError:
        return {}


async def refresh(reads: Store | Reader, infra: Infrastructure | InfraRecord, machines: dict[str, str] | None = None,
                  *, store: Callable[[], Store]) -> Sequence[Node | NodeRecord]:
    """Nodes with states checked against the providers (one list call per provider), changes recorded
    (``machines``: see :func:`observe`).

    ``reads`` answers the questions; ``store`` is asked for only when there is something to write (a crashed
    command's leftovers to settle, a change the providers show), so that a look at a fleet as recorded costs no
    SQLAlchemy (:mod:`cloudherd.state.reader`)."""
    providers = Providers(snapshot(infra))
    try:
        if needs_settling(reads, infra.id):
            await _settle_if_free(store(), store().infrastructure(infra.id), providers)
            reads = store()
        nodes = reads.nodes(infra.id)
        changes = await observe(providers, infra.id, nodes, machines)
    finally:
        await providers.close()
    if not changes:
        return nodes
    record(store(), infra.id, nodes, changes)
    return store().nodes(infra.id)


def needs_settling(reads: Store | Reader, infra_id: str) -> bool:
    """Whether a crashed command left intents open or work half done (cheap reads; usually not)."""
    return reads.has_open_intents(infra_id) or reads.has_leftovers(infra_id)


def record(store: Store, infra_id: str, nodes: Sequence[Node | NodeRecord], changes: Sequence[Observed],
           at: datetime | None = None) -> None:
    """Write what the providers showed, each change an event with its reason (whoever noticed it first).

    Only over the state it was seen against: a ``status`` that listed the machines while a manager's pass
    detached one (its tags cleared, then its row ended) must not write the ended row back as dead, which would
    have the next pass "replace" it and terminate the machine the user kept.  ``at``: the events' time by the
    caller's clock (a pass's), which the interruptions of a spot group are counted against."""
    names = {n.id: n.name for n in nodes}
    seen = {n.id: str(n.state) for n in nodes}
    for change in changes:
        if not store.set_node_state_if(change.node_id, seen.get(change.node_id), change.state, change.reason):
            continue  # changed meanwhile by someone else: what they wrote stands
        kind = "interruption" if (change.reason or "").startswith(SPOT_INTERRUPTED) else "health"
        store.add_event(infra_id, kind, f"{names.get(change.node_id, change.node_id)}: {change.state}: "
                        f"{change.reason}", node_id=change.node_id, at=at)


async def settle(store: Store, infra: Infrastructure) -> None:
    """Resolve open intents a crashed command left (costs one query when there are none)."""
    if not needs_settling(store, infra.id):
        return
    providers = Providers(snapshot(infra))
    try:
        await _settle_if_free(store, infra, providers)
    finally:
        await providers.close()


async def _settle_if_free(store: Store, infra: Infrastructure, providers: Providers) -> None:
    """Resolve open intents unless a live operation holds the infrastructure: then they are its own
    calls in flight, not a crash's leftovers, and resolving them would undo its work.

    The journal's machinery (and with it SQLAlchemy) is imported here, when there is something to settle."""
    from cloudherd.engine import journal
    from cloudherd.engine.locks import infra_scope, try_hold
    from cloudherd.engine.recover import recover

    held = try_hold(store, infra_scope(infra.name), "settle")
    if held is None:
        return
    try:
        recover(store, infra)
        await journal.resolve(store, infra, providers)
    finally:
        store.release_lease(held.scope, held.owner)
