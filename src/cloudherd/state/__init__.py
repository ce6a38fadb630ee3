"""State: SQLAlchemy 2 models, Alembic migrations and a small repository API (``state.repo.Store``).

The package imports nothing itself: commands that never open the database do not pay for SQLAlchemy.
"""
