"""Running a group's scripts (or its teardown) on one node, each run recorded as an action."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncssh

from cloudherd.engine.context import Redactor
from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.errors import DeployError
from cloudherd.remote.scripts import render, script_command
from cloudherd.remote.ssh import run
from cloudherd.state.models import Node
from cloudherd.state.repo import Store

OUTPUT_LIMIT = 1_000_000  # characters of stdout / stderr kept per action


async def run_scripts(
    conn: asyncssh.SSHClientConnection,
    store: Store,
    node: Node,
    scripts: Sequence[Mapping[str, str]],
    context: Mapping[str, Any],
    env: Mapping[str, str],
    redact: Redactor,
    sink: EventSink | None,
    *,
    kind: str = "script",
) -> None:
    """Run ``scripts`` ({name, source, content}) in order; the first non-zero exit raises DeployError."""
    script_env = {
        **env, "CLOUDHERD_NODE": node.name, "CLOUDHERD_GROUP": node.group_name,
        "CLOUDHERD_INFRA": node.infrastructure_id,
    }
    for script in scripts:
        action_id = store.start_action(node.infrastructure_id, node.id, kind, script["source"])
        emit(sink, ProgressEvent("action", f"{kind} {script['source']}", node=node.name, group=node.group_name))
        try:
            text = render(script["source"], script["content"], context)
        except DeployError as exc:
            store.finish_action(action_id, None, "", redact(str(exc)))
            raise DeployError(f"node {node.name}: {redact(str(exc))}") from None
        result = await run(conn, script_command(script["name"], script_env), input=text)
        stdout, stderr = redact(result.stdout)[-OUTPUT_LIMIT:], redact(result.stderr)[-OUTPUT_LIMIT:]
        store.finish_action(action_id, result.exit_code, stdout, stderr, ended_at=result.ended_at)
        if not result.ok:
            tail = (stderr.strip() or stdout.strip()).splitlines()[-1:] or ["no output"]
            raise DeployError(f"node {node.name}: {script['source']} exited {result.exit_code}: {tail[0][:300]}")
