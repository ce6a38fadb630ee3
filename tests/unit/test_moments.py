"""Moments are aware UTC everywhere: what the state gives back (SQLite keeps no zone), the database's clock,
and the times the Auto Scaling API writes with a Z."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from cloudherd.state.db import open_engine
from cloudherd.state.repo import Store


def test_sqlite_gives_back_aware_utc_moments(tmp_path: Path) -> None:
    store = Store(open_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    user = store.ensure_user("ada", "ssh-ed25519 AAAA", str(tmp_path / "key"))
    before = datetime.now(UTC)
    made = store.create_infrastructure(name="web", owner_id=user.id, spec_path="x", spec_text="", ssh_key_path="k")
    read = store.infrastructure(made.id)
    assert read.created_at.tzinfo is not None and read.created_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= read.created_at <= datetime.now(UTC)  # comparable with aware now
    assert store.database_time().utcoffset() == timedelta(0)


def test_a_moment_elsewhere_is_written_in_utc_with_its_z() -> None:
    from cloudherd.server.autoscaling import _x

    pacific = datetime(2026, 1, 1, 12, 0, 0, 250000, tzinfo=timezone(timedelta(hours=-8)))
    assert _x("StartTime", pacific) == "<StartTime>2026-01-01T20:00:00.250Z</StartTime>"
