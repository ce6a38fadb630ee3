"""Health checks of a node, as its group's ``health:`` says: SSH banner, TCP ports, URLs, a command.

Why the SSH banner by default and not a login: a login costs the node a process and both ends a key
exchange on every check of every node; the banner says the machine is up and its SSH daemon answers,
which is what a fleet of SSH-deployed nodes needs first.  A ``command`` check, when asked for, runs
over the pooled connection, so it costs one login per pass at most.

A check answers what it saw in a line, which the node keeps (``last_check``) and events quote.

Each probe has one deadline for the whole of it (``health.timeout``): connecting, the handshake, the answer.
Per-read timeouts alone let an endpoint that trickles a byte a second hold a probe, and its pass, for as long
as it likes; past the deadline a probe is a failed check ("no answer within 5s").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudherd.errors import CloudherdError

if TYPE_CHECKING:
    from cloudherd.remote.pool import ConnectionPool
    from cloudherd.remote.ssh import Target
    from cloudherd.spec.model import Health


@dataclass(frozen=True)
class CheckResult:
    """A node's checks this pass: healthy when every probe passed; ``detail`` names the first that did not."""

    healthy: bool
    detail: str


async def _tcp(address: str, port: int, timeout: float, banner: bool) -> str | None:
    """None when ``address:port`` accepts (and, with ``banner``, says ``SSH-…``); else what went wrong."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except (OSError, TimeoutError) as exc:
        return f"connect {address}:{port}: {_why(exc)}"
    try:
        if banner:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line.startswith(b"SSH-"):
                return f"{address}:{port} answered {line[:40]!r}, not an SSH banner"
        return None
    except (OSError, TimeoutError) as exc:
        return f"ssh banner {address}:{port}: {_why(exc)}"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def answers_ssh(target: Target, timeout: float = 3.0) -> bool:
    """Whether a node's SSH daemon answers at all (a banner), before waiting on it for a teardown."""
    probe = _tcp(target.address, target.port, timeout, banner=True)
    return await _within(probe, timeout, "ssh") is None


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__


async def _within(probe: Awaitable[str | None], timeout: float, what: str) -> str | None:
    """``probe``'s answer, or a failure naming ``what`` once ``timeout`` seconds have passed in all."""
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            return await probe
    except TimeoutError:
        if not deadline.expired():
            raise  # the probe's own, not the deadline: not ours to word
        return f"{what}: no answer within {timeout:g}s"


async def _url(url: str, timeout: float) -> str | None:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return f"GET {url}: {exc.__class__.__name__}: {exc}"[:300]
    if 200 <= response.status_code < 400:
        return None
    return f"GET {url}: HTTP {response.status_code}"


async def _command(pool: ConnectionPool, target: Target, command_line: str, timeout: float) -> str | None:
    """None when the command exits 0 on the node (over the pooled connection); else what went wrong."""
    try:
        result = await pool.run(target, command_line, timeout=timeout)
    except (CloudherdError, TimeoutError) as exc:
        return f"command: {Exception.__str__(exc) or 'no answer in time'}"
    if result.exit_code != 0:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
        return f"command exited {result.exit_code}: {tail[0][:200]}"
    return None


async def check(node_view: Mapping[str, Any], target: Target, health: Health, pool: ConnectionPool | None,
                urls: Sequence[str], command_line: str | None) -> CheckResult:
    """Run the node's probes (``urls`` already rendered, ``command_line`` ready to send) and say how it went."""
    address = str(node_view.get("address") or "")
    if not address:
        return CheckResult(False, "no address")
    timeout = health.timeout
    probes: list[Any] = []
    if health.ssh:
        port = int(node_view.get("port") or 22)
        probes.append(_within(_tcp(address, port, timeout, banner=True), timeout, f"ssh {address}:{port}"))
    probes += [_within(_tcp(address, port, timeout, banner=False), timeout, f"connect {address}:{port}")
               for port in health.ports]
    probes += [_within(_url(url, timeout), timeout, f"GET {url}"[:200]) for url in urls]
    failures = [f for f in await asyncio.gather(*probes) if f]
    if not failures and command_line is not None and pool is not None:
        failure = await _within(_command(pool, target, command_line, timeout), timeout, "command")
        if failure:
            failures.append(failure)
    if failures:
        return CheckResult(False, failures[0])
    names = (["ssh"] if health.ssh else []) + [f"port {p}" for p in health.ports] + \
        (["urls"] if urls else []) + (["command"] if command_line else [])
    return CheckResult(True, f"ok ({', '.join(names) or 'no checks'})")
