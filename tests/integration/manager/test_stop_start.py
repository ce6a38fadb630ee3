"""A fleet stopped and started again on real local nodes: `cloudherd stop` stops the machines (kept) and holds the
launching processes; `cloudherd start` resumes them and the pass starts the nodes, which answer SSH again with
the files their scripts left; a fleet autostop stopped comes back the same way, and is not stopped again at once
(its idle time counts from the start)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from helpers import cli, write_spec

from cloudherd.api import SyncClient
from cloudherd.engine.reconcile import CheckTimes, reconcile
from cloudherd.state.repo import Store
from cloudherd.times import utcnow

SPEC = """name: napper
groups:
  web:
    count: 2
    scripts:
      - {name: mark.sh, content: "echo made > $HOME/mark"}
"""


def states(herd: SyncClient) -> list[str]:
    return sorted(n.state for n in herd.status("napper").live)


def test_stop_then_start_brings_the_same_machines_back(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", SPEC))
    before = {n.name: n.provider_id for n in herd.status("napper").live}

    stopped = cli("stop", "napper")
    assert stopped.returncode == 0, stopped.stderr
    assert "napper: stopped (`cloudherd start` starts it again)" in stopped.stdout
    assert states(herd) == ["stopped", "stopped"]
    view = herd.status("napper")
    assert all((n.reason or "").startswith("stopped: stop: asked at ") for n in view.live)
    [web] = view.groups
    assert {"launch", "replace-unhealthy"} <= set(web.suspended)
    asyncio.run(reconcile(Store(), view.id, keeper=True))  # a pass leaves a stopped fleet stopped
    assert states(herd) == ["stopped", "stopped"]

    started = cli("start", "napper")
    assert started.returncode == 0, started.stderr
    assert "napper: started; 2 live node(s), 2 ready" in started.stdout, started.stdout
    view = herd.status("napper")
    assert {n.name: n.provider_id for n in view.live} == before  # the same machines, not new ones
    assert view.groups[0].suspended == {}
    marks = herd.exec("napper", "cat $HOME/mark")
    assert [r.stdout.strip() for r in marks] == ["made", "made"]
    assert any(e.kind == "start" and "started again" in e.message for e in herd.events(view.id))
    assert cli("down", "napper").returncode == 0


def test_a_fleet_autostop_stopped_starts_and_is_not_stopped_again_at_once(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "p", SPEC.replace("groups:", "autostop: {idle: 30m}\ngroups:")))
    times = CheckTimes()
    store = Store()
    asyncio.run(reconcile(store, infra_id, times=times, keeper=True))  # the first watching pass starts the count
    times.clock = lambda: utcnow() + timedelta(minutes=31)
    asyncio.run(reconcile(store, infra_id, times=times, keeper=True))
    assert states(herd) == ["stopped", "stopped"]

    assert cli("start", "napper").returncode == 0
    asyncio.run(reconcile(store, infra_id, times=CheckTimes(), keeper=True))  # a pass at the real time
    assert states(herd) == ["ready", "ready"]
    assert cli("down", "napper").returncode == 0
