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
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from cloudherd.engine.context import Redactor, recorded_nodes, snapshot
from cloudherd.engine.deploy import deploy_node
from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.engine.locks import DEFAULT_WAIT, exclusive, infra_scope
from cloudherd.engine.session import RunSession
from cloudherd.engine.templates import template_context
from cloudherd.errors import CloudherdError, UsageError
from cloudherd.lifecycle import LIVE_NODE_STATES, InfraState
from cloudherd.state.models import Infrastructure, Node
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
    wait: float = DEFAULT_WAIT, skip_done: bool = False, scripts: Sequence[Mapping[str, str]] | None = None,
) -> list[Redeployed]:
    """Run each chosen node's group scripts on it again, under the infrastructure's lease; one result per node.

    A node id that is not a live node of ``infra`` is a usage error (nothing runs).  A node whose scripts
    succeed is ``ready``; one where a script fails, or that cannot be reached, is ``failed`` with the reason.
    ``skip_done``: a script that already succeeded on the node as it renders now is not run again (OGC's
    ``deploy`` after a ``launch``, which in cloudherd already ran them).  ``scripts`` ({name, source,
    content}) are run instead of the groups' (OGC's ``exec_scripts`` of a folder named at the call).
    """
    if infra.state == InfraState.DESTROYED:
        raise UsageError(f"{infra.name} ({infra.id}) is destroyed: nothing to deploy")

    def waiting(message: str) -> None:
        emit(on_event, ProgressEvent("info", message))

    async with exclusive(store, infra_scope(infra.name), "deploy", wait=wait, on_wait=waiting):
        infra = store.infrastructure(infra.id)
        nodes = recorded_nodes(infra)
        chosen = _chosen(infra, nodes, node_ids)
        loaded = snapshot(infra)
        redact = Redactor(set(loaded.secrets))
        given = list(scripts) if scripts is not None else None
        scripts_of = {g.name: given if given is not None else list((g.config or {}).get("scripts") or [])
                      for g in infra.groups}
        results: dict[str, Redeployed] = {}
        done = store.script_digests(infra.id) if skip_done else None

        async def deploy(run: RunSession, node: Node) -> None:
            group = loaded.spec.groups.get(node.group_name)
            context = template_context(node, nodes, infra, loaded.variables_for(node.group_name), loaded.env)
            try:
                ran = await deploy_node(run.pool, run.reach.target(node), store, node,
                                        scripts_of.get(node.group_name, []), context, dict(group.env) if group else {},
                                        redact, on_event, uploads=group.upload if group else (),
                                        base=loaded.path.parent, done=done)
            except CloudherdError as exc:  # recorded on the node; the other nodes go on
                results[node.id] = Redeployed(node.id, node.name, 0, redact(str(exc)))
                return
            results[node.id] = Redeployed(node.id, node.name, ran)

        async with RunSession(store, infra, handshakes=handshakes, connect_timeout=connect_timeout,
                              accept_new_host_key=accept_new_host_key) as run:
            run.check_reach()
            for level in loaded.spec.levels():
                async with asyncio.TaskGroup() as tasks:
                    for node in chosen:
                        if node.group_name in level:
                            tasks.create_task(deploy(run, node))
            leftover = [n for n in chosen if n.id not in results]  # groups the spec no longer has
            async with asyncio.TaskGroup() as tasks:
                for node in leftover:
                    tasks.create_task(deploy(run, node))
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
