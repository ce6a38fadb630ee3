"""The Python API.  The CLI and the REST service are thin faces over these methods.

>>> from cloudherd.api import SyncClient
>>> with SyncClient() as herd:
...     infra_id = herd.up("examples/hello/cloudherd.yml")
...     [r.stdout for r in herd.exec(infra_id, "hostname")]
...     herd.down(infra_id)

Every method returns frozen values from :mod:`cloudherd.api.types`, never database rows.
:class:`SyncClient` is the blocking twin: the same methods with the same signatures (a test checks).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from cloudherd.api import views
from cloudherd.api._blocking import run_blocking
from cloudherd.api.ogc import OgcActions, SyncOgcActions
from cloudherd.api.types import (
    Action,
    Event,
    ExecResult,
    Fault,
    Image,
    Infrastructure,
    InfrastructureSummary,
    IssuedToken,
    Node,
    Orphan,
    PassResult,
    Plan,
    Revision,
    Rollout,
    RolloutGroup,
    ScaleResult,
    Setup,
    Size,
    SpecSummary,
    Token,
    TransferResult,
    User,
)
from cloudherd.errors import UsageError
from cloudherd.inputs import GROUP_SIZE_LIMIT, whole
from cloudherd.lifecycle import InfraState, NodeState

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cloudherd.engine.events import EventSink
    from cloudherd.engine.fleet import LineSink
    from cloudherd.providers.base import Provider
    from cloudherd.remote.pool import ConnectionPool
    from cloudherd.spec import LoadedSpec
    from cloudherd.spec.confine import Confinement
    from cloudherd.state.models import Infrastructure as InfraRow
    from cloudherd.state.models import Node as NodeRow
    from cloudherd.state.repo import Store

Selectable = str | Sequence[str] | None  # one name or several
Tags = dict[str, str] | Sequence[str] | None  # {"k": "v"} or ["k=v"]
PathLike = str | os.PathLike[str]
Specs = PathLike | Sequence[PathLike]  # one spec, or OGC layout files merged left to right


class Client(OgcActions):
    """Async access to cloudherd; ``db_url`` defaults to ``CLOUDHERD_DB`` or SQLite in the data folder.

    Use it as ``async with Client() as herd:`` (or call :meth:`close`) so that its database
    connections are released.
    """

    # the most nodes :meth:`scale` may ask a group for; a server sets its own (server.yml's max_group_size)
    max_group_size: int = GROUP_SIZE_LIMIT

    def __init__(self, db_url: str | None = None) -> None:
        self._db_url = db_url
        self._store: Store | None = None
        self._warm: ConnectionPool | None = None

    def keep_connections(self, pool: ConnectionPool | None) -> None:
        """Run fleet commands over ``pool``, kept open between them (a server's warm connections; host keys
        are still checked on every new connection), or again over fresh ones with None."""
        self._warm = pool

    @property
    def store(self) -> Store:
        """The state store (opened, and migrated, on first use)."""
        if self._store is None:
            from cloudherd.state.repo import Store

            self._store = Store(_open(self._db_url))
        return self._store

    async def close(self) -> None:
        """Release the database connections; the client opens them again if used afterwards."""
        if self._store is not None:
            self._store.engine.dispose()
            self._store = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    # -- infrastructures ---------------------------------------------------------------------------

    async def init(self) -> Setup:
        """Make the database, the user and the SSH key pair if missing; say where they are."""
        from cloudherd.engine.context import ensure_identity
        from cloudherd.paths import data_dir

        identity = ensure_identity(self.store)
        return Setup(user=identity.user_name, key=str(identity.key_path), database=_safe_url(self._db_url),
                     data=str(data_dir()))

    async def up(self, spec: Specs, *, keep_on_failure: bool = False, on_event: EventSink | None = None,
                 connect_timeout: float = 120.0, force: bool = False, concurrency: int | None = None,
                 accept_new_host_key: Sequence[str] = (), wait: float = 600.0, format: str | None = None,
                 no_rollback: bool = False, pause_after: int | None = None,
                 counts: Mapping[str, int] | None = None) -> str:
        """Create the spec's infrastructure, or converge the active one of the same name; returns its id.

        ``counts`` starts groups at other sizes than the spec's (OGC's ``launch``: one node of a layout).

        ``spec`` may also be an OGC layout file or an Occopus description (detected, or ``format``).

        Unchanged scripts are skipped on nodes where they already succeeded (``force`` re-runs them);
        ``concurrency`` bounds SSH handshakes in flight; ``accept_new_host_key`` names nodes whose new
        host key is taken as their pin.  While another operation changes the same infrastructure,
        this waits up to ``wait`` seconds for it (0: give up at once), then raises BusyError.  A rolling
        group's batch that fails its health gate rolls it back to the release before, unless ``no_rollback``;
        it pauses after ``pause_after`` nodes (a canary: see :meth:`rollout`).
        """
        from cloudherd.engine.apply import up

        _check_limits(connect_timeout=connect_timeout, concurrency=concurrency, wait=wait)
        from cloudherd.engine.events import ProgressEvent, emit

        loaded = self._load(spec, format)
        for name, count in (counts or {}).items():
            if name not in loaded.spec.groups:
                raise UsageError(f"no group '{name}' in {loaded.spec.name} (groups: {', '.join(loaded.spec.groups)})")
            loaded.spec.groups[name].count = count
        for warning in loaded.warnings:
            emit(on_event, ProgressEvent("warning", str(warning)))
        return await up(loaded, self.store, keep_on_failure=keep_on_failure, on_event=on_event,
                        connect_timeout=connect_timeout, force=force, handshakes=concurrency,
                        accept_new_host_key=accept_new_host_key, wait=wait, no_rollback=no_rollback,
                        pause_after=pause_after)

    async def submit(self, spec: Specs, *, format: str | None = None, owner: str | None = None,
                     attach: bool = True, wait: float = 600.0, new_only: bool = False,
                     within: Confinement | None = None) -> str:
        """Record an infrastructure without making it: the manager's first pass does (``serve`` runs one);
        ``attach`` marks it kept alive.  ``owner`` is a user id (default: you).  With ``new_only``, a name
        that is already active is refused (:class:`~cloudherd.errors.NameTaken`) instead of updated.
        ``within`` confines a spec that came over the network (:mod:`cloudherd.spec.confine`)."""
        from cloudherd.engine.apply import submit
        from cloudherd.errors import NameTaken

        _check_limits(wait=wait)
        loaded = self._load(spec, format, within)
        existing = self.store.active_named(loaded.spec.name)
        if new_only and existing is not None and not _unmade(existing, owner):
            raise NameTaken(f"an infrastructure named {loaded.spec.name} exists already ({existing.id})")
        infra_id = await submit(loaded, self.store, wait=wait, owner_id=owner, attached=attach)
        if attach:
            self.store.add_event(infra_id, "attach", "attached: kept alive by the manager")
        return infra_id

    async def validate(self, spec: Specs, *, format: str | None = None) -> SpecSummary:
        """Load ``spec`` and render every script and teardown against the fleet it describes; touches nothing.

        Errors are :class:`~cloudherd.errors.SpecError` with the file and line (a script's own line for
        a template error).
        """
        from cloudherd.engine.templates import PlannedInfra, check_templates, planned_fleet

        loaded = self._load(spec, format)
        check_templates(loaded, planned_fleet(loaded), PlannedInfra("(new)", loaded.spec.name))
        return SpecSummary(name=loaded.spec.name, groups={n: g.count for n, g in loaded.spec.groups.items()},
                           warnings=tuple(map(str, loaded.warnings)))

    async def plan(self, spec: Specs, *, format: str | None = None, within: Confinement | None = None) -> Plan:
        """What ``up`` of ``spec`` would change (create / destroy / replace / scripts to re-run); changes nothing."""
        from cloudherd.engine.plan import make_plan

        loaded = self._load(spec, format, within)
        return views.plan(await make_plan(loaded, self.store), loaded.warnings)

    async def convert(self, spec: Specs, *, format: str | None = None) -> str:
        """The native spec an OGC layout file or an Occopus description means, as YAML (a native one as it is);
        several OGC files are merged left to right first (OGC's base + override files)."""
        from cloudherd.spec.files import Where, read_text
        from cloudherd.spec.foreign import merged_files, native_text
        from cloudherd.spec.loader import load_spec

        if not isinstance(spec, str | os.PathLike):
            paths = list(spec)
            self._load(paths, format)  # every error found, with its line, first
            return merged_files(paths, format=format)[0] if len(paths) > 1 else \
                await self.convert(paths[0], format=format)
        load_spec(spec, format=format, node_defs=self._node_defs)  # every error found, with its line, first
        text = read_text(Path(spec), Where(str(spec)), yaml=True)
        return native_text(text, str(spec), format=format, node_defs=self._node_defs, base=Path(spec).parent)

    async def import_node_defs(self, path: PathLike) -> list[str]:
        """Store the Occopus node definitions of ``path`` (``'node_def:<type>'`` entries); returns the types."""
        from cloudherd.spec.compat.occopus import read_node_definitions

        definitions = read_node_definitions(Path(path))
        self.store.put_node_defs(definitions, str(Path(path).resolve()))
        return sorted(key.partition(":")[2] for key in definitions)

    def _node_defs(self) -> dict[str, Any]:
        return self.store.node_defs()

    def _load(self, spec: Specs, format: str | None, within: Confinement | None = None) -> LoadedSpec:
        from cloudherd.spec.loader import load_specs

        paths = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
        return load_specs(paths, format=format, node_defs=self._node_defs, within=within)

    async def down(self, ref: str, *, on_event: EventSink | None = None,
                   artifacts_dir: PathLike | None = None, wait: float = 600.0, force: bool = False) -> str:
        """Pull artifacts, run teardowns, terminate every node; artifacts land in ``artifacts_dir/<node>/``.

        Waits up to ``wait`` seconds for another operation on the infrastructure to end first.  Nodes
        whose provider cannot terminate them make the down fail, naming them; ``force`` forgets them.
        """
        from cloudherd.engine.destroy import down

        _check_limits(wait=wait)
        infra = self.store.resolve(ref)
        await down(self.store, infra, on_event=on_event, artifacts_dir=artifacts_dir, wait=wait, force=force)
        return infra.id

    async def ls(self, *, include_destroyed: bool = False) -> list[InfrastructureSummary]:
        """Infrastructures, oldest first (destroyed ones only when asked)."""
        return [views.summary(i) for i in self.store.infrastructures(include_destroyed=include_destroyed)]

    async def status(self, ref: str) -> Infrastructure:
        """The infrastructure with its nodes' states checked against the providers (one list per provider)."""
        from cloudherd.engine.liveness import refresh

        infra = self.store.resolve(ref)
        machines: dict[str, str] = {}
        view = self._view(infra, await refresh(self.store, infra, machines))
        if not machines:
            return view
        nodes = tuple(node.model_copy(update={"machine": machines.get(node.id)}) for node in view.nodes)
        return view.model_copy(update={"nodes": nodes})

    async def infrastructure(self, ref: str) -> Infrastructure:
        """The infrastructure as recorded (no provider call)."""
        infra = self.store.resolve(ref)
        return self._view(infra, self.store.nodes(infra.id))

    async def node(self, ref: str, name: str) -> Node:
        """A live node by name, id or provider id."""
        infra = self.store.resolve(ref)
        pins = self._pins(infra.id)
        for row in self.store.nodes(infra.id):
            if name in (row.name, row.id, row.provider_id) and row.state != NodeState.TERMINATED:
                return views.node(row, pins.get(row.id))
        raise UsageError(f"no live node '{name}' in {infra.name}")

    async def fault(self, node: str, kind: str, *, ref: str | None = None, peer: str | None = None) -> Fault:
        """Make a local node ``crash``, ``hang`` or lose its network (``partition``), or ``heal`` it: for testing
        what the manager and a group's health checks do then.  ``node`` is a name, id or provider id, looked
        for in every live infrastructure (or in ``ref``'s); ``peer``, a node of the same infrastructure, makes the
        partition one between the two alone.  Recorded as a ``fault`` event."""
        from cloudherd.engine.faults import inject

        infras = [self.store.resolve(ref)] if ref else self.store.infrastructures()
        found = [(infra, row) for infra in infras for row in self.store.nodes(infra.id)
                 if node in (row.name, row.id, row.provider_id) and row.state != NodeState.TERMINATED]
        if not found:
            raise UsageError(f"no live node '{node}'" + (f" in {infras[0].name}" if ref else ""))
        if len(found) > 1:
            where = ", ".join(sorted(infra.name for infra, _ in found))
            raise UsageError(f"node '{node}' is in several infrastructures ({where}): name one with --infra")
        infra, row = found[0]
        other = None
        if peer is not None:
            other = next((r for r in self.store.nodes(infra.id) if peer in (r.name, r.id, r.provider_id)
                          and r.state != NodeState.TERMINATED), None)
            if other is None or other.id == row.id:
                raise UsageError(f"no other live node '{peer}' in {infra.name}")
        done = await inject(self.store, infra, row, kind, other)
        return Fault(infrastructure=infra.name, node=row.name, kind=kind, done=done)

    async def logs(self, ref: str, node: str | None = None) -> list[Action]:
        """Recorded actions (scripts, teardowns, exec commands) with their output, secrets masked."""
        infra = self.store.resolve(ref)
        nodes = {n.id: n for n in self.store.nodes(infra.id)}
        node_id = None
        if node:
            match = [n for n in nodes.values() if node in (n.name, n.id, n.provider_id)]
            if not match:
                raise UsageError(f"no node '{node}' in {infra.name}")
            node_id = match[0].id
        return [views.action(a, nodes[a.node_id].name if a.node_id in nodes else None)
                for a in self.store.actions(infra.id, node_id)]

    # -- orphans -----------------------------------------------------------------------------------

    async def gc(self, *, provider: str | None = None, delete: bool = False) -> list[Orphan]:
        """Machines with cloudherd's tags that no infrastructure here accounts for; ``delete`` removes them."""
        from cloudherd.engine.gc import delete_orphans, find_orphans

        orphans = await find_orphans(self.store, provider)
        if delete and orphans:
            await delete_orphans(self.store, orphans)
        return [views.orphan(o) for o in orphans]

    async def adopt(self, ref: str, group: str, ids: Sequence[str]) -> list[str]:
        """Bring orphan machines ``ids`` under ``ref`` as nodes of ``group``; the next ``up`` deploys them."""
        from cloudherd.engine.gc import adopt

        return await adopt(self.store, self.store.resolve(ref), group, ids)

    # -- the fleet ---------------------------------------------------------------------------------

    async def exec(self, ref: str, command: str, *, group: Selectable = None, node: Selectable = None,
                   tags: Tags = None, on_line: LineSink | None = None, timeout: float = 30.0,
                   command_timeout: float | None = None, concurrency: int | None = None,
                   accept_new_host_key: Sequence[str] = ()) -> list[ExecResult]:
        """Run a shell command on the chosen nodes at once; ``on_line(node, stream, line)`` streams output.

        ``timeout`` bounds the wait for each node's SSH, ``command_timeout`` the command itself.  After
        :meth:`keep_connections`, the connections stay open for the next command.
        """
        from cloudherd.engine.fleet import FleetOptions, Selector, exec_command

        _check_limits(timeout=timeout, command_timeout=command_timeout, concurrency=concurrency)
        infra = self.store.resolve(ref)
        options = FleetOptions(connect_timeout=timeout, command_timeout=command_timeout, handshakes=concurrency,
                               accept_new_host_key=accept_new_host_key, pool=self._warm)
        results = await exec_command(self.store, infra, command, selector=Selector.of(group, node, tags),
                                     on_line=on_line, options=options)
        return [views.exec_result(r) for r in results]

    async def push(self, ref: str, src: PathLike | Sequence[PathLike], dst: str, *, group: Selectable = None,
                   node: Selectable = None, tags: Tags = None, timeout: float = 30.0,
                   concurrency: int | None = None, accept_new_host_key: Sequence[str] = ()) -> list[TransferResult]:
        """Copy local files or folders to ``dst`` on the chosen nodes (relative: the node's work folder)."""
        from cloudherd.engine.fleet import FleetOptions, Selector, push

        _check_limits(timeout=timeout, concurrency=concurrency)
        infra = self.store.resolve(ref)
        sources = [src] if isinstance(src, str | os.PathLike) else list(src)
        options = FleetOptions(connect_timeout=timeout, handshakes=concurrency, accept_new_host_key=accept_new_host_key)
        results = await push(self.store, infra, sources, dst, selector=Selector.of(group, node, tags), options=options)
        return [views.transfer_result(r) for r in results]

    async def pull(self, ref: str, src: str | Sequence[str], dst: PathLike, *, group: Selectable = None,
                   node: Selectable = None, tags: Tags = None, timeout: float = 30.0,
                   concurrency: int | None = None, accept_new_host_key: Sequence[str] = ()) -> list[TransferResult]:
        """Copy what ``src`` (globs) matches on each chosen node into ``dst/<node>/``."""
        from cloudherd.engine.fleet import FleetOptions, Selector, pull

        _check_limits(timeout=timeout, concurrency=concurrency)
        infra = self.store.resolve(ref)
        patterns = [src] if isinstance(src, str) else list(src)
        options = FleetOptions(connect_timeout=timeout, handshakes=concurrency, accept_new_host_key=accept_new_host_key)
        results = await pull(self.store, infra, patterns, dst, selector=Selector.of(group, node, tags),
                             options=options)
        return [views.transfer_result(r) for r in results]

    async def ssh_command(self, ref: str, node: str, command: Sequence[str] = (), *,
                          accept_new_host_key: bool = False) -> list[str]:
        """The OpenSSH command line that logs in to ``node`` checking its pinned host key.

        The node's key is checked here first, so a changed key is refused in cloudherd's words (both
        fingerprints, one line); ``accept_new_host_key`` re-pins it, as for the other commands.  The
        known-hosts file the command names holds only that pin.
        """
        import shutil

        from cloudherd.paths import data_dir
        from cloudherd.remote.probe import key_algorithm, presented_host_key
        from cloudherd.remote.ssh import HostKeyMismatchError, fingerprint

        binary = shutil.which("ssh")
        if binary is None:
            raise UsageError("no ssh client installed (on Debian: apt-get install openssh-client)")
        infra = self.store.resolve(ref)
        target = await self.node(infra.id, node)
        if not target.address:
            raise UsageError(f"node {target.name} has no address yet")
        pinned = target.host_key
        seen = await presented_host_key(target.address, target.port, key_algorithm(pinned or ""))
        if seen is None:
            raise HostKeyMismatchError(f"node {target.name} ({target.address}:{target.port}) offers no host key")
        if pinned and _key_body(seen) != _key_body(pinned):
            if not accept_new_host_key:
                raise HostKeyMismatchError(
                    f"node {target.name} ({target.address}:{target.port}) presented host key {fingerprint(seen)}, "
                    f"but {fingerprint(pinned)} is pinned for it: refusing to connect. If the node was rebuilt, "
                    f"accept its new key", remedy=("accept_new_host_key", ""))
            self.store.pin_host_keys(infra.id, [(target.id, seen, fingerprint(seen), "re-pinned")])
            self.store.add_event(infra.id, "host-key", f"{target.name}: host key re-pinned from "
                                 f"{fingerprint(pinned)} to {fingerprint(seen)}", node_id=target.id)
        elif not pinned:  # first contact: pinned from now on, as every other command does
            self.store.pin_host_keys(infra.id, [(target.id, seen, fingerprint(seen), "first-contact")])
        folder = data_dir() / "known_hosts"
        folder.mkdir(exist_ok=True, mode=0o700)
        known_file = folder / target.id
        host = target.address if target.port == 22 else f"[{target.address}]:{target.port}"
        known_file.write_text(f"{host} {seen}\n")
        groups = {g.name: g for g in self.store.infrastructure(infra.id).groups}
        own = groups.get(target.group)
        key_path = (own.config or {}).get("ssh_key") if own is not None else None
        return [binary, "-i", key_path or infra.ssh_key_path, "-p", str(target.port), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={known_file}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR",
                f"{target.user}@{target.address}", *command]

    # -- the manager -------------------------------------------------------------------------------

    async def attach(self, ref: str) -> InfrastructureSummary:
        """Mark ``ref`` as kept alive: ``manage --all`` (and ``serve``) pick it up at their next pass."""
        infra = self.store.resolve(ref)
        if infra.state == "destroyed":
            raise UsageError(f"{infra.name} ({infra.id}) is destroyed: nothing to keep alive")
        self.store.update_infrastructure(infra.id, attached=True)
        self.store.add_event(infra.id, "attach", "attached: kept alive by the manager")
        return views.summary(self.store.infrastructure(infra.id))

    async def detach(self, ref: str) -> InfrastructureSummary:
        """Stop keeping ``ref`` alive (its machines stay as they are)."""
        infra = self.store.resolve(ref)
        self.store.update_infrastructure(infra.id, attached=False)
        self.store.add_event(infra.id, "detach", "detached: no longer kept alive")
        return views.summary(self.store.infrastructure(infra.id))

    async def manage(self, refs: Sequence[str] = (), *, every_attached: bool = False, interval: float = 10.0,
                     once: bool = False, on_event: EventSink | None = None,
                     on_pass: Callable[[PassResult], None] | None = None, stop: asyncio.Event | None = None
                     ) -> list[PassResult]:
        """Reconcile passes every ``interval`` seconds over ``refs`` (or every attached infrastructure) until
        ``stop`` is set, or one round with ``once``; a pass in progress always finishes.  Returns the last
        round's reports.  A second manager of the same infrastructure is refused (BusyError)."""
        from cloudherd.engine.manager import Manager

        _check_limits(interval=interval)
        if not refs and not every_attached:
            raise UsageError("name the infrastructures to manage, or ask for every attached one")
        ids = [self.store.resolve(r).id for r in refs]
        manager = Manager(self.store, ids, every_attached=every_attached, interval=interval, sink=on_event,
                          on_pass=(lambda r: on_pass(views.pass_result(r))) if on_pass else None,
                          stop=stop or asyncio.Event())
        return [views.pass_result(r) for r in await manager.run(once=once)]

    async def scale(self, ref: str, group: str, change: str | int, *, victims: Sequence[str] = (),
                    wait: float = 600.0, on_event: EventSink | None = None, run_pass: bool = True) -> ScaleResult:
        """Ask for ``group`` to grow (``"+2"``), shrink (``"-1"``, ``victims`` first) or be a size (``"=5"``, ``5``).

        The request is stored and consumed by the manager's next pass; when no manager keeps the
        infrastructure, one pass runs here (waiting up to ``wait`` seconds for another command on it),
        unless ``run_pass`` is False (the caller runs one).
        """
        from cloudherd.engine.events import ProgressEvent
        from cloudherd.engine.locks import exclusive, infra_scope
        from cloudherd.engine.manager import is_managed
        from cloudherd.engine.reconcile import reconcile, scale_target

        kind, amount = _scale_change(change)
        infra = self.store.resolve(ref)
        if infra.state == "destroyed":
            raise UsageError(f"{infra.name} ({infra.id}) is destroyed")
        rows = {g.name: g for g in infra.groups}
        if group not in rows:
            raise UsageError(f"no group '{group}' in {infra.name} (groups: {', '.join(sorted(rows))})")
        victim_ids = self._victim_ids(infra, group, victims)
        low, high = _bounds(infra).get(group, (None, None))
        before = rows[group].count
        target, note = scale_target(before, kind, amount, low, high)
        if target > self.max_group_size:
            raise UsageError(f"{group} of {infra.name} would have {target} nodes: a group has at most "
                             f"{self.max_group_size} here")
        request_id = self.store.add_scale_request(infra.id, group, kind, amount, victim_ids)
        applied = False
        if run_pass and not is_managed(self.store, infra.name):
            async with exclusive(self.store, infra_scope(infra.name), "scale", wait=wait,
                                 on_wait=(lambda m: on_event(ProgressEvent("info", m))) if on_event else None):
                await reconcile(self.store, infra.id, sink=on_event)
            applied = True
        row = self.store.scale_request(request_id)
        return ScaleResult(group=group, before=before, target=target, note=note, applied=applied,
                           outcome=row.outcome if row is not None else None)

    async def events(self, ref: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        """The event log, oldest first, after event ``after`` (``events --follow`` asks with the last id seen)."""
        infra = self.store.resolve(ref)
        names = {n.id: n.name for n in self.store.nodes(infra.id)}
        return [views.event(e, names) for e in self.store.events_after(infra.id, after, limit)]

    # -- revisions --------------------------------------------------------------------------------

    async def history(self, ref: str) -> list[Revision]:
        """The releases applied to an infrastructure, oldest first; the last is the current one."""
        infra = self.store.resolve(ref)
        rows = self.store.revisions(infra.id)
        return [views.revision(row, index == len(rows) - 1) for index, row in enumerate(rows)]

    async def rollback(self, ref: str, revision: int | None = None, *, on_event: EventSink | None = None,
                       connect_timeout: float = 120.0, wait: float = 600.0) -> Revision:
        """Apply an earlier release again (default: the newest applied one before the current), through the
        same path as ``up``; each group keeps its size now.  Returns the revision this made."""
        from cloudherd.engine import revisions
        from cloudherd.engine.apply import up
        from cloudherd.spec.confine import Confinement

        _check_limits(connect_timeout=connect_timeout, wait=wait)
        infra = self.store.resolve(ref)
        if infra.state == InfraState.DESTROYED:
            raise UsageError(f"{infra.name} ({infra.id}) is destroyed: nothing to roll back")
        target = revisions.pick(self.store.revisions(infra.id), revision)
        loaded = revisions.loaded_from(target, {g.name: g.count for g in infra.groups},
                                       within=Confinement.from_record(infra.confined))
        await up(loaded, self.store, on_event=on_event, connect_timeout=connect_timeout, wait=wait,
                 origin=f"rollback to {target.number}")
        return (await self.history(infra.id))[-1]

    async def rollout(self, ref: str) -> Rollout:
        """Where the latest release stands: each rolling group's nodes on it and those still behind."""
        from cloudherd.engine.reconcile import applied_spec
        from cloudherd.engine.revisions import group_digest
        from cloudherd.engine.rollout import behind

        infra = self.store.resolve(ref)
        rows = self.store.revisions(infra.id)
        latest = rows[-1] if rows else None
        groups: list[RolloutGroup] = []
        if infra.state != InfraState.DESTROYED:
            loaded = applied_spec(infra)
            nodes = self.store.nodes(infra.id, alive_only=True)
            late = {n.id for n in behind(loaded, nodes)}
            for name, group in loaded.spec.groups.items():
                if group.update.strategy != "rolling":
                    continue
                digest = group_digest(loaded, name)
                members = [n for n in nodes if n.group_name == name]
                groups.append(RolloutGroup(
                    name=name, count=group.count, surge=group.update.max_surge,
                    updated=tuple(n.name for n in members if n.release == digest),
                    behind=tuple(n.name for n in members if n.id in late)))
        return Rollout(infrastructure=infra.id, name=infra.name, revision=latest.number if latest else None,
                       state=latest.state if latest else "none", reason=latest.reason if latest else None,
                       groups=tuple(groups))

    async def resume(self, ref: str, *, on_event: EventSink | None = None, connect_timeout: float = 120.0,
                     wait: float = 600.0) -> Rollout:
        """Go on with a paused (or cut short) rollout of the latest release, to the end (no more pauses)."""
        from cloudherd.engine import revisions
        from cloudherd.engine.apply import up
        from cloudherd.spec.confine import Confinement

        _check_limits(connect_timeout=connect_timeout, wait=wait)
        infra = self.store.resolve(ref)
        rows = self.store.revisions(infra.id)
        if infra.state == InfraState.DESTROYED or not rows:
            raise UsageError(f"{infra.name} ({infra.id}) has no rollout to resume")
        latest = rows[-1]
        loaded = revisions.loaded_from(latest, {g.name: g.count for g in infra.groups},
                                       within=Confinement.from_record(infra.confined))
        await up(loaded, self.store, on_event=on_event, connect_timeout=connect_timeout, wait=wait,
                 origin=latest.origin, pause_after=0)
        return await self.rollout(infra.id)

    async def abort(self, ref: str, *, on_event: EventSink | None = None, connect_timeout: float = 120.0,
                    wait: float = 600.0) -> Rollout:
        """Give up the latest release: the fleet goes back to the release before it, through the rolling path."""
        infra = self.store.resolve(ref)
        rows = self.store.revisions(infra.id)
        if not rows or rows[-1].state == "applied":
            raise UsageError(f"{infra.name} has no rollout in progress to abort (its latest revision is "
                             f"{'applied' if rows else 'none'}); `cloudherd rollback` goes back to an older one")
        given_up = rows[-1]
        await self.rollback(infra.id, on_event=on_event, connect_timeout=connect_timeout, wait=wait)
        self.store.end_revision(given_up.id, "aborted", f"aborted at {given_up.state}"
                                + (f" ({given_up.reason})" if given_up.reason else ""))
        return await self.rollout(infra.id)

    # -- users and tokens (the network faces' credentials) -----------------------------------------

    async def add_user(self, name: str) -> User:
        """A user of the server: owns infrastructures and tokens, and sees only their own."""
        from cloudherd.api import auth

        return auth.add_user(self.store, name)

    async def users(self) -> list[User]:
        """Every user."""
        from cloudherd.api import auth

        return auth.users(self.store)

    async def create_token(self, *, user: str | None = None, name: str | None = None, aws: bool = False
                           ) -> IssuedToken:
        """A bearer token (or with ``aws`` an access key pair) for ``user`` (default: you); the secret is in the
        answer and nowhere else."""
        from cloudherd.api import auth

        return auth.create_token(self.store, user=user, name=name, aws=aws)

    async def tokens(self, *, user: str | None = None) -> list[Token]:
        """Tokens, without their secrets."""
        from cloudherd.api import auth

        return auth.tokens(self.store, user=user)

    async def revoke_token(self, ref: str) -> Token:
        """Revoke a token by id, key id or name."""
        from cloudherd.api import auth

        return auth.revoke_token(self.store, ref)

    # -- catalogs ----------------------------------------------------------------------------------

    async def sizes(self, provider: str, pattern: str | None = None, *, region: str | None = None) -> list[Size]:
        """Machine sizes a provider type offers (``pattern``: a regular expression); the default is marked."""
        async with _catalog_provider(provider, region) as driver:
            default = await driver.default_size()
            return [Size(name=s.name, cpus=s.cpus, memory_mb=s.memory_mb, default=s.name == default)
                    for s in await driver.sizes(pattern)]

    async def images(self, provider: str, pattern: str | None = None, *, region: str | None = None) -> list[Image]:
        """Images a provider type offers (``pattern``: a regular expression)."""
        async with _catalog_provider(provider, region) as driver:
            return [Image(id=i.id, name=i.name) for i in await driver.images(pattern)]

    async def regions(self, provider: str, pattern: str | None = None) -> list[str]:
        """Regions a provider type offers (``pattern``: a substring)."""
        async with _catalog_provider(provider, None) as driver:
            return [r for r in await driver.regions() if pattern is None or pattern in r]

    # -- helpers -----------------------------------------------------------------------------------

    def _pins(self, infra_id: str) -> dict[str, str]:
        return {node_id: row.public_key for node_id, row in self.store.host_keys(infra_id).items()}

    def _view(self, infra: InfraRow, nodes: Sequence[NodeRow]) -> Infrastructure:
        from cloudherd.engine.manager import is_managed

        row = self.store.infrastructure(infra.id)
        return views.infrastructure(row, nodes, self._pins(infra.id), self.store.last_actions(infra.id),
                                    _bounds(row), is_managed(self.store, row.name))

    def _victim_ids(self, infra: InfraRow, group: str, victims: Sequence[str]) -> list[str]:
        live = [n for n in self.store.nodes(infra.id) if n.state != NodeState.TERMINATED]
        ids = []
        for victim in victims:
            match = [n for n in live if victim in (n.name, n.id, n.provider_id, n.address, n.private_address)]
            if not match:
                raise UsageError(f"no live node '{victim}' in {infra.name} (by name, id or address)")
            if match[0].group_name != group:
                raise UsageError(f"{victim} is in group {match[0].group_name}, not {group}")
            ids.append(match[0].id)
        return ids


class _catalog_provider:
    """A provider of a type configured from the environment, closed after a catalog call."""

    def __init__(self, provider: str, region: str | None) -> None:
        from cloudherd.providers import make_provider

        self.driver: Provider = make_provider(provider, provider, {"region": region} if region else {})

    async def __aenter__(self) -> Provider:
        return self.driver

    async def __aexit__(self, *exc: object) -> None:
        await self.driver.close()


class SyncClient(SyncOgcActions):
    """The blocking twin of :class:`Client`: the same methods and signatures, each run to completion.

    It cannot be used inside a running event loop (use :class:`Client` with ``await`` there).
    """

    def __init__(self, db_url: str | None = None) -> None:
        self.aio = Client(db_url)

    def close(self) -> None:
        """Release the database connections."""
        run_blocking(self.aio.close())

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def init(self) -> Setup:
        """Make the database, the user and the SSH key pair if missing; say where they are."""
        return run_blocking(self.aio.init())

    def up(self, spec: Specs, *, keep_on_failure: bool = False, on_event: EventSink | None = None,
           connect_timeout: float = 120.0, force: bool = False, concurrency: int | None = None,
           accept_new_host_key: Sequence[str] = (), wait: float = 600.0, format: str | None = None,
           no_rollback: bool = False, pause_after: int | None = None,
           counts: Mapping[str, int] | None = None) -> str:
        """Create the spec's infrastructure, or converge the active one of the same name; returns its id."""
        return run_blocking(self.aio.up(spec, keep_on_failure=keep_on_failure, on_event=on_event,
                                        connect_timeout=connect_timeout, force=force, concurrency=concurrency,
                                        accept_new_host_key=accept_new_host_key, wait=wait, format=format,
                                        no_rollback=no_rollback, pause_after=pause_after, counts=counts))

    def submit(self, spec: Specs, *, format: str | None = None, owner: str | None = None,
               attach: bool = True, wait: float = 600.0, new_only: bool = False,
               within: Confinement | None = None) -> str:
        """Record an infrastructure without making it (the manager's first pass does); returns its id."""
        return run_blocking(self.aio.submit(spec, format=format, owner=owner, attach=attach, wait=wait,
                                            new_only=new_only, within=within))

    def validate(self, spec: Specs, *, format: str | None = None) -> SpecSummary:
        """Load ``spec`` and render its scripts against the fleet it describes; touches nothing."""
        return run_blocking(self.aio.validate(spec, format=format))

    def plan(self, spec: Specs, *, format: str | None = None, within: Confinement | None = None) -> Plan:
        """What ``up`` of ``spec`` would change; changes nothing."""
        return run_blocking(self.aio.plan(spec, format=format, within=within))

    def convert(self, spec: Specs, *, format: str | None = None) -> str:
        """The native spec a foreign file (or OGC files merged) means, as YAML."""
        return run_blocking(self.aio.convert(spec, format=format))

    def import_node_defs(self, path: PathLike) -> list[str]:
        """Store the Occopus node definitions of ``path``; returns the types."""
        return run_blocking(self.aio.import_node_defs(path))

    def down(self, ref: str, *, on_event: EventSink | None = None, artifacts_dir: PathLike | None = None,
             wait: float = 600.0, force: bool = False) -> str:
        """Pull artifacts, run teardowns, terminate every node."""
        return run_blocking(self.aio.down(ref, on_event=on_event, artifacts_dir=artifacts_dir, wait=wait,
                                          force=force))

    def ls(self, *, include_destroyed: bool = False) -> list[InfrastructureSummary]:
        """Infrastructures, oldest first (destroyed ones only when asked)."""
        return run_blocking(self.aio.ls(include_destroyed=include_destroyed))

    def status(self, ref: str) -> Infrastructure:
        """The infrastructure with its nodes' states checked against the providers."""
        return run_blocking(self.aio.status(ref))

    def infrastructure(self, ref: str) -> Infrastructure:
        """The infrastructure as recorded (no provider call)."""
        return run_blocking(self.aio.infrastructure(ref))

    def node(self, ref: str, name: str) -> Node:
        """A live node by name, id or provider id."""
        return run_blocking(self.aio.node(ref, name))

    def fault(self, node: str, kind: str, *, ref: str | None = None, peer: str | None = None) -> Fault:
        """Make a local node crash, hang or lose its network, or heal it (recorded as a fault event)."""
        return run_blocking(self.aio.fault(node, kind, ref=ref, peer=peer))

    def logs(self, ref: str, node: str | None = None) -> list[Action]:
        """Recorded actions with their output, secrets masked."""
        return run_blocking(self.aio.logs(ref, node))

    def gc(self, *, provider: str | None = None, delete: bool = False) -> list[Orphan]:
        """Machines with cloudherd's tags that no infrastructure here accounts for."""
        return run_blocking(self.aio.gc(provider=provider, delete=delete))

    def adopt(self, ref: str, group: str, ids: Sequence[str]) -> list[str]:
        """Bring orphan machines under ``ref`` as nodes of ``group``."""
        return run_blocking(self.aio.adopt(ref, group, ids))

    def exec(self, ref: str, command: str, *, group: Selectable = None, node: Selectable = None,
             tags: Tags = None, on_line: LineSink | None = None, timeout: float = 30.0,
             command_timeout: float | None = None, concurrency: int | None = None,
             accept_new_host_key: Sequence[str] = ()) -> list[ExecResult]:
        """Run a shell command on the chosen nodes at once."""
        return run_blocking(self.aio.exec(ref, command, group=group, node=node, tags=tags, on_line=on_line,
                                          timeout=timeout, command_timeout=command_timeout,
                                          concurrency=concurrency, accept_new_host_key=accept_new_host_key))

    def push(self, ref: str, src: PathLike | Sequence[PathLike], dst: str, *, group: Selectable = None,
             node: Selectable = None, tags: Tags = None, timeout: float = 30.0,
             concurrency: int | None = None, accept_new_host_key: Sequence[str] = ()) -> list[TransferResult]:
        """Copy local files or folders to the chosen nodes."""
        return run_blocking(self.aio.push(ref, src, dst, group=group, node=node, tags=tags, timeout=timeout,
                                          concurrency=concurrency, accept_new_host_key=accept_new_host_key))

    def pull(self, ref: str, src: str | Sequence[str], dst: PathLike, *, group: Selectable = None,
             node: Selectable = None, tags: Tags = None, timeout: float = 30.0,
             concurrency: int | None = None, accept_new_host_key: Sequence[str] = ()) -> list[TransferResult]:
        """Copy files from the chosen nodes into ``dst/<node>/``."""
        return run_blocking(self.aio.pull(ref, src, dst, group=group, node=node, tags=tags, timeout=timeout,
                                          concurrency=concurrency, accept_new_host_key=accept_new_host_key))

    def ssh_command(self, ref: str, node: str, command: Sequence[str] = (), *,
                    accept_new_host_key: bool = False) -> list[str]:
        """The OpenSSH command line that logs in to ``node`` checking its pinned host key."""
        return run_blocking(self.aio.ssh_command(ref, node, command, accept_new_host_key=accept_new_host_key))

    def attach(self, ref: str) -> InfrastructureSummary:
        """Mark ``ref`` as kept alive by ``manage --all``."""
        return run_blocking(self.aio.attach(ref))

    def detach(self, ref: str) -> InfrastructureSummary:
        """Stop keeping ``ref`` alive."""
        return run_blocking(self.aio.detach(ref))

    def manage(self, refs: Sequence[str] = (), *, every_attached: bool = False, interval: float = 10.0,
               once: bool = False, on_event: EventSink | None = None,
               on_pass: Callable[[PassResult], None] | None = None, stop: asyncio.Event | None = None
               ) -> list[PassResult]:
        """Reconcile passes until ``stop`` is set (or one round with ``once``)."""
        return run_blocking(self.aio.manage(refs, every_attached=every_attached, interval=interval, once=once,
                                            on_event=on_event, on_pass=on_pass, stop=stop))

    def scale(self, ref: str, group: str, change: str | int, *, victims: Sequence[str] = (),
              wait: float = 600.0, on_event: EventSink | None = None, run_pass: bool = True) -> ScaleResult:
        """Ask for ``group`` to grow, shrink or be a size; consumed by the next pass."""
        return run_blocking(self.aio.scale(ref, group, change, victims=victims, wait=wait, on_event=on_event,
                                           run_pass=run_pass))

    def events(self, ref: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        """The event log, oldest first, after event ``after``."""
        return run_blocking(self.aio.events(ref, after=after, limit=limit))

    def history(self, ref: str) -> list[Revision]:
        """The releases applied to an infrastructure, oldest first."""
        return run_blocking(self.aio.history(ref))

    def rollout(self, ref: str) -> Rollout:
        """Where the latest release stands."""
        return run_blocking(self.aio.rollout(ref))

    def resume(self, ref: str, *, on_event: EventSink | None = None, connect_timeout: float = 120.0,
               wait: float = 600.0) -> Rollout:
        """Go on with a paused rollout, to the end."""
        return run_blocking(self.aio.resume(ref, on_event=on_event, connect_timeout=connect_timeout, wait=wait))

    def abort(self, ref: str, *, on_event: EventSink | None = None, connect_timeout: float = 120.0,
              wait: float = 600.0) -> Rollout:
        """Give up the latest release: back to the one before."""
        return run_blocking(self.aio.abort(ref, on_event=on_event, connect_timeout=connect_timeout, wait=wait))

    def rollback(self, ref: str, revision: int | None = None, *, on_event: EventSink | None = None,
                 connect_timeout: float = 120.0, wait: float = 600.0) -> Revision:
        """Apply an earlier release again (default: the one before the current)."""
        return run_blocking(self.aio.rollback(ref, revision, on_event=on_event, connect_timeout=connect_timeout,
                                              wait=wait))

    def add_user(self, name: str) -> User:
        """A user of the server."""
        return run_blocking(self.aio.add_user(name))

    def users(self) -> list[User]:
        """Every user."""
        return run_blocking(self.aio.users())

    def create_token(self, *, user: str | None = None, name: str | None = None, aws: bool = False
                     ) -> IssuedToken:
        """A bearer token (or an AWS-style access key pair); its secret is shown this once."""
        return run_blocking(self.aio.create_token(user=user, name=name, aws=aws))

    def tokens(self, *, user: str | None = None) -> list[Token]:
        """Tokens, without their secrets."""
        return run_blocking(self.aio.tokens(user=user))

    def revoke_token(self, ref: str) -> Token:
        """Revoke a token."""
        return run_blocking(self.aio.revoke_token(ref))

    def sizes(self, provider: str, pattern: str | None = None, *, region: str | None = None) -> list[Size]:
        """Machine sizes a provider type offers; the default is marked."""
        return run_blocking(self.aio.sizes(provider, pattern, region=region))

    def images(self, provider: str, pattern: str | None = None, *, region: str | None = None) -> list[Image]:
        """Images a provider type offers."""
        return run_blocking(self.aio.images(provider, pattern, region=region))

    def regions(self, provider: str, pattern: str | None = None) -> list[str]:
        """Regions a provider type offers."""
        return run_blocking(self.aio.regions(provider, pattern))


def _scale_change(change: str | int) -> tuple[str, int]:
    """``+2`` / ``-1`` / ``=5`` / ``5`` as (add | remove | set, amount)."""
    text = str(change).strip()
    kind = {"+": "add", "-": "remove", "=": "set"}.get(text[:1], "set")
    digits = text[1:] if text[:1] in "+-=" else text
    shown = text if len(text) <= 40 else f"{text[:30]}… ({len(text)} characters)"
    if not (digits.isascii() and digits.isdigit()) or isinstance(change, bool):
        raise UsageError(f"a scale is +N, -N or =N (or N), got '{shown}'")
    amount = whole(digits)  # None: more digits than any group could have nodes
    if amount is None or amount > GROUP_SIZE_LIMIT:
        raise UsageError(f"a scale is +N, -N or =N (or N) with N at most {GROUP_SIZE_LIMIT} (the most nodes a "
                         f"group may have), got '{shown}'")
    return kind, amount


def _bounds(infra: InfraRow) -> dict[str, tuple[int | None, int | None]]:
    """Each group's min and max, from the spec as applied."""
    from cloudherd.engine.context import snapshot
    from cloudherd.errors import SpecError

    try:
        spec = snapshot(infra).spec
    except SpecError:
        return {}
    return {name: (g.min, g.max) for name, g in spec.groups.items()}


def _key_body(public_key: str) -> str:
    """Algorithm and key data of an OpenSSH public-key line, without its comment."""
    return " ".join(public_key.split()[:2])


def _unmade(infra: Any, owner: str | None) -> bool:
    """A submission of the same owner that no pass has touched yet: sending it again (a retry after a lost
    answer, or after the server died mid-request) takes it over rather than answering "name taken"."""
    from cloudherd.lifecycle import InfraState

    return (infra.state == InfraState.CREATING and infra.last_pass_at is None
            and (owner is None or infra.owner_id == owner))


def _check_limits(*, concurrency: int | None = None, wait: float | None = None,
                  **durations: float | None) -> None:
    """Durations are more than 0 seconds, ``wait`` at least 0, ``concurrency`` at least 1: checked before any
    work, so that a ``timeout=0`` is a usage error and not a node made and then failed."""
    for name, value in durations.items():
        if value is not None and not value > 0:
            raise UsageError(f"{name} must be more than 0 seconds (got {value:g})")
    if wait is not None and not wait >= 0:
        raise UsageError(f"wait must be 0 seconds or more (got {wait:g})")
    if concurrency is not None and (isinstance(concurrency, bool) or concurrency < 1):
        raise UsageError(f"concurrency must be at least 1 (got {concurrency})")


def _open(url: str | None) -> Engine:
    from cloudherd.state.db import open_engine

    return open_engine(url)


def _safe_url(url: str | None) -> str:
    from sqlalchemy.engine import make_url

    from cloudherd.state.db import database_url

    return make_url(url or database_url()).render_as_string(hide_password=True)
