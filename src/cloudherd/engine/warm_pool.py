"""A group's warm pool: nodes made and set up ahead, then stopped (or left running), taken first by a scale-out.

The diff decides (:func:`cloudherd.engine.diff.diff_groups`: which pool nodes a scale-out takes, how many to make
into the pool); here the converge carries it out around its creates and deploys: the taken nodes are started and
handed to the deploy (which finds their scripts done and only logs in), the pool's new nodes are made and deployed
as any other, then parked (stopped, when the pool keeps them so).  A start or stop is not journaled: both are
idempotent, and a pass after a crash finds the machine's state from the provider.
"""

from __future__ import annotations

from collections.abc import Sequence

from cloudherd.engine.events import ProgressEvent, emit
from cloudherd.engine.plan import Plan
from cloudherd.engine.session import RunSession
from cloudherd.lifecycle import NodeState
from cloudherd.providers.base import TAG_INFRA
from cloudherd.spec import LoadedSpec
from cloudherd.state.models import Infrastructure, Node
from cloudherd.state.repo import Store


async def take(plan: Plan, store: Store, infra: Infrastructure, run: RunSession) -> None:
    """The pool nodes the plan takes into service: started when stopped (their addresses read again, a cloud may
    give a started machine new ones), out of the pool."""
    wanted = {node_id for g in plan.groups for node_id in g.warmed}
    if not wanted:
        return
    taken = [n for n in store.nodes(infra.id) if n.id in wanted]
    stopped = [n for n in taken if n.state == NodeState.STOPPED]
    await each_provider(run, stopped, "start")
    fresh = await fresh_addresses(run, infra, stopped)
    changes: list[tuple[str, dict[str, object]]] = [
        (n.id, {"warm": False, **({"state": NodeState.BOOTING, "reason": None, **fresh.get(n.id, {})}
                                  if n in stopped else {})}) for n in taken]
    store.update_nodes(infra.id, changes)
    for group in sorted({n.group_name for n in taken}):
        names = [n.name for n in taken if n.group_name == group]
        store.add_event(infra.id, "warm-pool", f"{group}: {', '.join(names)} taken from the warm pool")
        emit(run.sink, ProgressEvent("info", f"{group}: {len(names)} node(s) from the warm pool"))


async def park(loaded: LoadedSpec, store: Store, infra: Infrastructure, run: RunSession) -> None:
    """The pool's nodes that are set up now, stopped when their group's pool keeps them stopped."""
    stopping = {name for name, g in loaded.spec.groups.items() if g.warm_pool and g.warm_pool.state == "stopped"}
    if not stopping:
        return
    ready = [n for n in store.nodes(infra.id) if n.warm and n.state == NodeState.READY and n.group_name in stopping]
    if not ready:
        return
    await each_provider(run, ready, "stop")
    store.update_nodes(infra.id, [(n.id, {"state": NodeState.STOPPED, "reason": "in the warm pool"}) for n in ready])
    for group in sorted({n.group_name for n in ready}):
        names = [n.name for n in ready if n.group_name == group]
        store.add_event(infra.id, "warm-pool", f"{group}: {', '.join(names)} set up and stopped in the warm pool")


async def each_provider(run: RunSession, nodes: Sequence[Node], call: str) -> None:
    for provider_name in sorted({n.provider for n in nodes}):
        ids = [n.provider_id for n in nodes if n.provider == provider_name and n.provider_id]
        if ids:
            provider = run.providers.get(provider_name)
            await (provider.start(ids) if call == "start" else provider.stop(ids))


async def fresh_addresses(run: RunSession, infra: Infrastructure,
                          nodes: Sequence[Node]) -> dict[str, dict[str, object]]:
    """The started machines' addresses and ports as their providers list them now."""
    found: dict[str, dict[str, object]] = {}
    for provider_name in sorted({n.provider for n in nodes}):
        listed = {i.id: i for i in await run.providers.get(provider_name).list({TAG_INFRA: infra.id})}
        for node in nodes:
            instance = listed.get(node.provider_id or "")
            if node.provider == provider_name and instance is not None and instance.address:
                found[node.id] = {"address": instance.address, "private_address": instance.private_address,
                                  "port": instance.port}
    return found
