"""Why an event happened: the operation it belongs to, and the earlier event it follows from.

An operation (an ``up``, a manager's pass, a request to the server) is opened with :func:`operation` and names
its origin ("manager pass (fence 3, pid 812)", "cloudherd up").  Inside it, :func:`because` says which event the
next ones follow from: the health event that failed a node is the cause of its retirement, the retirement the
cause of the replacement.  :meth:`Store.add_event` reads both from here, so an event written anywhere in the
operation carries them without every caller passing them down.

A pass decides per group (a policy scales *web*, a batch of a rollout replaces *db*): :func:`note` keeps the
event that decided for a group, and the nodes made for that group later in the pass follow from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

ORIGIN_MAX = 200  # characters of an origin kept (the events' column)


@dataclass
class Operation:
    """One operation's origin and what it decided per group (event ids)."""

    origin: str
    decided: dict[str, tuple[int, str]] = field(default_factory=dict)  # group → (event id, reason)


_operation: ContextVar[Operation | None] = ContextVar("cloudherd_operation", default=None)
_because: ContextVar[int | None] = ContextVar("cloudherd_because", default=None)


@contextmanager
def operation(origin: str) -> Iterator[Operation]:
    """Events written inside happened in ``origin`` (the innermost operation names it: a pass that a command
    runs is still the command's only when the pass opens none of its own)."""
    token = _operation.set(Operation(origin[:ORIGIN_MAX]))
    cleared = _because.set(None)
    try:
        yield _operation.get()  # type: ignore[misc]
    finally:
        _because.reset(cleared)
        _operation.reset(token)


def begin(origin: str) -> None:
    """The whole process is one operation (a CLI command): its events happened in ``origin`` unless an inner
    operation (a manager's pass) names its own."""
    _operation.set(Operation(origin[:ORIGIN_MAX]))


@contextmanager
def because(event_id: int | None) -> Iterator[None]:
    """Events written inside follow from ``event_id`` (None: from the operation itself)."""
    token = _because.set(event_id)
    try:
        yield
    finally:
        _because.reset(token)


def origin() -> str | None:
    current = _operation.get()
    return current.origin if current is not None else None


def parent() -> int | None:
    """The event the next event follows from, if one was said."""
    return _because.get()


def note(group: str, event_id: int, reason: str) -> None:
    """``event_id`` decided what happens to ``group`` in this operation, for ``reason`` (``scale``, ``heal``,
    ``rollout``…, what the nodes made for it are counted as).  The newest decision wins."""
    current = _operation.get()
    if current is not None:
        current.decided[group] = (event_id, reason)


def decided(group: str) -> tuple[int, str] | None:
    """The event that decided what happens to ``group`` in this operation and its reason, if one did."""
    current = _operation.get()
    return current.decided.get(group) if current is not None else None
