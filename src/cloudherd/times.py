"""Moments: cloudherd keeps and compares aware UTC datetimes only, made here."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A moment in UTC, aware; a naive one is taken to be UTC already (as every stored one was written)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
