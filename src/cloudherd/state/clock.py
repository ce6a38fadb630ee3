"""The database's clock, for leases: when a lease was taken, until when it lives, whether it has lapsed.

Why the database's and not the process's: every holder and taker of a lease asks the same clock, so a
process whose clock is an hour ahead (or one stepped back by NTP) neither takes a live lease nor keeps a dead
one.  Each time is an SQL expression, evaluated by the database inside the statement that uses it:

* PostgreSQL: ``clock_timestamp()``, the server's time at that moment.  Not ``now()``: that is when the
  transaction began, and a renewal that waited on a row lock (a holder's fenced write keeps the lease row
  ``FOR SHARE`` until it commits) would then write an expiry that much shorter than its TTL.
* SQLite: ``strftime('%Y-%m-%d %H:%M:%f', 'now')``, milliseconds.  Not ``CURRENT_TIMESTAMP`` (what
  SQLAlchemy's ``func.now()`` becomes there): whole seconds, truncated, so a lease could lapse up to a second
  early (with a TTL of one second, at once).  Comparisons go through ``julianday()``, which reads the stored
  text whatever its form (SQLAlchemy's microseconds, these milliseconds).  SQLite runs inside the process, so
  its clock is the host's: the processes sharing a SQLite file share a host, and so a clock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Interval, func, literal
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.elements import ColumnElement

from cloudherd.state.models import UTCDateTime

_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%f"


def now(dialect: str) -> ColumnElement[Any]:
    """The database's time now."""
    if dialect == "sqlite":
        return func.strftime(_SQLITE_FORMAT, "now", type_=UTCDateTime())
    return func.clock_timestamp(type_=UTCDateTime())


def after(dialect: str, seconds: float) -> ColumnElement[Any]:
    """The database's time ``seconds`` from now (before it, when negative)."""
    if dialect == "sqlite":
        return func.strftime(_SQLITE_FORMAT, "now", f"{seconds:+.3f} seconds", type_=UTCDateTime())
    return func.clock_timestamp(type_=UTCDateTime()) + literal(timedelta(seconds=seconds), Interval())


def passed(dialect: str, moment: ColumnElement[Any] | QueryableAttribute[Any]) -> ColumnElement[bool]:
    """Whether ``moment`` (a time column) is now or earlier, by the database's clock."""
    if dialect == "sqlite":
        return func.julianday(moment) <= func.julianday("now")
    return moment <= func.clock_timestamp()
