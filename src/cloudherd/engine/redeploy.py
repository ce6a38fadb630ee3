"""Re-running the scripts of chosen nodes (OGC's ``deploy``): the group's stored scripts, on exactly those nodes.

``up`` creates what is missing and then deploys; this only deploys, and only where asked, whatever ran
before (it never skips a script as unchanged).  The scripts are the ones recorded with the group when it
was last applied (``config["scripts"]``), rendered against the fleet as it is now.  It holds the
infrastructure's lease, as every command that changes nodes does, so it never runs beside an ``up``, a
``down`` or a manager's pass.  Each node's outcome is its own: one failing does not stop the others, and
nodes go level by level (``depends_on``) as in ``up``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from cloudherd.engine.context import Redactor, ensure_identity, snapshot
from cloudherd.engine.deploy import run_scripts
from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.engine.fleet import Reach
from cloudherd.engine.locks import DEFAULT_WAIT, exclusive, infra_scope
from cloudherd.engine.recover import INTERRUPTED
from cloudherd.engine.templates import template_context
from cloudherd.errors import CloudherdError, UsageError
from cloudherd.lifecycle import LIVE_NODE_STATES, InfraState, NodeState
from cloudherd.remote.pool import ConnectionPool
from cloudherd.state.models import Infrastructure, Node, utcnow
from cloudherd.state.repo import Store


@dataclass(frozen=True)
class Redeployed:
    """One node's outcome: ``error`` is None when every script succeeded."""

    node_id: str
    name: str
    ran: int
    error: str | None = None


async def redeploy(
    store: Store, infra: Infrastructure, node_ids: Collection[str], *, on_event: EventSink | None = None,
    connect_timeout: float = 120.0, handshakes: int | None = None, accept_new_host_key: Collection[str] = (),
    wait: float = DEFAULT_WAIT,
) -> list[Redeployed]:
    """Run each chosen node's group scripts on it again, under the infrastructure's lease; one result per node.

    A node id that is not a live node of ``infra`` is a usage error (nothing runs).  A node whose scripts
    succeed is ``ready``; one where a script fails, or that cannot be reached, is ``failed`` with the reason.
    """
    if infra.state == InfraState.DESTROYED:
        raise UsageError(f"{infra.name} ({infra.id}) is destroyed: nothing to deploy")

    def waiting(message: str) -> None:
        emit(on_event, ProgressEvent("info", message))

    async with exclusive(store, infra_scope(infra.name), "deploy", wait=wait, on_wait=waiting):
        infra = store.infrastructure(infra.id)
        nodes = store.nodes(infra.id)
        chosen = _chosen(infra, nodes, node_ids)
        loaded = snapshot(infra)
        redact = Redactor(set(loaded.secrets))
        identity = ensure_identity(store, infra.ssh_key_path)
        scripts = {g.name: list((g.config or {}).get("scripts") or []) for g in infra.groups}
        reach = Reach(store, infra, identity, accept_new_host_key)
        results: dict[str, Redeployed] = {}

        async def deploy(pool: ConnectionPool, node: Node) -> None:
            before = NodeState(node.state)
            group_env = dict(loaded.spec.groups[node.group_name].env) if node.group_name in loaded.spec.groups \
                else {}
            store.update_node(node.id, state=NodeState.DEPLOYING)
            emit(on_event, ProgressEvent("node", "connecting", node=node.name, group=node.group_name,
                                         state=NodeState.DEPLOYING))
            target = reach.target(node)
            try:
                await pool.connection(target)
                context = template_context(node, nodes, infra, loaded.spec.variables, loaded.env)
                ran = await run_scripts(pool, target, store, node, scripts.get(node.group_name, []), context,
                                        group_env, redact, on_event)
            except asyncio.CancelledError:
                if store.close_unfinished_actions(infra.id, INTERRUPTED, node.id):
                    store.update_node(node.id, state=NodeState.FAILED, reason="deploy interrupted")
                else:
                    store.update_node(node.id, state=before)
                raise
            except CloudherdError as exc:
                reason = redact(str(exc))
                store.update_node(node.id, state=NodeState.FAILED, reason=reason)
                emit(on_event, ProgressEvent("node", reason, node=node.name, group=node.group_name,
                                             state=NodeState.FAILED))
                results[node.id] = Redeployed(node.id, node.name, 0, reason)
                return
            fresh = {"ready_at": utcnow(), "health": None, "failures": 0, "failing_since": None} \
                if before != NodeState.READY else {}
            store.update_node(node.id, state=NodeState.READY, reason=None, **fresh)
            emit(on_event, ProgressEvent("node", "ready", node=node.name, group=node.group_name,
                                         state=NodeState.READY))
            results[node.id] = Redeployed(node.id, node.name, ran)

        async with ConnectionPool(identity.key, handshakes=handshakes, connect_timeout=connect_timeout) as pool:
            try:
                for level in loaded.spec.levels():
                    async with asyncio.TaskGroup() as tasks:
                        for node in chosen:
                            if node.group_name in level:
                                tasks.create_task(deploy(pool, node))
                leftover = [n for n in chosen if n.id not in results]  # groups the spec no longer has
                async with asyncio.TaskGroup() as tasks:
                    for node in leftover:
                        tasks.create_task(deploy(pool, node))
            finally:
                reach.record(pool)
        failed = [r.name for r in results.values() if r.error]
        store.add_event(infra.id, "deploy", f"scripts re-run on {len(chosen)} node(s)"
                        + (f"; failed: {', '.join(sorted(failed))}" if failed else ""))
        return [results[n.id] for n in chosen]


def _chosen(infra: Infrastructure, nodes: Sequence[Node], node_ids: Collection[str]) -> list[Node]:
    live = {n.id: n for n in nodes if n.state in LIVE_NODE_STATES and n.address}
    wanted = list(dict.fromkeys(node_ids))
    missing = [i for i in wanted if i not in live]
    if missing:
        raise UsageError(f"no live node {', '.join(missing)} in {infra.name} (see `cloudherd status {infra.id}`)")
    return [live[i] for i in wanted]
