"""One mutating operation per infrastructure at a time: a lease in the state database.

Why a lease and not a file lock: the state may be shared (PostgreSQL, several machines), and a holder
may die without a word.  The lease is a row with an expiry that its holder renews while it works; a
holder that was killed lets it lapse.  On this host we need not wait for the lapse: the row names the
holder's process (pid and start time), and a process that is gone is taken over at once.  The same
row becomes the manager's lease when several managers share a database; ``fence`` then tells a holder
that woke up late that the lease has moved on.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import getpass
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from cloudherd.engine.holders import describe, holder_gone, is_managed, manager_scope, process_start
from cloudherd.errors import BusyError, FencedOut
from cloudherd.settings import current
from cloudherd.state.fence import fenced
from cloudherd.state.repo import Store

__all__ = ["describe", "holder_gone", "is_managed", "manager_scope"]  # where callers have taken them from

DEFAULT_TTL = 15.0  # seconds a lease lives without renewal (CLOUDHERD_LEASE_TTL overrides it)
DEFAULT_WAIT = 600.0  # seconds a second operation waits for the first before it gives up


def lease_ttl() -> float:
    """Seconds a lease lives without renewal: ``CLOUDHERD_LEASE_TTL`` (e.g. ``5`` or ``5s``), else 15.

    Shorter means a dead holder on another machine is replaced sooner, and that a holder paused for longer
    than this loses its work; a holder renews every third of it."""
    from cloudherd.spec.durations import duration_setting

    return duration_setting("CLOUDHERD_LEASE_TTL", current().lease_ttl, DEFAULT_TTL, "15 or 15s")


def infra_scope(name: str) -> str:
    """The lease of an infrastructure name: live names are unique, so this is one infrastructure."""
    return f"infrastructure:{name}"


@dataclass
class Held:
    """A lease this process holds; ``lost`` turns true if a renewal found it taken by someone else."""

    scope: str
    owner: str
    fence: int
    lost: bool = False
    _beat: asyncio.Task[None] | None = field(default=None, repr=False)


def _holder(operation: str) -> dict[str, Any]:
    return {
        "user": getpass.getuser(), "host": socket.gethostname(), "pid": os.getpid(),
        "start": process_start(os.getpid()), "operation": operation,
        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:3])),
    }


@contextlib.asynccontextmanager
async def exclusive(store: Store, scope: str, operation: str, *, wait: float = DEFAULT_WAIT,
                    ttl: float | None = None, on_wait: Callable[[str], None] | None = None) -> AsyncIterator[Held]:
    """Hold ``scope`` for the block: wait (at most ``wait`` seconds, saying for whom) while another holds it.

    The lease is renewed every third of ``ttl`` while the block runs and released after it; every write the
    block makes to the state is fenced by it (:mod:`cloudherd.state.fence`).
    """
    ttl = lease_ttl() if ttl is None else ttl
    if wait < 0 or ttl <= 0:
        raise ValueError("wait must be ≥ 0 and ttl > 0")
    held = await acquire(store, scope, operation, wait=wait, ttl=ttl, on_wait=on_wait)
    held._beat = asyncio.create_task(_heartbeat(store, held, ttl))
    token = _current.set(held)
    try:
        with fenced(scope, held.owner):
            yield held
    finally:
        _current.reset(token)
        held._beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await held._beat
        store.release_lease(scope, held.owner)


_current: contextvars.ContextVar[Held | None] = contextvars.ContextVar("cloudherd_lease", default=None)


def check_fence(store: Store) -> None:
    """Raise FencedOut when the lease the current work holds (``exclusive``) is no longer its own: called
    before every cloud call that changes something, so that a holder that wakes up late does not act."""
    held = _current.get()
    if held is None:
        return
    lease = store.lease(held.scope)
    if held.lost or lease is None or lease.owner != held.owner:
        taker = f": {describe(lease)} holds it now" if lease is not None and lease.owner != held.owner else ""
        raise FencedOut(f"{held.scope.partition(':')[2]}: this process lost its lease{taker}; stopping before "
                        "acting on it")


async def acquire(store: Store, scope: str, operation: str, *, wait: float, ttl: float,
                  on_wait: Callable[[str], None] | None = None) -> Held:
    owner = uuid.uuid4().hex
    holder = _holder(operation)
    deadline = time.monotonic() + wait
    pause = 0.05
    told = None
    while True:
        taken, lease = store.take_lease(scope, owner, operation, holder, ttl)
        if not taken and lease is not None and holder_gone(lease):
            taken, lease = store.take_lease(scope, owner, operation, holder, ttl, steal_from=lease.owner)
        if taken and lease is not None:
            return Held(scope, owner, lease.fence)
        if lease is None:
            continue  # released between our two reads: try again at once
        if time.monotonic() >= deadline:
            waited = f"after waiting {wait:g}s" if wait else "and waiting was not asked for"
            raise BusyError(f"{scope.partition(':')[2]} is busy: {describe(lease)} is still running ({waited})")
        if on_wait is not None and told != lease.owner:
            on_wait(f"waiting for {describe(lease)} to finish with {scope.partition(':')[2]}")
            told = lease.owner
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 1.0)


async def _heartbeat(store: Store, held: Held, ttl: float) -> None:
    while True:
        await asyncio.sleep(ttl / 3)
        if not await asyncio.to_thread(store.renew_lease, held.scope, held.owner, ttl):
            held.lost = True
            return


def try_hold(store: Store, scope: str, operation: str, ttl: float | None = None) -> Held | None:
    """The lease if nobody (alive) holds it, else None at once: for work that is skipped when busy."""
    ttl = lease_ttl() if ttl is None else ttl
    owner = uuid.uuid4().hex
    holder = _holder(operation)
    taken, lease = store.take_lease(scope, owner, operation, holder, ttl)
    if not taken and lease is not None and holder_gone(lease):
        taken, lease = store.take_lease(scope, owner, operation, holder, ttl, steal_from=lease.owner)
    return Held(scope, owner, lease.fence) if taken and lease is not None else None
