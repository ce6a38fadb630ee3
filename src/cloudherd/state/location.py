"""Where the state is (its URL) and which schema it must have (the newest migration), without SQLAlchemy.

``HEAD_REVISION`` is checked against Alembic's own head by the tests.  Knowing it lets an up-to-date database
skip importing Alembic (:func:`cloudherd.state.db.migrate`), and lets a read-only command read it without
SQLAlchemy (:mod:`cloudherd.state.reader`), or else leave it to the store, which migrates it first."""

from __future__ import annotations

from cloudherd.paths import data_dir
from cloudherd.settings import current

HEAD_REVISION = "0015"


def database_url() -> str:
    """``CLOUDHERD_DB``, else the SQLite file in the data folder."""
    return current().db or f"sqlite:///{data_dir() / 'state.db'}"
