"""Connections and command runs over asyncssh, with host keys always checked.

Every connection is verified: a node with a pinned host key (from its provider, or recorded on first
contact) must present that key, else :class:`HostKeyMismatchError` names the node and both
fingerprints.  A node with no pin yet is trusted on first contact and the key it presented is handed
back to be recorded.  ``known_hosts=None`` (no checking) is never used.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncssh

from cloudherd.errors import DeployError
from cloudherd.remote.envelope import stdin_for
from cloudherd.times import utcnow

LineCallback = Callable[[str, str], None]  # (stream, line)

# AES-GCM first: with AES-NI it costs both ends less CPU per packet than chacha20-poly1305 (asyncssh's
# first choice), which matters when a hundred handshakes share two cores; chacha20 stays as a fallback.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
           "aes128-ctr", "aes192-ctr", "aes256-ctr")


@dataclass(frozen=True)
class Target:
    """Where and as whom to log in to one node, and the host key pinned for it (if any)."""

    name: str
    address: str
    port: int
    user: str
    host_key: str | None = None
    node_id: str | None = None
    workdir: str | None = None  # where relative paths of push / pull land (else the login directory)
    accept_new_host_key: bool = False  # re-pin: take whatever key the node presents now
    key: asyncssh.SSHKey | None = field(default=None, compare=False, repr=False)  # the group's own (else the pool's)


@dataclass
class RunResult:
    exit_code: int | None
    stdout: str
    stderr: str
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime = field(default_factory=utcnow)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class UnreachableError(DeployError):
    """The node did not accept SSH in time."""


class HostKeyMismatchError(DeployError):
    """The node presented another host key than the one pinned for it."""


class SessionNotStartedError(DeployError):
    """The connection failed before the command could start: safe to retry on a new connection."""


@dataclass
class SeenHostKey:
    """A host key a node presented that was not pinned before (first contact or accepted re-pin)."""

    public_key: str
    fingerprint: str


def key_line(key: asyncssh.SSHKey) -> str:
    """``"ssh-ed25519 AAAA..."`` without a comment."""
    return " ".join(key.export_public_key().decode().split()[:2])


def fingerprint(public_key: str) -> str:
    try:
        return asyncssh.import_public_key(public_key).get_fingerprint()
    except (asyncssh.KeyImportError, ValueError):
        return "unreadable key"


class _VerifyingClient(asyncssh.SSHClient):
    """Asked by asyncssh about any host key that is not the pinned one; remembers what was presented."""

    def __init__(self, trust_any: bool) -> None:
        self.trust_any = trust_any
        self.presented: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.presented = key
        return self.trust_any


def _factory(client: _VerifyingClient) -> Callable[[], _VerifyingClient]:
    return lambda: client


def _trusted(target: Target) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
    """asyncssh's (trusted host keys, CA keys, revoked keys): only the pin, so its algorithm is negotiated."""
    if target.host_key and not target.accept_new_host_key:
        return [asyncssh.import_public_key(target.host_key)], [], []
    return [], [], []


async def connect(
    target: Target,
    key: asyncssh.SSHKey,
    *,
    timeout: float = 60.0,
    gate: asyncio.Semaphore | None = None,
    keepalive: float = 15.0,
) -> tuple[asyncssh.SSHClientConnection, SeenHostKey | None]:
    """Log in, retrying while the node boots; bounded by ``timeout`` seconds, then UnreachableError.

    ``gate`` bounds handshakes in flight; it is held for one attempt at a time, never across the waits
    between attempts, so a slow-booting node does not hold a slot others could use.  Returns the
    connection and, when the node had no pin (or is being re-pinned), the key it presented.
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    last = "no attempt"
    trusted = _trusted(target)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UnreachableError(
                f"node {target.name} ({target.address}:{target.port}) did not accept SSH within {timeout:g}s: {last}"
            )
        client = _VerifyingClient(trust_any=not trusted[0])
        try:
            if gate is not None:
                await gate.acquire()
            try:
                conn, _ = await asyncio.wait_for(
                    asyncssh.create_connection(
                        _factory(client), target.address, target.port, username=target.user, client_keys=[key],
                        known_hosts=trusted, agent_path=None, config=[], keepalive_interval=keepalive,
                        encryption_algs=CIPHERS,
                        keepalive_count_max=3, login_timeout=max(1.0, remaining),
                    ),
                    timeout=max(0.5, remaining),
                )
            finally:
                if gate is not None:
                    gate.release()
            seen = None
            if client.presented is not None:
                line = key_line(client.presented)
                seen = SeenHostKey(line, client.presented.get_fingerprint())
            return conn, seen
        except asyncssh.HostKeyNotVerifiable:
            raise _mismatch(target, client.presented) from None
        except asyncssh.PermissionDenied as exc:
            last = f"permission denied for user {target.user} ({exc.reason})"
        except ConnectionRefusedError:
            last = "connection refused"
        except TimeoutError:
            last = "timeout: no SSH handshake"
        except (OSError, asyncssh.Error) as exc:
            last = str(exc) or exc.__class__.__name__
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 1.0)


def _mismatch(target: Target, presented: asyncssh.SSHKey | None) -> HostKeyMismatchError:
    pinned = fingerprint(target.host_key or "")
    shown = presented.get_fingerprint() if presented is not None else "a key of another type"
    return HostKeyMismatchError(
        f"node {target.name} ({target.address}:{target.port}) presented host key {shown}, but {pinned} is "
        f"pinned for it: refusing to connect. If the node was rebuilt, accept its new key",
        remedy=("accept_new_host_key", target.name),
    )


async def run(
    conn: asyncssh.SSHClientConnection,
    command: str,
    *,
    input: str | None = None,
    on_line: LineCallback | None = None,
    timeout: float | None = None,
) -> RunResult:
    """Run ``command``; with ``on_line`` each output line is handed over as it arrives.

    A :class:`~cloudherd.remote.envelope.RemoteCommand` gets its environment on stdin, before ``input``.
    """
    started = utcnow()
    stdin = stdin_for(command, input)
    try:
        process = await conn.create_process(command, stdin=asyncssh.PIPE)
    except (asyncssh.ChannelOpenError, asyncssh.ConnectionLost, BrokenPipeError, ConnectionResetError) as exc:
        raise SessionNotStartedError(str(exc) or exc.__class__.__name__) from exc
    if on_line is None:
        stdout, stderr = await asyncio.wait_for(process.communicate(stdin), timeout=timeout)
        code = process.exit_status
        return RunResult(
            exit_code=code if code is not None else -1, stdout=_text(stdout), stderr=_text(stderr),
            started_at=started, ended_at=utcnow(),
        )
    if stdin:
        process.stdin.write(stdin)
    process.stdin.write_eof()
    chunks: dict[str, list[str]] = {"stdout": [], "stderr": []}

    async def read(stream_name: str, stream: asyncssh.SSHReader[str]) -> None:
        async for line in stream:
            if not line:  # asyncssh hands over "" at end of stream; a real empty line is "\n"
                continue
            chunks[stream_name].append(line)
            on_line(stream_name, line.rstrip("\n"))

    async def whole() -> None:
        await asyncio.gather(read("stdout", process.stdout), read("stderr", process.stderr))
        await process.wait_closed()

    await asyncio.wait_for(whole(), timeout=timeout)
    code = process.exit_status
    return RunResult(
        exit_code=code if code is not None else -1, stdout="".join(chunks["stdout"]),
        stderr="".join(chunks["stderr"]), started_at=started, ended_at=utcnow(),
    )


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)
