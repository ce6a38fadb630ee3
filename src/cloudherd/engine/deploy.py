"""Running a group's scripts (or its teardown) on one node over a pooled connection, each run recorded.

A script whose rendered text, name and environment hash to the digest of its last successful run on
that node is skipped, so ``up`` twice does no work twice; ``force`` runs everything again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudherd.engine.context import Redactor
from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.engine.templates import node_env, script_digest
from cloudherd.errors import CloudherdError, DeployError
from cloudherd.remote.pool import ConnectionPool
from cloudherd.remote.scripts import render, script_command
from cloudherd.remote.ssh import Target
from cloudherd.state.models import Node
from cloudherd.state.repo import Store

if TYPE_CHECKING:
    from cloudherd.spec.model import Upload

OUTPUT_LIMIT = 1_000_000  # characters of stdout / stderr kept per action


async def run_scripts(
    pool: ConnectionPool,
    target: Target,
    store: Store,
    node: Node,
    scripts: Sequence[Mapping[str, str]],
    context: Mapping[str, Any],
    env: Mapping[str, str],
    redact: Redactor,
    sink: EventSink | None,
    *,
    kind: str = "script",
    done: Mapping[tuple[str, str], str] | None = None,
) -> int:
    """Run ``scripts`` ({name, source, content}) in order; the first non-zero exit raises DeployError.

    ``done`` maps (node id, source) to the digest of the last successful run: those are skipped.
    Returns how many scripts ran.
    """
    script_env = node_env(node, env)
    ran = 0
    for script in scripts:
        try:
            text = render(script["source"], script["content"], context)
        except DeployError as exc:
            action_id = store.start_action(node.infrastructure_id, node.id, kind, script["source"])
            store.finish_action(action_id, None, "", redact(str(exc)))
            raise DeployError(f"node {node.name}: {redact(str(exc))}") from None
        digest = script_digest(script["source"], text, script_env)
        if done is not None and done.get((node.id, script["source"])) == digest:
            emit(sink, ProgressEvent("action", f"{kind} {script['source']} unchanged: skipped", node=node.name,
                                     group=node.group_name))
            continue
        action_id = store.start_action(node.infrastructure_id, node.id, kind, script["source"], digest=digest)
        emit(sink, ProgressEvent("action", f"{kind} {script['source']}", node=node.name, group=node.group_name))
        try:
            result = await pool.run(target, script_command(script["name"], script_env), input=text)
        except DeployError as exc:
            store.finish_action(action_id, None, "", redact(str(exc)))
            raise
        ran += 1
        stdout, stderr = redact(result.stdout)[-OUTPUT_LIMIT:], redact(result.stderr)[-OUTPUT_LIMIT:]
        store.finish_action(action_id, result.exit_code, stdout, stderr, ended_at=result.ended_at)
        if not result.ok:
            tail = (stderr.strip() or stdout.strip()).splitlines()[-1:] or ["no output"]
            raise DeployError(f"node {node.name}: {script['source']} exited {result.exit_code}: {tail[0][:300]}")
    return ran


async def deploy_node(
    pool: ConnectionPool, target: Target, store: Store, node: Node, scripts: Sequence[Mapping[str, str]],
    context: Mapping[str, Any], env: Mapping[str, str], redact: Redactor, sink: EventSink | None, *,
    done: Mapping[tuple[str, str], str] | None = None, interrupted: str = "deploy interrupted",
    uploads: Sequence[Upload] = (), base: Path | None = None,
) -> int:
    """One node through a deploy: ``deploying``, then ``ready`` (grace starts anew when it was not ready), or
    ``failed`` with the reason, which is raised.  Cancelled (another node failed), the node is put back as it
    was, unless a script was cut short: then it is ``failed`` with ``interrupted``.  Returns the scripts run.

    One function for ``up``'s deploy and OGC's ``deploy``, so that both move nodes through the same states.
    """
    from cloudherd.engine.recover import INTERRUPTED
    from cloudherd.lifecycle import NodeState
    from cloudherd.state.models import utcnow

    before = NodeState(node.state)
    store.update_node(node.id, state=NodeState.DEPLOYING)
    emit(sink, ProgressEvent("node", "connecting", node=node.name, group=node.group_name, state=NodeState.DEPLOYING))
    try:
        await pool.connection(target)
        if uploads and base is not None:
            from cloudherd.engine.upload import upload

            copied = await upload(pool, target, base, uploads)
            emit(sink, ProgressEvent("action", f"upload: {copied} files", node=node.name, group=node.group_name))
        ran = await run_scripts(pool, target, store, node, scripts, context, env, redact, sink, done=done)
    except asyncio.CancelledError:
        if store.close_unfinished_actions(node.infrastructure_id, INTERRUPTED, node.id):
            store.update_node(node.id, state=NodeState.FAILED, reason=interrupted)
        else:
            store.update_node(node.id, state=before)
        raise
    except CloudherdError as exc:
        reason = redact(str(exc))
        store.update_node(node.id, state=NodeState.FAILED, reason=reason)
        emit(sink, ProgressEvent("node", reason, node=node.name, group=node.group_name, state=NodeState.FAILED))
        raise
    fresh = {"ready_at": utcnow(), "health": None, "failures": 0, "failing_since": None} \
        if before != NodeState.READY else {}
    store.update_node(node.id, state=NodeState.READY, reason=None, **fresh)
    emit(sink, ProgressEvent("node", "ready", node=node.name, group=node.group_name, state=NodeState.READY))
    return ran
