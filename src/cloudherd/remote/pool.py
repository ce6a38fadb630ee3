"""One SSH connection per node, shared by every step of a command (upload, each script, checks).

Why a pool: a handshake costs far more than a command on an open connection, and a fleet command
that opened one connection per step would pay it many times over.  New handshakes are bounded (so a
thousand nodes do not storm the machine or the network); commands on open connections are not.
A connection found dropped when a step starts is re-opened once.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import time
from collections.abc import Sequence
from pathlib import Path

import asyncssh

from cloudherd.observe import tracing
from cloudherd.remote.ssh import (
    LineCallback,
    RunResult,
    SeenHostKey,
    SessionNotStartedError,
    Target,
    UnreachableError,
    connect,
    run,
)
from cloudherd.settings import current

ENV_CONCURRENCY = "CLOUDHERD_SSH_CONCURRENCY"


def default_handshakes() -> int:
    """Handshakes in flight: ``CLOUDHERD_SSH_CONCURRENCY``, else 64 per core (key exchange is CPU work)."""
    value = (current().ssh_concurrency or "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return 64 * (os.cpu_count() or 1)


_DROPPED = (asyncssh.ConnectionLost, asyncssh.ChannelOpenError, BrokenPipeError, ConnectionResetError)


class ConnectionPool:
    """SSH connections by node name for one command; close it (or use ``async with``) when done.

    ``seen_host_keys`` collects, per node, the keys presented on first contact or re-pin, for the
    caller to record in one batch; ``opened`` counts handshakes made.
    """

    def __init__(
        self,
        key: asyncssh.SSHKey,
        *,
        handshakes: int | None = None,
        connect_timeout: float = 60.0,
        keepalive: float = 15.0,
    ) -> None:
        self._key = key
        self._gate = asyncio.Semaphore(max(1, handshakes or default_handshakes()))
        self._timeout = connect_timeout
        self._keepalive = keepalive
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}
        self._opening: dict[str, asyncio.Future[asyncssh.SSHClientConnection]] = {}
        self.seen_host_keys: dict[str, tuple[Target, SeenHostKey]] = {}
        self.opened = 0
        self._used: dict[str, float] = {}  # when each connection last served a step (for close_idle)

    async def __aenter__(self) -> ConnectionPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connection(self, target: Target, *, timeout: float | None = None) -> asyncssh.SSHClientConnection:
        """The node's open connection, made on first use (callers asking at once share one handshake)."""
        self._used[target.name] = time.monotonic()
        conn = self._conns.get(target.name)
        if conn is not None and not conn.is_closed():
            return conn
        pending = self._opening.get(target.name)
        if pending is None:
            pending = asyncio.ensure_future(self._open(target, timeout))
            self._opening[target.name] = pending
            pending.add_done_callback(lambda _f: self._opening.pop(target.name, None))
        return await asyncio.shield(pending)

    async def _open(self, target: Target, timeout: float | None) -> asyncssh.SSHClientConnection:
        with tracing.span("ssh.connect", node=target.name, address=target.address, port=target.port):
            conn, seen = await connect(
                target, target.key or self._key, timeout=timeout or self._timeout, gate=self._gate,
                keepalive=self._keepalive,
            )
        self.opened += 1
        if seen is not None:
            self.seen_host_keys[target.name] = (target, seen)
            # later connections to this node in this pool expect the key just seen
        self._conns[target.name] = conn
        return conn

    async def run(
        self,
        target: Target,
        command: str,
        *,
        input: str | None = None,
        on_line: LineCallback | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """Run ``command`` on the node; if its connection turns out dropped before the command starts,
        reconnect once.  A connection lost mid-command is not retried (the command may have acted).

        A span ``ssh.script`` (a group's script) or ``ssh.command`` (anything else) covers it."""
        step = getattr(command, "step", "command")
        with tracing.span(f"ssh.{step}", node=target.name, script=getattr(command, "script", None)) as span:
            result = await self._run(target, command, input=input, on_line=on_line, timeout=timeout)
            if span is not None:
                span.set_attribute("cloudherd.exit_code", -1 if result.exit_code is None else result.exit_code)
            return result

    async def _run(self, target: Target, command: str, *, input: str | None, on_line: LineCallback | None,
                   timeout: float | None) -> RunResult:
        conn = await self.connection(target)
        try:
            try:
                return await run(conn, command, input=input, on_line=on_line, timeout=timeout)
            except SessionNotStartedError:
                self._forget(target.name, conn)
                conn = await self.connection(target)
                return await run(conn, command, input=input, on_line=on_line, timeout=timeout)
        except (*_DROPPED, SessionNotStartedError) as exc:
            raise UnreachableError(f"node {target.name}: connection lost ({exc})") from None

    async def put(self, target: Target, sources: Sequence[str | os.PathLike[str]], destination: str) -> None:
        """Upload files or folders (recursively) to ``destination`` on the node, over SFTP (a span ``ssh.upload``)."""
        with tracing.span("ssh.upload", node=target.name, destination=destination):
            conn = await self.connection(target)
            remote = remote_path(target, destination)
            async with conn.start_sftp_client() as sftp:
                many = len(sources) > 1 or any(Path(s).is_dir() for s in sources)
                if many or destination.endswith("/"):
                    await sftp.makedirs(remote, exist_ok=True)
                await sftp.put([os.fspath(s) for s in sources], remote, recurse=True, preserve=True)

    async def get(self, target: Target, patterns: Sequence[str], destination: Path) -> list[str]:
        """Download what ``patterns`` (globs) match on the node into the local folder ``destination``;
        returns the remote paths that matched (none is not an error).  A span ``ssh.download``."""
        with tracing.span("ssh.download", node=target.name):
            return await self._get(target, patterns, destination)

    async def _get(self, target: Target, patterns: Sequence[str], destination: Path) -> list[str]:
        conn = await self.connection(target)
        destination.mkdir(parents=True, exist_ok=True)
        async with conn.start_sftp_client() as sftp:
            matched: list[str] = []
            for pattern in patterns:
                try:
                    found = await sftp.glob(remote_path(target, pattern))
                except asyncssh.SFTPNoSuchFile:
                    found = []
                matched.extend(p if isinstance(p, str) else p.decode() for p in found)
            if matched:
                await sftp.get(matched, destination, recurse=True, preserve=True)
            return matched

    def _forget(self, name: str, conn: asyncssh.SSHClientConnection) -> None:
        if self._conns.get(name) is conn:
            del self._conns[name]
        conn.abort()

    def forget_seen(self, names: Sequence[str]) -> None:
        for name in names:
            self.seen_host_keys.pop(name, None)

    async def close_idle(self, idle: float) -> int:
        """Close connections unused for ``idle`` seconds (a long-lived pool's upkeep); returns how many."""
        now = time.monotonic()
        stale = [name for name, conn in self._conns.items()
                 if conn.is_closed() or now - self._used.get(name, 0.0) >= idle]
        conns = [self._conns.pop(name) for name in stale]
        for name in stale:
            self._used.pop(name, None)
        for conn in conns:
            conn.close()
        await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)
        return len(conns)

    async def close(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()
        await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)


def remote_path(target: Target, path: str) -> str:
    """Relative remote paths land in the node's work folder when its provider names one."""
    if path.startswith(("/", "~")) or not target.workdir:
        return path
    return posixpath.join(target.workdir, path)
