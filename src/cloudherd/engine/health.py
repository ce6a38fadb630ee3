"""Health checks of a node, as its group's ``health:`` says: SSH banner, TCP ports, URLs, a command.

Why the SSH banner by default and not a login: a login costs the node a process and both ends a key
exchange on every check of every node; the banner says the machine is up and its SSH daemon answers,
which is what a fleet of SSH-deployed nodes needs first.  A ``command`` check, when asked for, runs
over the pooled connection, so it costs one login per pass at most.

A check answers what it saw in a line, which the node keeps (``last_check``) and events quote.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
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
    return await _tcp(target.address, target.port, timeout, banner=True) is None


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__


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


async def check(node_view: Mapping[str, Any], target: Target, health: Health, pool: ConnectionPool | None,
                urls: Sequence[str], command_line: str | None) -> CheckResult:
    """Run the node's probes (``urls`` already rendered, ``command_line`` ready to send) and say how it went."""
    address = str(node_view.get("address") or "")
    if not address:
        return CheckResult(False, "no address")
    timeout = health.timeout
    probes: list[Any] = []
    if health.ssh:
        probes.append(_tcp(address, int(node_view.get("port") or 22), timeout, banner=True))
    probes += [_tcp(address, port, timeout, banner=False) for port in health.ports]
    probes += [_url(url, timeout) for url in urls]
    failures = [f for f in await asyncio.gather(*probes) if f]
    if not failures and command_line is not None and pool is not None:
        try:
            result = await pool.run(target, command_line, timeout=timeout)
        except (CloudherdError, TimeoutError) as exc:
            failures.append(f"command: {Exception.__str__(exc) or 'no answer in time'}")
        else:
            if result.exit_code != 0:
                tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
                failures.append(f"command exited {result.exit_code}: {tail[0][:200]}")
    if failures:
        return CheckResult(False, failures[0])
    names = (["ssh"] if health.ssh else []) + [f"port {p}" for p in health.ports] + \
        (["urls"] if urls else []) + (["command"] if command_line else [])
    return CheckResult(True, f"ok ({', '.join(names) or 'no checks'})")
