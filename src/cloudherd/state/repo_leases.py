"""Leases: who may work on an infrastructure now (``cloudherd:infra:ID`` and the like), timed by the database's
clock so that managers on several machines agree.  Mixed into :class:`cloudherd.state.repo.Store`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloudherd.state import clock
from cloudherd.state.models import Lease


def rowcount(result: object) -> int:
    """Rows an UPDATE matched (a CursorResult's count; the typed Result does not declare it)."""
    return int(getattr(result, "rowcount", 0))


class LeaseState:
    """The lease methods; ``session``, ``reading``, ``engine`` and ``_dialect`` come from the Store."""

    engine: Engine
    _dialect: str

    def session(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    def reading(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    def leases_under(self, prefix: str, *, live: bool = False) -> list[Lease]:
        """Leases whose scope starts with ``prefix`` (compared as text, not as a LIKE pattern); with ``live``, only
        those that have not lapsed by the database's clock."""
        query = select(Lease).where(func.substr(Lease.scope, 1, len(prefix)) == prefix)
        if live:
            query = query.where(~clock.passed(self._dialect, Lease.expires_at))
        with self.reading() as s:
            return list(s.scalars(query))

    def lease(self, scope: str, *, live: bool = False) -> Lease | None:
        """The lease of ``scope``; with ``live``, None too when it has lapsed by the database's clock."""
        with self.reading() as s:
            if not live:
                return s.get(Lease, scope)
            return s.scalar(select(Lease).where(Lease.scope == scope, ~clock.passed(self._dialect, Lease.expires_at)))

    def database_time(self) -> datetime:
        """The database's clock now (UTC), the one leases are timed by."""
        with self.reading() as s:
            value = s.scalar(select(clock.now(self._dialect)))
        assert isinstance(value, datetime)
        return value

    def take_lease(self, scope: str, owner: str, operation: str, holder: dict[str, Any], ttl: float, *,
                   steal_from: str | None = None) -> tuple[bool, Lease | None]:
        """Take ``scope`` if it is free, expired, or held by ``steal_from`` (a holder known to be gone).

        Returns whether it was taken and the lease as it stands.  Every path is one conditional
        statement, so two takers racing cannot both win, on SQLite or PostgreSQL.  Whether it expired, and
        the times written, are the database's (:mod:`cloudherd.state.clock`), never this process's clock.
        """
        dialect = self._dialect
        lapsed = clock.passed(dialect, Lease.expires_at)
        with self.session() as s:
            try:
                with s.begin():
                    # a row another taker (or a holder's fenced write) has locked is skipped, not waited for
                    found = s.execute(select(Lease, lapsed.label("lapsed")).where(Lease.scope == scope)
                                      .with_for_update(skip_locked=True, of=Lease)).first()
                    current = found[0] if found is not None else None
                    if current is None and s.get(Lease, scope) is not None:
                        return False, self.lease(scope)
                    if current is None:
                        made = self._insert_lease(s, scope=scope, owner=owner, operation=operation, holder=holder,
                                                  fence=1, acquired_at=clock.now(dialect),
                                                  expires_at=clock.after(dialect, ttl))
                    elif (found is not None and found.lapsed) or current.owner == steal_from:
                        # the condition again in the statement: a renewal that landed since the read wins
                        may_take = lapsed if steal_from is None else or_(lapsed, Lease.owner == steal_from)
                        taken = s.execute(
                            update(Lease).where(Lease.scope == scope, Lease.owner == current.owner, may_take)
                            .values(owner=owner, operation=operation, holder=holder, fence=Lease.fence + 1,
                                    acquired_at=clock.now(dialect), expires_at=clock.after(dialect, ttl))
                            .execution_options(synchronize_session=False)
                        )
                        if rowcount(taken) != 1:
                            return False, self.lease(scope)
                    else:
                        return False, current
            except IntegrityError:  # another taker inserted first
                return False, self.lease(scope)
        if current is None:
            return True, made  # inserted: it stands as written (no second read)
        lease = self.lease(scope)
        return lease is not None and lease.owner == owner, lease

    def _insert_lease(self, s: Session, **values: Any) -> Lease:
        """Insert a lease row (its times SQL expressions: the database's clock) and return it as written."""
        statement = insert(Lease).values(**values)
        if self.engine.dialect.insert_returning:
            return s.scalars(statement.returning(Lease)).one()
        s.execute(statement)  # SQLite before 3.35: no RETURNING; read back in the same transaction
        return s.get_one(Lease, values["scope"], populate_existing=True)

    def renew_lease(self, scope: str, owner: str, ttl: float) -> bool:
        """Push the lease's expiry on (``ttl`` seconds from now by the database's clock); False when it is no
        longer ours (it lapsed and was taken)."""
        with self.session() as s, s.begin():
            result = s.execute(
                update(Lease).where(Lease.scope == scope, Lease.owner == owner)
                .values(expires_at=clock.after(self._dialect, ttl)).execution_options(synchronize_session=False)
            )
            return rowcount(result) == 1

    def release_lease(self, scope: str, owner: str) -> None:
        with self.session() as s, s.begin():
            s.execute(delete(Lease).where(Lease.scope == scope, Lease.owner == owner))
