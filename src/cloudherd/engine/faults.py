"""Faults on demand: make a ``local`` node misbehave (crash, hang, partition, a spot interruption) or heal it,
on the record.

Why in the engine: a fault is an event of the infrastructure — the manager's reaction to it is read
against the event log, by tests and by users trying their own health checks — and only the engine knows
which driver made a node.  The driver does the deed (:meth:`FaultInjector.fault`: ``local`` can, it says so
by ``supports("faults")``); clouds have no such switch, so a fault on a cloud node is refused in words.
"""

from __future__ import annotations

from cloudherd.engine.context import Providers, snapshot
from cloudherd.errors import UsageError
from cloudherd.providers.base import FAULTS, Capability, FaultInjector
from cloudherd.state.models import Infrastructure, Node
from cloudherd.state.repo import Store


async def inject(store: Store, infra: Infrastructure, node: Node, kind: str, peer: Node | None = None) -> str:
    """Apply fault ``kind`` to ``node`` (a ``partition`` from ``peer`` alone, when given); returns what was done
    (also recorded as a ``fault`` event)."""
    if kind not in FAULTS:
        raise UsageError(f"unknown fault '{kind}' (known: {', '.join(FAULTS)})")
    if not node.provider_id:
        raise UsageError(f"node {node.name} has no machine yet")
    if peer is not None and kind != "partition":
        raise UsageError(f"only a partition is made between two nodes, not a {kind}")
    if peer is not None and (not peer.address or peer.provider != node.provider):
        raise UsageError(f"node {peer.name} is not a local node beside {node.name}: no partition between them")
    providers = Providers(snapshot(infra))
    try:
        provider = providers.get(node.provider)
        if not provider.supports(Capability.FAULTS) or not isinstance(provider, FaultInjector):
            raise UsageError(f"node {node.name} runs on {node.provider} ({provider.type}): faults on demand are for "
                             f"local nodes only")
        done = await provider.fault(node.provider_id, kind, peer.address if peer else None)
    finally:
        await providers.close()
    what = f"{kind} from {peer.name}" if peer else kind
    store.add_event(infra.id, "fault", f"{node.name}: {what}: {done}", node_id=node.id)
    return done
