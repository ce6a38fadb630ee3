"""OGC's calls on cloudherd's clients: ``launch`` / ``deploy`` / ``destroy`` and their ``_async`` twins.

OGC (``ogc.actions``) names a call that works on *one* thing ``launch`` / ``deploy`` / ``teardown`` and the
call that works on *many at once* the same name with ``_async``: ``launch_async(layouts)``,
``deploy_async(node_ids)``, ``exec_async(...)``.  OGC's ``_async`` functions block and return a list; the
suffix means "all of them concurrently", not "a coroutine".  cloudherd keeps that meaning so OGC code reads
the same:

* on :class:`~cloudherd.api.SyncClient` every call blocks: ``launch(spec)`` returns one
  :class:`Infrastructure`, ``launch_async(specs)`` launches them all at once and returns a list;
* on :class:`~cloudherd.api.Client` (async) every call is a coroutine, ``_async`` ones included.

Mapping onto cloudherd: a spec holds every layout (its groups), so ``launch`` is ``up``: the nodes are made
and their scripts run (cloudherd cannot leave a node half made).  ``deploy`` re-runs the group scripts on
exactly the given nodes (:mod:`cloudherd.engine.redeploy`), whatever ran before.  ``destroy`` of an
infrastructure is ``down``; of nodes, it shrinks their groups by exactly those nodes (a scale with them
as victims), so that neither ``up`` nor the manager makes them again.

Nodes are given as :class:`Node` values (from ``launch``'s :class:`Infrastructure`), node ids or node
names; infrastructures as :class:`Infrastructure` values, ids or names.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from cloudherd.api.twin import Twin, blocking
from cloudherd.api.types import ExecResult, Infrastructure, InfrastructureSummary, Node
from cloudherd.errors import NotFound, UsageError
from cloudherd.lifecycle import LIVE_NODE_STATES

if TYPE_CHECKING:
    from cloudherd.api.client_commands import Commands
    from cloudherd.api.client_fleet import FleetCommands
    from cloudherd.engine.events import EventSink
    from cloudherd.engine.fleet import LineSink
    from cloudherd.state.repo import Store

if TYPE_CHECKING:
    class _Client(Commands, FleetCommands):
        """What OgcActions is mixed into (:class:`~cloudherd.api.Client`), named without importing it."""


PathLike = str | os.PathLike[str]
Specs = PathLike | Sequence[PathLike]  # one spec, or files merged left to right (as ``up`` takes them)
NodeRef = str | Node  # a Node value, or a node's id, name or provider id
Target = str | InfrastructureSummary | Node  # an infrastructure (value, id or name) or a node
Targets = Target | Sequence[Target]
OgcT = TypeVar("OgcT", bound="OgcActions")  # the client a SyncOgcActions twins


class OgcActions:
    """OGC's calls for :class:`~cloudherd.api.Client` (each a coroutine); see the module's notes."""

    def _herd(self) -> _Client:
        return cast("_Client", self)

    async def launch(self, spec: Specs, *, keep_on_failure: bool = False, on_event: EventSink | None = None,
                     connect_timeout: float = 120.0, concurrency: int | None = None,
                     accept_new_host_key: Sequence[str] = (), wait: float = 600.0,
                     format: str | None = None) -> Infrastructure:
        """Bring up the spec's nodes (every layout in it) and run their scripts; the infrastructure as made.

        ``spec`` is one file or several merged left to right (OGC's ``SpecLoader.load([...])``), as for ``up``.
        Its ``live`` nodes are what OGC's ``launch`` returns ids of; hand them to ``deploy`` or ``exec_async``.
        """
        herd = self._herd()
        infra_id = await herd.up(spec, keep_on_failure=keep_on_failure, on_event=on_event,
                                 connect_timeout=connect_timeout, concurrency=concurrency,
                                 accept_new_host_key=accept_new_host_key, wait=wait, format=format)
        return await herd.infrastructure(infra_id)

    async def launch_async(self, specs: Specs | Sequence[Specs], *, keep_on_failure: bool = False,
                           on_event: EventSink | None = None, connect_timeout: float = 120.0,
                           concurrency: int | None = None, accept_new_host_key: Sequence[str] = (),
                           wait: float = 600.0, format: str | None = None) -> list[Infrastructure]:
        """``launch`` each spec at once, one infrastructure each, in the order given (the first failure raises).

        Each item is a spec, or a list of files merged into one; a single spec is launched alone.
        """
        many = [specs] if isinstance(specs, str | os.PathLike) else list(specs)
        return list(await asyncio.gather(*(
            self.launch(s, keep_on_failure=keep_on_failure, on_event=on_event, connect_timeout=connect_timeout,
                        concurrency=concurrency, accept_new_host_key=accept_new_host_key, wait=wait, format=format)
            for s in many)))

    async def deploy(self, node: NodeRef, *, on_event: EventSink | None = None, timeout: float = 120.0,
                     accept_new_host_key: Sequence[str] = (), wait: float = 600.0) -> Node:
        """Run the node's group scripts on it again; the node after (``ready``, or ``failed`` with ``reason``)."""
        if not isinstance(node, str | Node):
            raise UsageError(f"deploy takes one node (a Node, or its id or name), not {type(node).__name__}; "
                             f"use deploy_async for many")
        found = await self.deploy_async([node], on_event=on_event, timeout=timeout,
                                        accept_new_host_key=accept_new_host_key, wait=wait)
        return found[0]

    async def deploy_async(self, nodes: Targets, *, on_event: EventSink | None = None, timeout: float = 120.0,
                           concurrency: int | None = None, accept_new_host_key: Sequence[str] = (),
                           wait: float = 600.0, skip_done: bool = False) -> list[Node]:
        """Run the group scripts again on every given node at once (an infrastructure: all its live nodes).

        One :class:`Node` back per node, in the order given: ``state`` is ``ready`` where every script
        succeeded, ``failed`` (with ``reason``) elsewhere; one failing does not stop the others.  ``timeout``
        bounds the wait for each node's SSH; ``skip_done`` leaves out scripts that already succeeded there as
        they render now.
        """
        from cloudherd.api.client_core import _check_limits
        from cloudherd.engine.redeploy import redeploy

        _check_limits(timeout=timeout, concurrency=concurrency, wait=wait)
        herd = self._herd()
        chosen = _resolve(herd.store, nodes)
        order: list[str] = []
        for infra_id, node_ids in chosen.items():
            infra = herd.store.infrastructure(infra_id)
            ids = node_ids if node_ids is not None else _live_ids(herd.store, infra_id)
            done = await redeploy(herd.store, infra, ids, on_event=on_event, connect_timeout=timeout,
                                  handshakes=concurrency, accept_new_host_key=accept_new_host_key, wait=wait,
                                  skip_done=skip_done)
            order += [d.node_id for d in done]
        views = {}
        for infra_id in chosen:
            for view in (await herd.infrastructure(infra_id)).nodes:
                views[view.id] = view
        return [views[i] for i in order]

    async def exec_scripts_async(self, nodes: Targets, path: PathLike, *, on_event: EventSink | None = None,
                                 timeout: float = 120.0, wait: float = 600.0) -> list[Node]:
        """Run a file or folder of scripts (named here, not the groups') on every given node at once, rendered
        as the infrastructure's own scripts are (OGC's ``exec_scripts``); one :class:`Node` back per node."""
        from cloudherd.engine.context import snapshot
        from cloudherd.engine.redeploy import redeploy
        from cloudherd.spec.loader import scripts_from

        herd = self._herd()
        chosen = _resolve(herd.store, nodes)
        order: list[str] = []
        views: dict[str, Node] = {}
        for infra_id, node_ids in chosen.items():
            infra = herd.store.infrastructure(infra_id)
            read = scripts_from(snapshot(infra), os.fspath(path), Path.cwd())
            scripts = [{"name": s.name, "source": s.source, "content": s.content} for s in read]
            ids = node_ids if node_ids is not None else _live_ids(herd.store, infra_id)
            done = await redeploy(herd.store, infra, ids, on_event=on_event, connect_timeout=timeout, wait=wait,
                                  scripts=scripts)
            order += [d.node_id for d in done]
            views.update({v.id: v for v in (await herd.infrastructure(infra_id)).nodes})
        return [views[i] for i in order]

    async def exec_async(self, nodes: Targets, command: str, *, on_line: LineSink | None = None,
                         timeout: float = 30.0, command_timeout: float | None = None,
                         concurrency: int | None = None, accept_new_host_key: Sequence[str] = ()
                         ) -> list[ExecResult]:
        """Run a shell command on every given node at once (an infrastructure: all its live nodes).

        ``exec(ref, command, node=…)`` is the same on one infrastructure; this takes OGC's node lists.
        """
        herd = self._herd()
        chosen = _resolve(herd.store, nodes)
        results: list[ExecResult] = []
        for part in await asyncio.gather(*(
                herd.exec(infra_id, command, node=node_ids, on_line=on_line, timeout=timeout,
                          command_timeout=command_timeout, concurrency=concurrency,
                          accept_new_host_key=accept_new_host_key)
                for infra_id, node_ids in chosen.items())):
            results += part
        return results

    async def destroy(self, target: Target, *, on_event: EventSink | None = None, wait: float = 600.0,
                      force: bool = False) -> Infrastructure:
        """Tear down an infrastructure (``down``), or remove one node for good; the infrastructure after.

        A node is removed by shrinking its group by exactly that node (its teardown runs first), so no
        ``up`` or manager makes it again.  When a manager keeps the infrastructure, its next pass removes it.
        """
        if not isinstance(target, str | InfrastructureSummary | Node):
            raise UsageError(f"destroy takes one infrastructure or node, not {type(target).__name__}; "
                             f"use destroy_async for many")
        return (await self.destroy_async([target], on_event=on_event, wait=wait, force=force))[0]

    async def destroy_async(self, targets: Targets, *, on_event: EventSink | None = None, wait: float = 600.0,
                            force: bool = False) -> list[Infrastructure]:
        """``destroy`` every given infrastructure and node, infrastructures at once; each one after, once.

        ``force`` (whole infrastructures) forgets nodes whose provider cannot terminate them.
        """
        herd = self._herd()
        chosen = _resolve(herd.store, targets)

        async def one(infra_id: str, node_ids: list[str] | None) -> Infrastructure:
            if node_ids is None:
                await herd.down(infra_id, on_event=on_event, wait=wait, force=force)
                return await herd.infrastructure(infra_id)
            return await self._remove_nodes(infra_id, node_ids, on_event=on_event, wait=wait)

        return list(await asyncio.gather(*(one(i, n) for i, n in chosen.items())))

    async def _remove_nodes(self, infra_id: str, node_ids: list[str], *, on_event: EventSink | None,
                            wait: float) -> Infrastructure:
        herd = self._herd()
        rows = {n.id: n for n in herd.store.nodes(infra_id)}
        by_group: dict[str, list[str]] = {}
        for node_id in node_ids:
            by_group.setdefault(rows[node_id].group_name, []).append(rows[node_id].name)
        for group, names in by_group.items():
            result = await herd.scale(infra_id, group, f"-{len(names)}", victims=names, wait=wait,
                                      on_event=on_event)
            if result.applied:
                left = [n.name for n in herd.store.nodes(infra_id)
                        if n.name in names and n.state in LIVE_NODE_STATES]
                if left:
                    raise UsageError(f"{', '.join(left)} not destroyed: group {group} stays at "
                                     f"{result.target}{result.note}")
        return await herd.infrastructure(infra_id)


class SyncOgcActions(Twin[OgcT], of=OgcActions):
    """OGC's calls for :class:`~cloudherd.api.SyncClient`, each blocking (``_async``: many at once); generated
    (:mod:`cloudherd.api.twin`)."""

    if TYPE_CHECKING:  # what Twin generates, for mypy
        launch = blocking(OgcActions.launch)
        launch_async = blocking(OgcActions.launch_async)
        deploy = blocking(OgcActions.deploy)
        deploy_async = blocking(OgcActions.deploy_async)
        exec_scripts_async = blocking(OgcActions.exec_scripts_async)
        exec_async = blocking(OgcActions.exec_async)
        destroy = blocking(OgcActions.destroy)
        destroy_async = blocking(OgcActions.destroy_async)


# -- what the caller named -------------------------------------------------------------------------------


def _resolve(store: Store, targets: Targets) -> dict[str, list[str] | None]:
    """Infrastructure id -> the node ids named in it (None: the whole infrastructure), in the order given."""
    many: Sequence[Target] = [targets] if isinstance(targets, str | InfrastructureSummary | Node) else targets
    if not many:
        raise UsageError("no nodes or infrastructures given")
    chosen: dict[str, list[str] | None] = {}
    for item in many:
        if isinstance(item, InfrastructureSummary):
            chosen[store.resolve(item.id).id] = None
            continue
        if isinstance(item, Node):
            infra_id, node_id = _find_node(store, item.id)
        elif isinstance(item, str):
            try:
                chosen[store.resolve(item).id] = None
                continue
            except UsageError:
                infra_id, node_id = _find_node(store, item)
        else:
            raise UsageError(f"not a node or an infrastructure: {item!r}")
        ids = chosen.setdefault(infra_id, [])
        if ids is not None and node_id not in ids:
            ids.append(node_id)
    return chosen


def _find_node(store: Store, ref: str) -> tuple[str, str]:
    """(infrastructure id, node id) of the one live node of any active infrastructure that answers to ``ref``
    (the one rule: :meth:`cloudherd.state.repo.Store.resolve_node`)."""
    try:
        node = store.resolve_node(ref)
    except NotFound:
        raise UsageError(f"no infrastructure or live node '{ref}' (see `cloudherd ls` and `cloudherd status`)") \
            from None
    return node.infrastructure_id, node.id


def _live_ids(store: Store, infra_id: str) -> list[str]:
    return [n.id for n in store.nodes(infra_id) if n.state in LIVE_NODE_STATES and n.address]
