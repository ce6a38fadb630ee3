"""Working on a running fleet: refresh node states, choose nodes, run a command or copy files everywhere.

Fleet commands keep the database off the hot path: the nodes, their pinned host keys and the spec
are read once before any connection opens, and what happened is written in one transaction after.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cloudherd.engine.context import Identity, Redactor, ensure_identity, snapshot
from cloudherd.engine.liveness import settle
from cloudherd.engine.session import RunSession
from cloudherd.engine.templates import node_env
from cloudherd.errors import CloudherdError, UsageError
from cloudherd.lifecycle import LIVE_NODE_STATES, InfraState
from cloudherd.remote.pool import ConnectionPool
from cloudherd.remote.scripts import in_workdir
from cloudherd.remote.ssh import Target, utcnow
from cloudherd.state.models import Infrastructure, Node
from cloudherd.state.repo import Store

if TYPE_CHECKING:
    pass

# -- choosing nodes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    """Which nodes a fleet command works on: all live ones, narrowed by group, node name/id and tags
    (a node has its group's tags).  Each list is an OR; the three are ANDed."""

    groups: Sequence[str] = ()
    nodes: Sequence[str] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, group: str | Sequence[str] | None = None, node: str | Sequence[str] | None = None,
           tags: Mapping[str, str] | Sequence[str] | None = None) -> Selector:
        """From CLI-like values: one name or many, tags as a mapping or ``["k=v", ...]``."""
        return cls(_many(group), _many(node), parse_tags(tags))


def _many(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def parse_tags(tags: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    if not tags:
        return {}
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    parsed = {}
    for item in tags:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"a tag selector is KEY=VALUE, got '{item}'")
        parsed[key.strip()] = value.strip()
    return parsed


def select_nodes(infra: Infrastructure, nodes: Sequence[Node], selector: Selector | None = None) -> list[Node]:
    """The live, addressable nodes the selector picks; a name that matches nothing is a usage error."""
    selector = selector or Selector()
    group_tags = {g.name: dict((g.config or {}).get("tags") or {}) for g in infra.groups}
    known_groups = sorted({n.group_name for n in nodes} | set(group_tags))
    for wanted in selector.groups:
        if wanted not in known_groups:
            raise UsageError(f"no group '{wanted}' in {infra.name} (groups: {', '.join(known_groups)})")
    chosen = [n for n in nodes if n.state in LIVE_NODE_STATES and n.address]
    if selector.groups:
        chosen = [n for n in chosen if n.group_name in selector.groups]
    if selector.nodes:
        # a filter: a ref several nodes answer to (a shared address) picks them all
        for wanted in selector.nodes:
            if not any(n.answers_to(wanted) for n in chosen):
                raise UsageError(f"no live node '{wanted}' in {infra.name} (see `cloudherd status {infra.id}`)")
        chosen = [n for n in chosen if any(n.answers_to(wanted) for wanted in selector.nodes)]
    if selector.tags:
        chosen = [n for n in chosen
                  if all(group_tags.get(n.group_name, {}).get(k) == v for k, v in selector.tags.items())]
    return chosen


# -- exec -------------------------------------------------------------------------------------------


@dataclass
class ExecResult:
    node: str
    group: str
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    error: str | None = None
    remedy: tuple[str, str] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_code == 0


LineSink = Callable[[str, str, str], None]  # (node, stream, line)


@dataclass(frozen=True)
class FleetOptions:
    """How a fleet command connects: SSH wait per node, handshakes in flight, nodes to re-pin."""

    connect_timeout: float = 30.0
    command_timeout: float | None = None
    handshakes: int | None = None
    accept_new_host_key: Collection[str] = ()
    # a pool that outlives the command (the server's warm connections); None: fresh ones, closed after
    pool: ConnectionPool | None = field(default=None, compare=False)


async def exec_command(
    store: Store, infra: Infrastructure, command: str, *, selector: Selector | None = None,
    on_line: LineSink | None = None, options: FleetOptions | None = None,
) -> list[ExecResult]:
    """Run ``command`` on the chosen nodes at once over fresh connections; recorded as actions after."""
    options = options or FleetOptions()
    if not command.strip():
        raise UsageError("the command is empty: give a shell command to run on the nodes")
    _check_alive(infra)
    await settle(store, infra)
    identity = ensure_identity(store, infra.ssh_key_path)
    loaded = snapshot(infra)
    redact = Redactor(loaded.secrets)
    group_env = {name: dict(group.env) for name, group in loaded.spec.groups.items()}
    nodes = select_nodes(infra, store.nodes(infra.id), selector)
    records: list[dict[str, Any]] = []
    shown = redact(command)  # what is stored and shown of the command: its secrets masked like its output

    async def one(run: RunSession, node: Node) -> ExecResult:
        started, began = time.monotonic(), utcnow()
        sink = (lambda stream, line: on_line(node.name, stream, redact(line))) if on_line else None
        try:
            line = in_workdir(command, node_env(node, group_env.get(node.group_name)))
            result = await run.pool.run(run.reach.target(node), line, on_line=sink, timeout=options.command_timeout)
        except (CloudherdError, TimeoutError) as exc:
            message = redact(Exception.__str__(exc)) or f"no answer within {options.command_timeout:g}s"
            remedy = exc.remedy if isinstance(exc, CloudherdError) else None
            records.append(_action(infra, node, "exec", shown, None, "", message, began))
            return ExecResult(node.name, node.group_name, None, "", "", time.monotonic() - started, error=message,
                              remedy=remedy)
        stdout, stderr = redact(result.stdout), redact(result.stderr)
        records.append(_action(infra, node, "exec", shown, result.exit_code, stdout, stderr, began))
        return ExecResult(node.name, node.group_name, result.exit_code, stdout, stderr, time.monotonic() - started)

    return await _fan_out(store, infra, identity, options, nodes, one, records)


R = TypeVar("R")


async def _fan_out(store: Store, infra: Infrastructure, identity: Identity, options: FleetOptions,
                   nodes: Sequence[Node], one: Callable[[RunSession, Node], Awaitable[R]],
                   records: list[dict[str, Any]]) -> list[R]:
    """``one`` on every node at once over one pool (the options' own, else one made for this); new host keys
    pinned and the actions written after."""
    async with RunSession(store, infra, identity=identity, pool=options.pool, handshakes=options.handshakes,
                          connect_timeout=options.connect_timeout,
                          accept_new_host_key=options.accept_new_host_key) as run:
        run.check_reach()
        try:
            results = list(await asyncio.gather(*(one(run, n) for n in nodes)))
            # recorded: a pool that outlives the command forgets these nodes' keys (not its next caller's business)
            await run.hang_up(forget=[n.name for n in nodes])
        finally:
            store.add_actions(records)
    return results


def _action(infra: Infrastructure, node: Node, kind: str, name: str, exit_code: int | None, stdout: str,
            stderr: str, started_at: Any) -> dict[str, Any]:
    return {"infrastructure_id": infra.id, "node_id": node.id, "kind": kind, "name": name, "exit_code": exit_code,
            "stdout": stdout, "stderr": stderr, "started_at": started_at, "ended_at": utcnow()}


# -- push / pull ------------------------------------------------------------------------------------


@dataclass
class TransferResult:
    node: str
    group: str
    files: list[str]
    seconds: float
    error: str | None = None
    remedy: tuple[str, str] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def push(
    store: Store, infra: Infrastructure, sources: Sequence[str | os.PathLike[str]], destination: str, *,
    selector: Selector | None = None, options: FleetOptions | None = None,
) -> list[TransferResult]:
    """Copy local files or folders to ``destination`` on every chosen node (relative: the node's work folder)."""
    paths = [Path(s).expanduser() for s in sources]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UsageError(f"push: no such local file: {', '.join(missing)}")
    name = f"{' '.join(str(p) for p in paths)} -> {destination}"

    async def copy(pool: ConnectionPool, target: Target, node: Node) -> list[str]:
        await pool.put(target, paths, destination)
        return [str(p) for p in paths]

    return await _transfer(store, infra, "push", name, copy, selector, options)


async def pull(
    store: Store, infra: Infrastructure, patterns: Sequence[str], destination: str | os.PathLike[str], *,
    selector: Selector | None = None, options: FleetOptions | None = None,
) -> list[TransferResult]:
    """Copy what ``patterns`` (globs; relative: the node's work folder) match on each chosen node into
    ``destination/<node>/``.  A node where nothing matches is an error for that node."""
    folder = Path(destination).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"pull: {folder} is a file; give a folder (each node's files land in {folder}/<node>/)")
    if not [p for p in patterns if p.strip()]:
        raise UsageError("pull: give at least one remote path or glob")
    name = f"{' '.join(patterns)} -> {folder}"

    async def copy(pool: ConnectionPool, target: Target, node: Node) -> list[str]:
        matched = await pool.get(target, patterns, folder / node.name)
        if not matched:
            raise UsageError(f"nothing matches {' '.join(patterns)} on {node.name}")
        return matched

    return await _transfer(store, infra, "pull", name, copy, selector, options)


Copier = Callable[[ConnectionPool, Target, Node], Any]


async def _transfer(
    store: Store, infra: Infrastructure, kind: str, name: str, copy: Copier, selector: Selector | None,
    options: FleetOptions | None,
) -> list[TransferResult]:
    options = options or FleetOptions()
    _check_alive(infra)
    await settle(store, infra)
    identity = ensure_identity(store, infra.ssh_key_path)
    nodes = select_nodes(infra, store.nodes(infra.id), selector)
    records: list[dict[str, Any]] = []

    async def one(run: RunSession, node: Node) -> TransferResult:
        started, began = time.monotonic(), utcnow()
        try:
            files = await copy(run.pool, run.reach.target(node), node)
        except Exception as exc:  # ours, OSError, TimeoutError and asyncssh's SFTP errors alike: per node
            message = _transfer_error(exc, kind, name)
            remedy = exc.remedy if isinstance(exc, CloudherdError) else None
            records.append(_action(infra, node, kind, name, 1, "", message, began))
            return TransferResult(node.name, node.group_name, [], time.monotonic() - started, error=message,
                                  remedy=remedy)
        records.append(_action(infra, node, kind, name, 0, "\n".join(files), "", began))
        return TransferResult(node.name, node.group_name, files, time.monotonic() - started)

    return await _fan_out(store, infra, identity, options, nodes, one, records)


def _transfer_error(exc: BaseException, kind: str, what: str) -> str:
    """One line that names the path: errno text alone ("Is a directory") leaves the user guessing which."""
    if isinstance(exc, CloudherdError):
        return Exception.__str__(exc)
    if isinstance(exc, OSError) and exc.filename:  # a local file: ours to name
        return f"{kind} {what}: {exc.strerror or exc}: {exc.filename}"
    reason = getattr(exc, "reason", None)  # asyncssh.SFTPError carries its text here (a remote path)
    return f"{kind} {what}: {reason or exc or exc.__class__.__name__}"


def _check_alive(infra: Infrastructure) -> None:
    if infra.state == InfraState.DESTROYED:
        raise UsageError(f"{infra.name} ({infra.id}) is destroyed: it has no nodes to work on")
