"""Working on a running fleet: refresh node states from the providers, run a command everywhere."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cloudherd.engine.context import Providers, Redactor, ensure_identity, snapshot
from cloudherd.errors import CloudherdError, UsageError
from cloudherd.providers.base import TAG_INFRA
from cloudherd.remote.scripts import in_workdir
from cloudherd.remote.ssh import Target, connect, run
from cloudherd.state.models import Infrastructure, Node
from cloudherd.state.repo import Store

LIVE_STATES = ("booting", "deploying", "ready", "failed")


async def refresh(store: Store, infra: Infrastructure) -> list[Node]:
    """Nodes with states checked against the providers (one list call per provider)."""
    nodes = store.nodes(infra.id)
    live = [n for n in nodes if n.state in LIVE_STATES and n.provider_id]
    if not live:
        return nodes
    providers = Providers(snapshot(infra))
    try:
        for provider_name in sorted({n.provider for n in live}):
            try:
                found = {i.id: i for i in await providers.get(provider_name).list({TAG_INFRA: infra.id})}
            except CloudherdError:
                continue  # unknown now; keep what we knew
            for node in live:
                if node.provider != provider_name:
                    continue
                instance = found.get(node.provider_id or "")
                if instance is None or instance.state in ("dead", "terminated"):
                    why = "its process is gone" if instance is not None else "the provider no longer lists it"
                    store.update_node(node.id, state="dead", reason=why)
                elif instance.state == "stopped":
                    store.update_node(node.id, state="stopped")
    finally:
        await providers.close()
    return store.nodes(infra.id)


@dataclass
class ExecResult:
    node: str
    group: str
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_code == 0


LineSink = Callable[[str, str, str], None]  # (node, stream, line)


def select_nodes(nodes: Sequence[Node], group: str | None = None, node: str | None = None) -> list[Node]:
    chosen = [n for n in nodes if n.state in LIVE_STATES and n.address]
    if group:
        if group not in {n.group_name for n in nodes}:
            raise UsageError(f"no group '{group}' (groups: {', '.join(sorted({n.group_name for n in nodes}))})")
        chosen = [n for n in chosen if n.group_name == group]
    if node:
        chosen = [n for n in chosen if node in (n.name, n.id, n.provider_id)]
        if not chosen:
            raise UsageError(f"no live node '{node}' (see `cloudherd status`)")
    return chosen


async def exec_command(
    store: Store, infra: Infrastructure, command: str, *, group: str | None = None, node: str | None = None,
    on_line: LineSink | None = None, timeout: float = 30.0, concurrency: int = 64,
) -> list[ExecResult]:
    """Run ``command`` on the chosen nodes at once; each run is recorded as an action."""
    identity = ensure_identity(store, infra.ssh_key_path)
    redact = Redactor(snapshot(infra).secrets)
    nodes = select_nodes(store.nodes(infra.id), group, node)
    limit = asyncio.Semaphore(max(1, concurrency))

    async def one(target_node: Node) -> ExecResult:
        started = time.monotonic()
        target = Target(target_node.name, target_node.address or "", target_node.port,
                        target_node.ssh_user or identity.user_name, target_node.host_key)
        action_id = store.start_action(infra.id, target_node.id, "exec", command)
        sink = (lambda stream, line: on_line(target_node.name, stream, redact(line))) if on_line else None
        async with limit:
            try:
                async with await connect(target, identity.key, timeout=timeout) as conn:
                    env = {"CLOUDHERD_NODE": target_node.name, "CLOUDHERD_GROUP": target_node.group_name,
                           "CLOUDHERD_INFRA": infra.id}
                    result = await run(conn, in_workdir(command, env), on_line=sink)
            except CloudherdError as exc:
                store.finish_action(action_id, None, "", redact(str(exc)))
                return ExecResult(target_node.name, target_node.group_name, None, "", "",
                                  time.monotonic() - started, error=redact(str(exc)))
        stdout, stderr = redact(result.stdout), redact(result.stderr)
        store.finish_action(action_id, result.exit_code, stdout, stderr, ended_at=result.ended_at)
        return ExecResult(target_node.name, target_node.group_name, result.exit_code, stdout, stderr,
                          time.monotonic() - started)

    return list(await asyncio.gather(*(one(n) for n in nodes)))
