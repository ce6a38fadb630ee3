"""The client's commands on the fleet: a shell command on the chosen nodes, files to and from them, and the
OpenSSH command line that logs in to one."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from cloudherd.api import views
from cloudherd.api.client_core import PathLike, Selectable, Tags, _check_limits, _key_body
from cloudherd.api.client_queries import Queries
from cloudherd.api.types import ExecResult, TransferResult
from cloudherd.errors import UsageError

if TYPE_CHECKING:
    from cloudherd.engine.fleet import LineSink


class FleetCommands(Queries):
    """What :class:`~cloudherd.api.client.Client` runs on the nodes."""

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
        from cloudherd.engine.fleet import push

        sources = [src] if isinstance(src, str | os.PathLike) else list(src)
        return await self._transfer(push, ref, sources, dst, (group, node, tags), timeout, concurrency,
                                    accept_new_host_key)

    async def pull(self, ref: str, src: str | Sequence[str], dst: PathLike, *, group: Selectable = None,
                   node: Selectable = None, tags: Tags = None, timeout: float = 30.0,
                   concurrency: int | None = None, accept_new_host_key: Sequence[str] = ()) -> list[TransferResult]:
        """Copy what ``src`` (globs) matches on each chosen node into ``dst/<node>/``."""
        from cloudherd.engine.fleet import pull

        patterns = [src] if isinstance(src, str) else list(src)
        return await self._transfer(pull, ref, patterns, dst, (group, node, tags), timeout, concurrency,
                                    accept_new_host_key)

    async def _transfer(self, move: Callable[..., Awaitable[list[Any]]], ref: str, paths: list[Any], dst: Any,
                        chosen: tuple[Selectable, Selectable, Tags], timeout: float, concurrency: int | None,
                        accept_new_host_key: Sequence[str]) -> list[TransferResult]:
        """``push`` or ``pull`` of ``paths`` to or from the chosen nodes (group, node, tags), as results."""
        from cloudherd.engine.fleet import FleetOptions, Selector

        _check_limits(timeout=timeout, concurrency=concurrency)
        infra = self.store.resolve(ref)
        options = FleetOptions(connect_timeout=timeout, handshakes=concurrency, accept_new_host_key=accept_new_host_key)
        results = await move(self.store, infra, paths, dst, selector=Selector.of(*chosen), options=options)
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
