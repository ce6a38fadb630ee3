"""``down``: run each node's teardown script, terminate every node, mark the infrastructure destroyed."""

from __future__ import annotations

import asyncio
import contextlib

from cloudherd.engine.context import Providers, Redactor, ensure_identity, snapshot, template_context
from cloudherd.engine.deploy import run_scripts
from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.errors import CloudherdError
from cloudherd.providers.base import TAG_INFRA
from cloudherd.remote.ssh import Target, connect
from cloudherd.state.models import Infrastructure, Node
from cloudherd.state.repo import Store

TEARDOWN_TIMEOUT = 300.0


async def down(store: Store, infra: Infrastructure, *, on_event: EventSink | None = None,
               teardown_timeout: float = TEARDOWN_TIMEOUT) -> None:
    """Destroy ``infra``.  Teardown failures are recorded and reported but do not keep machines alive."""
    if infra.state == "destroyed":
        emit(on_event, ProgressEvent("info", f"{infra.id} ({infra.name}) is already destroyed"))
        return
    store.set_infrastructure_state(infra.id, "destroying")
    store.add_event(infra.id, "down", "down started")
    loaded = snapshot(infra)
    redact = Redactor(loaded.secrets)
    nodes = store.nodes(infra.id)
    groups = {g.name: g for g in infra.groups}
    identity = ensure_identity(store, infra.ssh_key_path)

    async def teardown(node: Node) -> None:
        script = (groups[node.group_name].config or {}).get("teardown") if node.group_name in groups else None
        if not script or node.state not in ("ready", "failed", "deploying") or not node.address:
            return
        emit(on_event, ProgressEvent("node", "teardown", node=node.name, group=node.group_name, state="terminating"))
        target = Target(node.name, node.address, node.port, node.ssh_user or identity.user_name, node.host_key)
        group_spec = loaded.spec.groups.get(node.group_name)
        env = dict(group_spec.env) if group_spec else {}
        try:
            async with asyncio.timeout(teardown_timeout):
                async with await connect(target, identity.key, timeout=min(30.0, teardown_timeout)) as conn:
                    context = template_context(node, nodes, infra, loaded.spec.variables, loaded.env)
                    await run_scripts(conn, store, node, [script], context, env, redact, None, kind="teardown")
        except (CloudherdError, TimeoutError) as exc:
            message = f"teardown on {node.name} failed: {redact(str(exc)) or 'timed out'}"
            store.add_event(infra.id, "warning", message, node_id=node.id)
            emit(on_event, ProgressEvent("error", message, node=node.name, group=node.group_name))

    await asyncio.gather(*(teardown(n) for n in nodes))

    providers = Providers(loaded)
    try:
        for provider_name in sorted({n.provider for n in nodes}):
            provider = providers.get(provider_name)
            ids = {n.provider_id for n in nodes if n.provider == provider_name and n.provider_id
                   and n.state != "terminated"}
            with contextlib.suppress(CloudherdError):  # leftovers this infrastructure made but did not record
                ids |= {i.id for i in await provider.list({TAG_INFRA: infra.id})}
            if ids:
                for node in nodes:
                    if node.provider_id in ids:
                        emit(on_event, ProgressEvent("node", "terminating", node=node.name, group=node.group_name,
                                                     state="terminating"))
                await provider.terminate(sorted(ids))
    finally:
        await providers.close()
    for node in nodes:
        if node.state != "terminated":
            store.update_node(node.id, state="terminated")
            emit(on_event, ProgressEvent("node", "terminated", node=node.name, group=node.group_name,
                                         state="terminated"))
    store.set_infrastructure_state(infra.id, "destroyed")
    store.add_event(infra.id, "down", "destroyed")
