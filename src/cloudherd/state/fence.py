"""Fenced writes: while work holds a lease, each transaction that writes the state checks, inside itself, that
the lease is still that work's own and has not lapsed (by the database's clock: :mod:`cloudherd.state.clock`).

Why in the transaction and not before it: a check made before a write leaves a gap in which the holder may be
paused (SIGSTOP, a long GC, a laptop lid) and the lease taken over; the write would then land on state that
another holder now owns.  Here the check is the transaction's first statement: on PostgreSQL it locks the lease
row (``FOR SHARE``), so a taker (``FOR UPDATE SKIP LOCKED``) cannot move the lease until the write commits; on
SQLite (WAL, one writer) a takeover committed after the check makes this transaction's write fail instead.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from cloudherd.errors import FencedOut
from cloudherd.state import clock
from cloudherd.state.models import Lease

_held: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("cloudherd_fence", default=None)
_CHECKED = "cloudherd_fence_checked"


@contextlib.contextmanager
def fenced(scope: str, owner: str) -> Iterator[None]:
    """Writes made in this context (this task and the threads it starts) require ``scope`` held by ``owner``."""
    token = _held.set((scope, owner))
    try:
        yield
    finally:
        _held.reset(token)


def install(factory: sessionmaker[Session]) -> None:
    """Make every session of ``factory`` check the fence before its first write of each transaction."""
    event.listen(factory, "do_orm_execute", _on_execute)
    event.listen(factory, "before_flush", _on_flush)
    event.listen(factory, "after_transaction_end", _on_end)


def _on_execute(state: ORMExecuteState) -> None:
    if state.is_select or (state.bind_mapper is not None and state.bind_mapper.class_ is Lease):
        return
    _check(state.session)


def _on_flush(session: Session, _context: Any, _instances: Any) -> None:
    changed = [*session.new, *session.dirty, *session.deleted]
    if any(not isinstance(obj, Lease) for obj in changed):
        _check(session)


def _on_end(session: Session, _transaction: Any) -> None:
    session.info.pop(_CHECKED, None)


def _check(session: Session) -> None:
    held = _held.get()
    if held is None or session.info.get(_CHECKED):
        return
    scope, owner = held
    table = Lease.__table__
    connection = session.connection()
    lapsed = clock.passed(connection.dialect.name, table.c.expires_at)  # by the database's clock, not ours
    row = connection.execute(
        select(table.c.owner, lapsed.label("lapsed")).where(table.c.scope == scope).with_for_update(read=True)
    ).first()
    if row is None or row.owner != owner or row.lapsed:
        why = "it lapsed" if row is not None and row.owner == owner else "another holder took it"
        raise FencedOut(f"{scope.partition(':')[2]}: this process lost its lease ({why}); stopping before "
                        "acting on it")
    session.info[_CHECKED] = True
