"""Retiring nodes: pull their artifacts, run their teardown, terminate them.  ``down`` retires them all.

Teardown and artifact failures are recorded and reported but never keep a machine alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from cloudherd.engine import journal
from cloudherd.engine.context import Providers, Redactor, snapshot
from cloudherd.engine.deploy import run_scripts
from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.engine.health import answers_ssh
from cloudherd.engine.locks import DEFAULT_WAIT, exclusive, infra_scope
from cloudherd.engine.reach import Reach
from cloudherd.engine.session import RunSession
from cloudherd.engine.templates import template_context
from cloudherd.errors import CloudherdError, SpecError
from cloudherd.lifecycle import REACHABLE_NODE_STATES, InfraState, NodeState
from cloudherd.observe import cause, metrics, tracing
from cloudherd.paths import data_dir, private_dir
from cloudherd.providers.base import TAG_INFRA
from cloudherd.remote.pool import ConnectionPool
from cloudherd.remote.ssh import Target
from cloudherd.spec import LoadedSpec
from cloudherd.spec.loader import load_spec_text
from cloudherd.state.models import Infrastructure, Node
from cloudherd.state.repo import Store

TEARDOWN_TIMEOUT = 300.0


def default_artifacts_dir(infra: Infrastructure) -> Path:
    return data_dir() / "artifacts" / f"{infra.name}-{infra.id}"


async def down(store: Store, infra: Infrastructure, *, on_event: EventSink | None = None,
               teardown_timeout: float = TEARDOWN_TIMEOUT, artifacts_dir: str | os.PathLike[str] | None = None,
               wait: float = DEFAULT_WAIT, force: bool = False) -> None:
    """Destroy ``infra``: every node retired, then the infrastructure marked destroyed.

    Waits (up to ``wait`` seconds) for an operation already changing it, then reads it again: a
    second ``down`` reports the first one's outcome, not a guess made while it was still running.

    A provider that cannot be built or reached does not strand the rest: every other node is
    terminated, and the down fails naming what is left.  ``force`` forgets those nodes instead (their
    machines may live on: a warning says so, and ``gc`` finds them once the provider answers again).
    """
    def waiting(message: str) -> None:
        emit(on_event, ProgressEvent("info", message))

    async with exclusive(store, infra_scope(infra.name), "down", wait=wait, on_wait=waiting):
        infra = store.infrastructure(infra.id)
        if infra.state == InfraState.DESTROYED:
            emit(on_event, ProgressEvent("info", f"{infra.id} ({infra.name}) is already destroyed"))
            return
        await _down(store, infra, on_event=on_event, teardown_timeout=teardown_timeout, artifacts_dir=artifacts_dir,
                    force=force)


async def down_held(store: Store, infra: Infrastructure, *, on_event: EventSink | None = None,
                    reason: str = "ttl") -> None:
    """:func:`down` for a caller that holds the infrastructure already (a manager's pass whose time-to-live ran
    out, or autodown); what cannot be terminated is forgotten and said, as ``down --force`` does (nobody is there
    to retry).  ``reason``: what its nodes' ends are counted as."""
    await _down(store, infra, on_event=on_event, teardown_timeout=TEARDOWN_TIMEOUT, artifacts_dir=None, force=True,
                reason=reason)


async def _down(store: Store, infra: Infrastructure, *, on_event: EventSink | None, teardown_timeout: float,
                artifacts_dir: str | os.PathLike[str] | None, force: bool, reason: str = "down") -> None:
    """A ``down`` is a trace of its own, or a span of the trace it runs in (a pass whose time to live ran out)."""
    within = tracing.current_trace_id() is not None
    with tracing.span("down", infrastructure=infra.name) if within else \
            tracing.operation_span("down", cause.origin() or "cloudherd down", infrastructure=infra.name):
        alive = len(store.nodes(infra.id, alive_only=True))
        await _destroy(store, infra, on_event=on_event, teardown_timeout=teardown_timeout,
                       artifacts_dir=artifacts_dir, force=force)
        for _ in range(alive):
            metrics.node_terminated(reason)


async def _destroy(store: Store, infra: Infrastructure, *, on_event: EventSink | None, teardown_timeout: float,
                   artifacts_dir: str | os.PathLike[str] | None, force: bool) -> None:
    store.set_infrastructure_state(infra.id, InfraState.DESTROYING)
    store.add_event(infra.id, "down", "down started")
    loaded = _recorded_spec(infra, on_event)
    async with RunSession(store, infra, loaded, sink=on_event, connect_timeout=min(30.0, teardown_timeout)) as run:
        await run.settle()
        failed = await retire(store, infra, store.nodes(infra.id), loaded=loaded, reach=run.reach, pool=run.pool,
                              providers=run.providers, sink=on_event, teardown_timeout=teardown_timeout,
                              artifacts_dir=Path(artifacts_dir) if artifacts_dir else None, sweep=True)
    if failed:
        _left_behind(store, infra, failed, force, on_event)
    store.set_infrastructure_state(infra.id, InfraState.DESTROYED)
    store.add_event(infra.id, "down", "destroyed")


def _recorded_spec(infra: Infrastructure, sink: EventSink | None) -> LoadedSpec:
    """The spec the infrastructure was made from; when it no longer loads (a newer cloudherd checks more),
    a bare one of the same name, so that ``down`` can still finish: providers then come from their
    names, and nodes whose provider cannot be made that way are reported (or forgotten with force)."""
    try:
        return snapshot(infra)
    except SpecError as exc:
        message = f"the recorded spec of {infra.name} no longer loads ({exc}); tearing down from the node records"
        emit(sink, ProgressEvent("error", message))
        groups = "".join(f"  {json.dumps(g.name)}: {{count: 0}}\n" for g in infra.groups) or "  none: {count: 0}\n"
        return load_spec_text(f"name: {json.dumps(infra.name)}\ngroups:\n{groups}", Path(infra.spec_path),
                              strict_env=False, read_scripts=False)


class IncompleteDownError(CloudherdError):
    """Some nodes could not be terminated: their provider cannot be built or does not answer."""


def _left_behind(store: Store, infra: Infrastructure, failed: dict[str, str], force: bool,
                 sink: EventSink | None) -> None:
    left = [n for n in store.nodes(infra.id) if n.provider in failed and n.state != NodeState.TERMINATED]
    why = "; ".join(f"{name}: {reason}" for name, reason in failed.items())
    if not force:
        store.set_infrastructure_state(infra.id, InfraState.DESTROYING, f"not terminated: {why}")
        raise IncompleteDownError(
            f"down of {infra.name}: {len(left)} node(s) could not be terminated ({why}); fix the provider and "
            f"run down again, or forget them (their machines may still run)", remedy=("force", ""))
    for node in left:
        store.update_node(node.id, state=NodeState.TERMINATED, reason=f"forgotten by a forced down: {why}")
    for intent in store.open_intents(infra.id):
        if intent.provider in failed:
            store.close_intent(intent.id, "failed", outcome="abandoned by a forced down")
    message = (f"forgot {len(left)} node(s) whose provider could not terminate them ({why}): their machines "
               f"may still run; gc finds them once the provider answers")
    store.add_event(infra.id, "warning", message)
    emit(sink, ProgressEvent("error", message))


async def retire(
    store: Store, infra: Infrastructure, nodes: Sequence[Node], *, loaded: LoadedSpec, reach: Reach,
    pool: ConnectionPool, providers: Providers, sink: EventSink | None, teardown_timeout: float = TEARDOWN_TIMEOUT,
    artifacts_dir: Path | None = None, sweep: bool = False,
) -> dict[str, str]:
    """Artifacts, teardown, terminate for ``nodes``.  ``sweep`` (``down`` of a whole infrastructure) also
    terminates anything else carrying the infrastructure's tag, and returns the providers that could not
    terminate instead of raising."""
    groups = {g.name: g for g in infra.groups}
    redact = Redactor(loaded.secrets)
    everyone = store.nodes(infra.id)
    artifacts_root = artifacts_dir or default_artifacts_dir(infra)

    async def before(node: Node) -> None:
        config = (groups[node.group_name].config or {}) if node.group_name in groups else {}
        if node.state not in REACHABLE_NODE_STATES or not node.address:
            return
        target = reach.target(node)
        patterns = config.get("artifacts") or []
        script = config.get("teardown")
        if not patterns and not script:
            return
        if node.state in (NodeState.FAILED, NodeState.UNHEALTHY) and not await answers_ssh(target):
            message = f"{node.name} does not answer SSH: no artifacts pulled, no teardown run"
            store.add_event(infra.id, "warning", message, node_id=node.id)
            emit(sink, ProgressEvent("error", message, node=node.name, group=node.group_name))
            return
        try:
            async with asyncio.timeout(teardown_timeout):
                if patterns:
                    await _pull_artifacts(store, infra, node, pool, target, patterns, artifacts_root, sink)
                if script:
                    emit(sink, ProgressEvent("node", "teardown", node=node.name, group=node.group_name,
                                             state=NodeState.TERMINATING))
                    group_spec = loaded.spec.groups.get(node.group_name)
                    env = dict(group_spec.env) if group_spec else {}
                    context = template_context(node, everyone, infra, loaded.variables_for(node.group_name), loaded.env)
                    await run_scripts(pool, target, store, node, [script], context, env, redact, None,
                                      kind="teardown")
        except (CloudherdError, TimeoutError) as exc:
            message = f"teardown on {node.name} failed: {redact(str(exc)) or 'timed out'}"
            store.add_event(infra.id, "warning", message, node_id=node.id)
            emit(sink, ProgressEvent("error", message, node=node.name, group=node.group_name))

    await asyncio.gather(*(before(n) for n in nodes))
    return await terminate(store, infra, nodes, providers, sink, sweep=sweep)


async def _pull_artifacts(
    store: Store, infra: Infrastructure, node: Node, pool: ConnectionPool, target: Target, patterns: list[str],
    root: Path, sink: EventSink | None,
) -> None:
    try:
        private_dir(root)  # artifacts are a fleet's logs and outputs: its owner's alone (0700), made so
        matched = await pool.get(target, patterns, private_dir(root / node.name))
    except CloudherdError:
        raise
    except Exception as exc:  # SFTP errors: recorded, never blocking the teardown
        message = f"artifacts from {node.name} not pulled: {getattr(exc, 'reason', None) or exc}"
        store.add_event(infra.id, "warning", message, node_id=node.id)
        emit(sink, ProgressEvent("error", message, node=node.name, group=node.group_name))
        return
    text = f"{len(matched)} artifact(s) pulled to {root / node.name}" if matched else "no artifacts matched"
    store.add_event(infra.id, "artifacts", f"{node.name}: {text}", node_id=node.id)
    emit(sink, ProgressEvent("action", text, node=node.name, group=node.group_name))


async def terminate(
    store: Store, infra: Infrastructure, nodes: Sequence[Node], providers: Providers, sink: EventSink | None,
    *, sweep: bool = False,
) -> dict[str, str]:
    """Terminate the nodes' instances (one journaled call per provider) and mark the nodes terminated.

    With ``sweep`` (a whole ``down``) a provider that cannot be built or answered does not stop the
    others: its nodes are left as they are and it is returned with the reason, for the caller to
    report (or, when asked, to forget).  Without it the first failure is raised.
    """
    failed: dict[str, str] = {}
    for provider_name in sorted({n.provider for n in nodes}):
        mine = [n for n in nodes if n.provider == provider_name and n.state != NodeState.TERMINATED]
        try:
            provider = providers.get(provider_name)
            ids = {n.provider_id for n in mine if n.provider_id}
            if sweep:
                with contextlib.suppress(CloudherdError):  # leftovers this infrastructure made but did not record
                    ids |= {i.id for i in await provider.list({TAG_INFRA: infra.id})}
            for node in mine:
                emit(sink, ProgressEvent("node", "terminating", node=node.name, group=node.group_name,
                                         state=NodeState.TERMINATING))
            if ids:
                await journal.terminate(store, infra, provider, sorted(i for i in ids if i), mine)
        except CloudherdError as exc:
            if not sweep:
                raise
            failed[provider_name] = Exception.__str__(exc)
            emit(sink, ProgressEvent("error", f"provider {provider_name}: {failed[provider_name]}"))
    for node in nodes:
        if node.provider in failed:
            continue
        if node.state != NodeState.TERMINATED:
            store.update_node(node.id, state=NodeState.TERMINATED)
            emit(sink, ProgressEvent("node", "terminated", node=node.name, group=node.group_name,
                                     state=NodeState.TERMINATED))
    return failed
