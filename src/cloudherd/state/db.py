"""Opening the state database: SQLite in the data folder by default, any SQLAlchemy URL via
``CLOUDHERD_DB``; Alembic migrations are applied on first use (and after an upgrade)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cloudherd.errors import StateError
from cloudherd.paths import PRIVATE_FILE, create_private, tighten
from cloudherd.state.location import HEAD_REVISION, database_url

__all__ = ["HEAD_REVISION", "database_url", "migrate", "open_engine"]

MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL is crash-safe for the process (a kill -9 loses no committed transaction: the WAL is
    # in the OS's hands); only a power cut may roll back the last commits, and never corrupts the file.
    # FULL would fsync every commit (~3 ms here), which every request and journal step paid.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def open_engine(url: str | None = None) -> Engine:
    """An engine on an up-to-date schema; a broken URL or database is a one-line StateError."""
    url = url or database_url()
    try:
        engine = create_engine(url, future=True)
        if engine.dialect.name == "sqlite":
            _private_sqlite_file(engine.url.database)
            event.listen(engine, "connect", _sqlite_pragmas)
        migrate(engine)
    except SQLAlchemyError as exc:
        raise StateError(f"state database {_safe(url)}: {exc.__class__.__name__}: {_first_line(exc)}") from None
    return engine


def _private_sqlite_file(database: str | None) -> None:
    """The SQLite file made 0600 before SQLite first opens it (an older, looser one is tightened).

    SQLite gives its -wal and -shm files the main file's mode, so they are private too.  A file that
    cannot be made here (no folder) is left for SQLite to report in its own words.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    with contextlib.suppress(OSError):
        create_private(path)
        for suffix in ("-wal", "-shm", "-journal"):
            tighten(path.with_name(path.name + suffix), PRIVATE_FILE)


def _current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (a no-op, without importing Alembic, when it is).

    Two commands started together on a new database would both migrate it; one waits for the other
    (a file lock beside a SQLite file, an advisory lock on PostgreSQL) and then finds nothing to do.
    """
    if _current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command

    cfg = _alembic_config()
    with _migration_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7366027416)"))  # 'cloudherd' migrations
        elif conn.dialect.name == "sqlite":
            # Python's sqlite3 runs a CREATE TABLE outside any transaction (it opens one before DML only): a
            # command killed between two of them left a half schema that no later command could migrate.  One
            # transaction from here: the whole migration commits, or nothing of it.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        if _current_revision(engine) == HEAD_REVISION:
            return
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    try:
        handle = open(f"{database}.migrate-lock", "a")  # noqa: SIM115 - held across the yield below
    except OSError as exc:
        raise StateError(f"state database {database}: cannot be created ({exc.strerror})") from None
    with handle:
        os.chmod(handle.name, 0o600)
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def reader_factory(engine: Engine) -> sessionmaker[Session] | None:
    """Sessions whose statements autocommit, for reads, where that saves round trips (PostgreSQL: no BEGIN
    and no ROLLBACK around a SELECT); None where it would not (SQLite is in-process, and its transactions
    give a multi-statement read one snapshot)."""
    if engine.dialect.name != "postgresql":
        return None
    return sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)


def _safe(url: str) -> str:
    """The URL with any password masked, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else exc.__class__.__name__
