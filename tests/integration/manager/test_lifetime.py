"""An infrastructure's time to live on real local nodes: `ttl:` in the spec counts from its making, `up --ttl`
from that up; `status` says when; the first pass after it (a manager's clock, a test's own here) brings the
infrastructure down, and an event says why."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

from helpers import cli, write_spec

from cloudherd.api import SyncClient
from cloudherd.engine.reconcile import CheckTimes, reconcile
from cloudherd.state.repo import Store
from cloudherd.times import as_utc

SPEC = "name: brief\nttl: 2h\ngroups:\n  web:\n    count: 2\n"


def pass_at(infra_id: str, hours: float) -> None:
    """One pass whose clock reads ``hours`` after the infrastructure's making."""
    store = Store()
    made = as_utc(store.infrastructure(infra_id).created_at)
    times = CheckTimes()
    times.clock = lambda: made + timedelta(hours=hours)
    asyncio.run(reconcile(store, infra_id, times=times, keeper=True))


def test_a_time_to_live_brings_the_infrastructure_down_when_it_runs_out(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "p", SPEC))
    view = herd.status("brief")
    assert view.ends_at is not None and as_utc(view.ends_at) - as_utc(view.created_at) == timedelta(hours=2)
    shown = cli("status", "brief")
    assert re.search(r"ends: \S+ \S+ UTC \(in 1h \d+m; time to live\)", shown.stdout), shown.stdout

    herd.scale("brief", "web", "=2")  # a command's own pass (the size as it is): never ends anything

    pass_at(infra_id, 1.9)  # not yet: the pass keeps it
    assert len(herd.status("brief").live) == 2
    pass_at(infra_id, 2.01)
    view = herd.status(infra_id)
    assert view.state == "destroyed" and view.live == ()
    [said] = [e.message for e in herd.events(infra_id) if e.kind == "ttl"]
    assert said.startswith("time to live ran out at ") and said.endswith(" UTC: down")


def test_up_ttl_counts_from_that_up(home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "p", SPEC.replace("ttl: 2h\n", ""))
    made = cli("up", str(spec), "--ttl", "3d")
    assert made.returncode == 0, made.stderr
    view = SyncClient().status("brief")
    assert view.ends_at is not None
    assert timedelta(days=3) - (as_utc(view.ends_at) - as_utc(view.updated_at)) < timedelta(minutes=5)
    refused = cli("up", str(spec), "--ttl", "soon")
    assert refused.returncode == 2 and "--ttl: 'soon' is not a duration" in refused.stderr, refused.stderr
    assert cli("down", "brief").returncode == 0
