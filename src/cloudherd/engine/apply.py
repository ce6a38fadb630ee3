"""``up``: create every group's nodes, deploy their scripts, and roll back exactly what this run made
when anything fails or the run is interrupted (unless asked to keep it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cloudherd.engine.context import Identity, Providers, Redactor, ensure_identity, template_context
from cloudherd.engine.deploy import run_scripts
from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.errors import ApplyFailed, CloudherdError, UsageError
from cloudherd.providers.base import TAG_GROUP, TAG_INFRA, TAG_OWNER, CreateRequest, Instance, SizeNeed
from cloudherd.remote.ssh import Target, connect
from cloudherd.spec import LoadedSpec
from cloudherd.spec.model import SizeNeed as SpecSizeNeed
from cloudherd.state.models import Infrastructure, Node
from cloudherd.state.repo import Store

DEFAULT_CONNECT_TIMEOUT = 120.0
DEFAULT_CONCURRENCY = 64


async def up(
    loaded: LoadedSpec,
    store: Store,
    *,
    keep_on_failure: bool = False,
    on_event: EventSink | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> str:
    """Bring ``loaded`` up as a new infrastructure and return its id; raise ApplyFailed on failure."""
    spec = loaded.spec
    identity = ensure_identity(store, _key_path(loaded))
    existing = store.active_named(spec.name)
    if existing is not None:
        raise UsageError(
            f"an infrastructure named '{spec.name}' exists already ({existing.id}, {existing.state}); "
            f"`cloudherd down {existing.id}` first, or rename the spec"
        )
    infra = store.create_infrastructure(
        name=spec.name, owner_id=identity.user_id, state="creating", spec_path=str(loaded.path.resolve()),
        spec_text=loaded.raw_text, ssh_user=spec.ssh.user, ssh_key_path=str(identity.key_path),
    )
    store.add_event(infra.id, "up", f"up of {spec.name} started")
    emit(on_event, ProgressEvent("info", f"infrastructure {infra.id} ({spec.name})"))
    redact = Redactor(set(loaded.secrets))
    for position, (group_name, group) in enumerate(spec.groups.items()):
        store.add_group(
            infra.id, name=group_name, position=position, provider=group.provider,
            provider_type=(spec.providers[group.provider].type if group.provider in spec.providers else group.provider),
            image=group.image, size=group.size_name, count=group.count,
            config=_group_config(loaded, group_name, redact),
        )
        store.add_nodes(infra.id, [
            {"group_name": group_name, "name": f"{spec.name}-{group_name}-{i}", "index": i, "provider": group.provider}
            for i in range(1, group.count + 1)
        ])
    providers = Providers(loaded)
    try:
        await _create_all(loaded, store, infra, identity, providers, on_event)
        await _deploy_all(loaded, store, infra, identity, redact, on_event, connect_timeout, concurrency)
        store.set_infrastructure_state(infra.id, "ready")
        store.add_event(infra.id, "up", "ready")
        return infra.id
    except BaseException as exc:
        reason = _reason(exc)
        store.add_event(infra.id, "error", reason)
        emit(on_event, ProgressEvent("error", reason))
        if keep_on_failure:
            store.set_infrastructure_state(infra.id, "failed", reason + " (kept: --keep-on-failure)")
        else:
            emit(on_event, ProgressEvent("info", "rolling back what this run created"))
            await _rollback(store, infra, providers, reason)
        if isinstance(exc, CloudherdError | BaseExceptionGroup) and not isinstance(exc, asyncio.CancelledError):
            raise ApplyFailed(f"up of {spec.name} failed: {reason}") from exc
        raise
    finally:
        await providers.close()


def _key_path(loaded: LoadedSpec) -> Path | None:
    key = loaded.spec.ssh.key
    if not key:
        return None
    path = Path(key).expanduser()
    return path if path.is_absolute() else loaded.path.parent / path


def _group_config(loaded: LoadedSpec, group_name: str, redact: Redactor) -> dict[str, Any]:
    group = loaded.group(group_name)
    teardown = loaded.teardown.get(group_name)
    return {
        "scripts": [{"name": s.name, "source": s.source, "content": s.content} for s in loaded.scripts[group_name]],
        "teardown": (
            {"name": teardown.name, "source": teardown.source, "content": teardown.content} if teardown else None
        ),
        "tags": dict(group.tags),
        "env": {k: redact(v) for k, v in group.env.items()},
    }


def _size_need(size: object) -> SizeNeed | None:
    if isinstance(size, SpecSizeNeed):
        return SizeNeed(cpus=size.cpus, memory_mib=size.memory_mib)
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, BaseExceptionGroup):
        first = next((e for e in exc.exceptions if isinstance(e, CloudherdError)), exc.exceptions[0])
        return _reason(first)
    if isinstance(exc, CloudherdError):
        return str(exc)
    return f"{exc.__class__.__name__}: {exc}"


async def _create_all(
    loaded: LoadedSpec, store: Store, infra: Infrastructure, identity: Identity, providers: Providers,
    sink: EventSink | None,
) -> None:
    """One bulk create per group, all groups at once."""
    nodes = store.nodes(infra.id)

    async def create_group(group_name: str) -> None:
        group = loaded.group(group_name)
        rows = [n for n in nodes if n.group_name == group_name]
        if not rows:
            return
        provider = providers.get(group.provider)
        tags = {**group.tags, TAG_INFRA: infra.id, TAG_GROUP: group_name, TAG_OWNER: identity.user_name}
        request = CreateRequest(
            count=len(rows), image=group.image, size=group.size if isinstance(group.size, str) else None, tags=tags,
            ports=group.ports, size_need=_size_need(group.size),
            ssh_user=loaded.spec.ssh.user or identity.user_name, ssh_public_key=identity.public_key,
            names=[n.name for n in rows], token=f"{infra.id}-{group_name}",
        )
        for row in rows:
            emit(sink, ProgressEvent("node", "creating", node=row.name, group=group_name, state="creating"))
        instances = await provider.create(request)
        _record_instances(store, rows, instances, loaded.spec.ssh.user, sink)

    await asyncio.gather(*(create_group(name) for name in loaded.spec.groups))


def _record_instances(
    store: Store, rows: Sequence[Node], instances: Sequence[Instance], ssh_user: str | None, sink: EventSink | None
) -> None:
    by_name = {i.name: i for i in instances}
    spare = [i for i in instances if i.name not in {r.name for r in rows}]  # providers that cannot name
    missing = 0
    for row in rows:
        instance = by_name.get(row.name) or (spare.pop(0) if spare else None)
        if instance is None:
            store.update_node(row.id, state="failed", reason="the provider made fewer instances than asked")
            missing += 1
            continue
        store.update_node(
            row.id, provider_id=instance.id, state="booting", address=instance.address,
            private_address=instance.private_address, port=instance.port,
            ssh_user=instance.ssh_user or ssh_user, host_key=instance.host_key, workdir=instance.workdir,
        )
        emit(sink, ProgressEvent("node", f"created at {instance.address}", node=row.name, group=row.group_name,
                                 state="booting"))
    if missing:
        raise ApplyFailed(f"the provider made {len(rows) - missing} of {len(rows)} instances")


async def _deploy_all(
    loaded: LoadedSpec, store: Store, infra: Infrastructure, identity: Identity, redact: Redactor,
    sink: EventSink | None, connect_timeout: float, concurrency: int,
) -> None:
    """Each node runs its scripts as soon as it accepts SSH; the first failure stops the run."""
    nodes = store.nodes(infra.id)
    limit = asyncio.Semaphore(max(1, concurrency))

    async def deploy(node: Node) -> None:
        group = loaded.group(node.group_name)
        async with limit:
            store.update_node(node.id, state="deploying")
            emit(sink, ProgressEvent("node", "connecting", node=node.name, group=node.group_name, state="deploying"))
            user = node.ssh_user or identity.user_name
            target = Target(node.name, node.address or "", node.port, user, node.host_key)
            conn = await connect(target, identity.key, timeout=connect_timeout)
            async with conn:
                context = template_context(node, nodes, infra, loaded.spec.variables, loaded.env)
                scripts = [{"name": s.name, "source": s.source, "content": s.content}
                           for s in loaded.scripts[node.group_name]]
                try:
                    await run_scripts(conn, store, node, scripts, context, group.env, redact, sink)
                except CloudherdError as exc:
                    store.update_node(node.id, state="failed", reason=str(exc))
                    emit(sink, ProgressEvent("node", str(exc), node=node.name, group=node.group_name, state="failed"))
                    raise
        store.update_node(node.id, state="ready")
        emit(sink, ProgressEvent("node", "ready", node=node.name, group=node.group_name, state="ready"))

    async with asyncio.TaskGroup() as tasks:
        for node in nodes:
            if node.state == "booting":
                tasks.create_task(deploy(node))


async def _rollback(store: Store, infra: Infrastructure, providers: Providers, reason: str) -> None:
    """Terminate what this run made: the recorded ids plus anything carrying this (new) infra's tag."""
    nodes = store.nodes(infra.id)
    for provider_name in sorted({n.provider for n in nodes}):
        with contextlib.suppress(CloudherdError):
            provider = providers.get(provider_name)
            ids = {n.provider_id for n in nodes if n.provider == provider_name and n.provider_id}
            with contextlib.suppress(CloudherdError):
                ids |= {i.id for i in await provider.list({TAG_INFRA: infra.id})}
            if ids:
                await provider.terminate(sorted(ids))
    for node in nodes:
        store.update_node(node.id, state="terminated")
    store.set_infrastructure_state(infra.id, "failed", f"{reason} (rolled back)")
    store.add_event(infra.id, "rollback", "rolled back")
