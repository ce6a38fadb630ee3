"""A group's suspended processes (:class:`cloudherd.lifecycle.Process`), as the engine asks about them.

Suspensions live on the group's state row (``groups.suspended``, process → why), written by the API and read
here only: the manager's pass leaves a suspended process out for that group, and the diff leaves out the
launches and terminations it may not make.  A value the enum does not know (written by a newer version) is
passed over, not an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from cloudherd.lifecycle import Process

KNOWN = frozenset(p.value for p in Process)


class GroupLike(Protocol):
    name: str
    suspended: dict[str, Any] | None


def suspended(row: GroupLike | None) -> frozenset[Process]:
    """The processes suspended for a group (its state row; none for a group not made yet)."""
    if row is None or not row.suspended:
        return frozenset()
    return frozenset(Process(p) for p in row.suspended if p in KNOWN)


def held_groups(rows: Iterable[GroupLike], process: Process) -> frozenset[str]:
    """The names of the groups that have ``process`` suspended."""
    return frozenset(r.name for r in rows if process in suspended(r))


def parse(names: Iterable[str]) -> list[Process]:
    """Process names as a user gives them (cloudherd's or AWS's spelling); every one when none is given.
    A name neither knows is a :class:`~cloudherd.errors.UsageError` listing the names."""
    from cloudherd.errors import UsageError
    from cloudherd.lifecycle import AWS_PROCESS_NAMES

    given = list(names)
    if not given:
        return list(Process)
    chosen = []
    for name in given:
        process = AWS_PROCESS_NAMES.get(name) or (Process(name) if name in KNOWN else None)
        if process is None:
            raise UsageError(f"no process {name!r} (processes: {', '.join(p.value for p in Process)})")
        chosen.append(process)
    return list(dict.fromkeys(chosen))
