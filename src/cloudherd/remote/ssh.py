"""Connections and command runs over asyncssh.

Host keys are pinned: a node whose provider told us its key is checked against it; a node whose key
we do not know yet is trusted on first contact and the key is handed back to be recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncssh

from cloudherd.errors import DeployError

LineCallback = Callable[[str, str], None]  # (stream, line)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Target:
    """Where and as whom to log in to one node."""

    name: str
    address: str
    port: int
    user: str
    host_key: str | None = None


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


def _known_hosts(target: Target) -> asyncssh.SSHKnownHosts | None:
    if not target.host_key:
        return None
    host = target.address if target.port == 22 else f"[{target.address}]:{target.port}"
    return asyncssh.import_known_hosts(f"{host} {target.host_key}\n")


async def connect(target: Target, key: asyncssh.SSHKey, *, timeout: float = 60.0) -> asyncssh.SSHClientConnection:
    """Log in, retrying while the node boots; bounded by ``timeout`` seconds, then UnreachableError."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    last = "no attempt"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UnreachableError(
                f"node {target.name} ({target.address}:{target.port}) did not accept SSH within {timeout:g}s: {last}"
            )
        try:
            return await asyncio.wait_for(
                asyncssh.connect(
                    target.address, target.port, username=target.user, client_keys=[key],
                    known_hosts=_known_hosts(target), agent_path=None, config=[],
                    keepalive_interval=15, login_timeout=max(1.0, remaining),
                ),
                timeout=max(0.5, remaining),
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyMismatchError(
                f"node {target.name} ({target.address}:{target.port}) presented an unexpected host key: {exc.reason}"
            ) from None
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


async def run(
    conn: asyncssh.SSHClientConnection,
    command: str,
    *,
    input: str | None = None,
    on_line: LineCallback | None = None,
    timeout: float | None = None,
) -> RunResult:
    """Run ``command``; with ``on_line`` each output line is handed over as it arrives."""
    started = utcnow()
    if on_line is None:
        result = await conn.run(command, input=input or "", check=False, timeout=timeout)
        return RunResult(
            exit_code=result.exit_status if result.exit_status is not None else -1,
            stdout=_text(result.stdout), stderr=_text(result.stderr), started_at=started, ended_at=utcnow(),
        )
    process = await conn.create_process(command, stdin=asyncssh.PIPE)
    if input:
        process.stdin.write(input)
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
