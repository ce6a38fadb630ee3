"""The Python API.  The CLI and the REST service are thin faces over these methods.

>>> from cloudherd.api import SyncClient
>>> herd = SyncClient()
>>> infra_id = herd.up("examples/hello/cloudherd.yml")
>>> [r.stdout for r in herd.exec(infra_id, "hostname")]
>>> herd.down(infra_id)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from cloudherd.engine.apply import up
from cloudherd.engine.context import ensure_identity
from cloudherd.engine.destroy import down
from cloudherd.engine.events import EventSink
from cloudherd.engine.fleet import (
    ExecResult,
    FleetOptions,
    LineSink,
    Selector,
    TransferResult,
    exec_command,
    pull,
    push,
    refresh,
)
from cloudherd.engine.plan import Plan
from cloudherd.spec import load_spec
from cloudherd.state.db import database_url, open_engine
from cloudherd.state.models import Action, Infrastructure, Node
from cloudherd.state.repo import Store

T = TypeVar("T")
Selectable = str | Sequence[str] | None  # one name or several
Tags = Mapping[str, str] | Sequence[str] | None  # {"k": "v"} or ["k=v"]


class Client:
    """Async access to cloudherd; ``db_url`` defaults to ``CLOUDHERD_DB`` or SQLite in the data folder."""

    def __init__(self, db_url: str | None = None) -> None:
        self._db_url = db_url
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(open_engine(self._db_url))
        return self._store

    def init(self) -> dict[str, str]:
        """Make the database, the user and the SSH key pair if missing; say where they are."""
        identity = ensure_identity(self.store)
        return {"user": identity.user_name, "key": str(identity.key_path), "database": _safe_url(self._db_url)}

    async def up(self, spec: str | os.PathLike[str], *, keep_on_failure: bool = False,
                 on_event: EventSink | None = None, connect_timeout: float = 120.0, force: bool = False,
                 concurrency: int | None = None, accept_new_host_key: Sequence[str] = ()) -> str:
        """Create the spec's infrastructure, or converge the active one of the same name.

        Unchanged scripts are skipped on nodes where they already succeeded (``force`` re-runs them);
        ``concurrency`` bounds SSH handshakes in flight.
        """
        loaded = load_spec(spec)
        return await up(loaded, self.store, keep_on_failure=keep_on_failure, on_event=on_event,
                        connect_timeout=connect_timeout, force=force, handshakes=concurrency,
                        accept_new_host_key=accept_new_host_key)

    async def plan(self, spec: str | os.PathLike[str]) -> Plan:
        """What ``up`` of ``spec`` would change (create / destroy / replace / scripts to re-run); changes nothing."""
        from cloudherd.engine.plan import make_plan

        return await make_plan(load_spec(spec), self.store)

    async def down(self, ref: str, *, on_event: EventSink | None = None,
                   artifacts_dir: str | os.PathLike[str] | None = None) -> str:
        """Pull artifacts, run teardowns, terminate every node; artifacts land in ``artifacts_dir/<node>/``."""
        infra = self.store.resolve(ref)
        await down(self.store, infra, on_event=on_event, artifacts_dir=artifacts_dir)
        return infra.id

    async def gc(self, *, provider: str | None = None, delete: bool = False) -> list[dict[str, Any]]:
        """Machines with cloudherd's tags that no infrastructure here accounts for; ``delete`` removes them."""
        from cloudherd.engine.gc import delete_orphans, find_orphans

        orphans = await find_orphans(self.store, provider)
        if delete and orphans:
            await delete_orphans(self.store, orphans)
        return [o.as_dict() for o in orphans]

    async def adopt(self, ref: str, group: str, ids: Sequence[str]) -> list[str]:
        """Bring orphan machines ``ids`` under ``ref`` as nodes of ``group``; the next ``up`` deploys them."""
        from cloudherd.engine.gc import adopt

        return await adopt(self.store, self.store.resolve(ref), group, ids)

    def ls(self, *, include_destroyed: bool = False) -> list[dict[str, Any]]:
        return [_infra_summary(i) for i in self.store.infrastructures(include_destroyed=include_destroyed)]

    async def status(self, ref: str) -> dict[str, Any]:
        infra = self.store.resolve(ref)
        nodes = await refresh(self.store, infra)
        last = self.store.last_actions(infra.id)
        summary = _infra_summary(infra, nodes)
        summary["groups"] = [
            {"name": g.name, "provider": g.provider, "image": g.image, "size": g.size, "count": g.count}
            for g in infra.groups
        ]
        summary["nodes"] = [_node_view(n, last.get(n.id)) for n in nodes]
        return summary

    async def exec(self, ref: str, command: str, *, group: Selectable = None, node: Selectable = None,
                   tags: Tags = None, on_line: LineSink | None = None, timeout: float = 30.0,
                   command_timeout: float | None = None, concurrency: int | None = None,
                   accept_new_host_key: Sequence[str] = ()) -> list[ExecResult]:
        """Run a shell command on the chosen nodes at once; ``on_line(node, stream, line)`` streams output.

        ``timeout`` bounds the wait for each node's SSH, ``command_timeout`` the command itself.
        """
        infra = self.store.resolve(ref)
        options = FleetOptions(connect_timeout=timeout, command_timeout=command_timeout, handshakes=concurrency,
                               accept_new_host_key=accept_new_host_key)
        return await exec_command(self.store, infra, command, selector=Selector.of(group, node, tags),
                                  on_line=on_line, options=options)

    async def push(self, ref: str, src: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], dst: str, *,
                   group: Selectable = None, node: Selectable = None, tags: Tags = None, timeout: float = 30.0,
                   concurrency: int | None = None, accept_new_host_key: Sequence[str] = ()) -> list[TransferResult]:
        """Copy local files or folders to ``dst`` on the chosen nodes (relative: the node's work folder)."""
        infra = self.store.resolve(ref)
        sources = [src] if isinstance(src, str | os.PathLike) else list(src)
        options = FleetOptions(connect_timeout=timeout, handshakes=concurrency,
                               accept_new_host_key=accept_new_host_key)
        return await push(self.store, infra, sources, dst, selector=Selector.of(group, node, tags), options=options)

    async def pull(self, ref: str, src: str | Sequence[str], dst: str | os.PathLike[str], *,
                   group: Selectable = None, node: Selectable = None, tags: Tags = None, timeout: float = 30.0,
                   concurrency: int | None = None, accept_new_host_key: Sequence[str] = ()) -> list[TransferResult]:
        """Copy what ``src`` (globs) matches on each chosen node into ``dst/<node>/``."""
        infra = self.store.resolve(ref)
        patterns = [src] if isinstance(src, str) else list(src)
        options = FleetOptions(connect_timeout=timeout, handshakes=concurrency,
                               accept_new_host_key=accept_new_host_key)
        return await pull(self.store, infra, patterns, dst, selector=Selector.of(group, node, tags), options=options)

    def logs(self, ref: str, node: str | None = None) -> list[dict[str, Any]]:
        infra = self.store.resolve(ref)
        nodes = {n.id: n for n in self.store.nodes(infra.id)}
        node_id = None
        if node:
            match = [n for n in nodes.values() if node in (n.name, n.id, n.provider_id)]
            if not match:
                from cloudherd.errors import UsageError

                raise UsageError(f"no node '{node}' in {infra.name} (see `cloudherd status {infra.id}`)")
            node_id = match[0].id
        return [_action_view(a, nodes.get(a.node_id)) for a in self.store.actions(infra.id, node_id)]

    def node(self, ref: str, name: str) -> Node:
        from cloudherd.errors import UsageError

        infra = self.store.resolve(ref)
        for node in self.store.nodes(infra.id):
            if name in (node.name, node.id, node.provider_id) and node.state != "terminated":
                return node
        raise UsageError(f"no live node '{name}' in {infra.name} (see `cloudherd status {infra.id}`)")

    def infrastructure(self, ref: str) -> Infrastructure:
        return self.store.resolve(ref)


class SyncClient:
    """The blocking twin of :class:`Client`: the same methods, each run to completion."""

    def __init__(self, db_url: str | None = None) -> None:
        self.aio = Client(db_url)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(coroutine)

    def init(self) -> dict[str, str]:
        return self.aio.init()

    def up(self, spec: str | os.PathLike[str], **options: Any) -> str:
        return self._run(self.aio.up(spec, **options))

    def plan(self, spec: str | os.PathLike[str]) -> Plan:
        return self._run(self.aio.plan(spec))

    def down(self, ref: str, **options: Any) -> str:
        return self._run(self.aio.down(ref, **options))

    def gc(self, **options: Any) -> list[dict[str, Any]]:
        return self._run(self.aio.gc(**options))

    def adopt(self, ref: str, group: str, ids: Sequence[str]) -> list[str]:
        return self._run(self.aio.adopt(ref, group, ids))

    def ls(self, **options: Any) -> list[dict[str, Any]]:
        return self.aio.ls(**options)

    def status(self, ref: str) -> dict[str, Any]:
        return self._run(self.aio.status(ref))

    def exec(self, ref: str, command: str, **options: Any) -> list[ExecResult]:
        return self._run(self.aio.exec(ref, command, **options))

    def push(self, ref: str, src: Any, dst: str, **options: Any) -> list[TransferResult]:
        return self._run(self.aio.push(ref, src, dst, **options))

    def pull(self, ref: str, src: Any, dst: Any, **options: Any) -> list[TransferResult]:
        return self._run(self.aio.pull(ref, src, dst, **options))

    def logs(self, ref: str, node: str | None = None) -> list[dict[str, Any]]:
        return self.aio.logs(ref, node)

    def infrastructure(self, ref: str) -> Infrastructure:
        return self.aio.infrastructure(ref)

    def node(self, ref: str, name: str) -> Node:
        return self.aio.node(ref, name)


def _safe_url(url: str | None) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url or database_url()).render_as_string(hide_password=True)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _infra_summary(infra: Infrastructure, nodes: list[Node] | None = None) -> dict[str, Any]:
    nodes = nodes if nodes is not None else list(infra.nodes)
    live = [n for n in nodes if n.state != "terminated"]
    return {
        "id": infra.id, "name": infra.name, "state": infra.state, "reason": infra.reason,
        "nodes": len(live), "ready": sum(n.state == "ready" for n in live),
        "spec": infra.spec_path, "created_at": _iso(infra.created_at), "updated_at": _iso(infra.updated_at),
    }


def _node_view(node: Node, last: Action | None) -> dict[str, Any]:
    return {
        "id": node.id, "name": node.name, "group": node.group_name, "state": node.state,
        "address": node.address, "port": node.port, "provider": node.provider, "provider_id": node.provider_id,
        "user": node.ssh_user, "reason": node.reason,
        "last_action": _action_view(last, node) if last else None,
    }


def _action_view(action: Action, node: Node | None) -> dict[str, Any]:
    seconds = (action.ended_at - action.started_at).total_seconds() if action.ended_at else None
    return {
        "id": action.id, "node": node.name if node else action.node_id, "kind": action.kind, "name": action.name,
        "exit_code": action.exit_code, "stdout": action.stdout, "stderr": action.stderr,
        "started_at": _iso(action.started_at), "ended_at": _iso(action.ended_at), "seconds": seconds,
    }
