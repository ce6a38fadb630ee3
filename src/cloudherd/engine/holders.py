"""Who holds a lease, and whether that holder still runs: what a reader of the leases needs, without the means to
take one (:mod:`cloudherd.engine.locks`).  ``status`` asks :func:`is_managed` through the lean reader, so this
module imports neither the store nor SQLAlchemy."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cloudherd.state.models import Lease
    from cloudherd.state.reader import Reader
    from cloudherd.state.records import LeaseRecord
    from cloudherd.state.repo import Store


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot): with the pid, a process's identity."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def holder_gone(lease: Lease | LeaseRecord) -> bool:
    """True when the lease's holder was a process on this host that no longer runs."""
    holder = lease.holder or {}
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    start = process_start(holder["pid"])
    return start is None or (holder.get("start") is not None and start != holder["start"])


def describe(lease: Lease | LeaseRecord) -> str:
    holder = lease.holder or {}
    since = lease.acquired_at.strftime("%H:%M:%S")
    return (f"{lease.operation} by {holder.get('user', '?')} (pid {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')}, since {since} UTC)")


def manager_scope(name: str) -> str:
    """The lease a manager holds while it keeps the infrastructure ``name`` alive."""
    return f"manager:{name}"


def is_managed(reads: Store | Reader, name: str) -> bool:
    """Whether a live manager keeps ``name`` (its lease is held, not lapsed, its holder alive).

    Read only: a probe that took the lease for a moment would make a manager starting just then believe another
    one holds it."""
    lease = reads.lease(manager_scope(name), live=True)  # lapsed or not by the database's clock
    return lease is not None and not holder_gone(lease)
