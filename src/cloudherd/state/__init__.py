"""State: SQLAlchemy 2 models, Alembic migrations and a small repository API."""

from cloudherd.state.db import database_url, open_engine
from cloudherd.state.repo import Store

__all__ = ["Store", "database_url", "open_engine"]
