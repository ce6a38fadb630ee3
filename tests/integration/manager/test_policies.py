"""Scaling policies on real local nodes: a target-tracking policy on a command metric that the test changes (a file
the nodes read) scales the group out at once and in proportion, then in slowly, each decision an event with its
reason, every sample kept; a manual scale is a scaling the policy's cooldown starts from."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from helpers import cli, write_spec
from manager_helpers import ready_names

from cloudherd.api import SyncClient
from cloudherd.engine.reconcile import CheckTimes, reconcile
from cloudherd.state.location import database_url
from cloudherd.state.reader import Reader
from cloudherd.state.repo import Store


def policy_spec(load: Path, **policy: str) -> str:
    knobs = {"warmup": "0s", "scale_out_cooldown": "0s", "scale_in_cooldown": "0s", "scale_in_after": "2", **policy}
    inline = ", ".join(f"{k}: {v}" for k, v in knobs.items())
    return ("name: auto\ngroups:\n  web:\n    count: 1\n    min: 1\n    max: 4\n"
            f"    metrics:\n      queue: {{command: 'cat {load}'}}\n"
            f"    scaling:\n      policies:\n        - {{metric: queue, target: 10, {inline}}}\n")


def scaling_events(herd: SyncClient) -> list[str]:
    return [f"{e.kind} {e.message}" for e in herd.events("auto") if e.kind in ("scale-out", "scale-in")]


def test_target_tracking_scales_out_at_once_and_in_slowly(home: Path, tmp_path: Path) -> None:
    load = tmp_path / "load"
    load.write_text("25\n")
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", policy_spec(load)))
    herd.manage(["auto"], once=True)  # 25 for a target of 10 on 1 node: ceil(1 * 25 / 10) = 3, at once
    assert len(ready_names(herd.status("auto"))) == 3
    assert scaling_events(herd) == ["scale-out web: queue 25 > 10 → +2 (1 → 3)"]

    load.write_text("4\n")
    herd.manage(["auto"], once=True)  # one sample below (the one before is above): not yet
    assert len(ready_names(herd.status("auto"))) == 3
    herd.manage(["auto"], once=True)  # 2 of 2 below: one step of at most a tenth of the group (1)
    assert len(ready_names(herd.status("auto"))) == 2
    assert scaling_events(herd)[-1] == "scale-in web: queue 4 < 10 for 2 of 2 samples → -1 (3 → 2)"

    store = Store()
    infra = store.active_named("auto")
    assert infra is not None
    kept = [(s.value, s.nodes) for s in store.samples(infra.id, "web", "queue")]
    assert kept == [(25.0, 1), (4.0, 3), (4.0, 3)]  # each pass's aggregate over the ready nodes that answered
    [web] = herd.status("auto").groups  # read through the lean reader: the same as the store's
    assert web.metrics == store.latest_samples(infra.id)["web"] == {"queue": 4.0}
    assert web.policies == ("target tracking: queue at 10",)
    shown = cli("status", "auto")
    assert "web: target tracking: queue at 10; now queue 4" in shown.stdout, shown.stdout
    store.engine.dispose()
    herd.down("auto")


def test_a_cooldown_holds_after_a_manual_scale_and_min_max_bound_the_policy(home: Path, tmp_path: Path) -> None:
    load = tmp_path / "load"
    load.write_text("1000\n")
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", policy_spec(load, scale_in_cooldown="1h")))
    herd.manage(["auto"], once=True)  # 100x the target: bounded by max 4
    assert len(ready_names(herd.status("auto"))) == 4
    assert scaling_events(herd) == ["scale-out web: queue 1000 > 10 → +3 (1 → 4)"]

    load.write_text("0\n")
    herd.scale("auto", "web", "=3")  # a manual scale: the scale-in cooldown (an hour) starts from it
    for _ in range(3):
        herd.manage(["auto"], once=True)
    assert len(ready_names(herd.status("auto"))) == 3
    assert scaling_events(herd) == ["scale-out web: queue 1000 > 10 → +3 (1 → 4)"]
    herd.down("auto")


def test_step_policies_scale_by_their_steps(home: Path, tmp_path: Path) -> None:
    load = tmp_path / "load"
    load.write_text("30\n")
    policies = ("        - {type: step, metric: queue, threshold: 10, cooldown: 0s, warmup: 0s,\n"
                "           steps: [{lower_bound: 0, upper_bound: 50, adjustment: 2},\n"
                "                   {lower_bound: 50, adjustment: 3}]}\n"
                "        - {type: step, metric: queue, threshold: 5, comparison: '<', evaluation_periods: 2,\n"
                "           cooldown: 0s, warmup: 0s, steps: [{upper_bound: 0, adjustment: -1}]}\n")
    spec = ("name: auto\ngroups:\n  web:\n    count: 1\n    min: 1\n    max: 4\n"
            f"    metrics:\n      queue: {{command: 'cat {load}', aggregate: max}}\n"
            f"    scaling:\n      policies:\n{policies}")
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", spec))
    herd.manage(["auto"], once=True)
    assert len(ready_names(herd.status("auto"))) == 3
    load.write_text("1\n")
    herd.manage(["auto"], once=True)  # 1 of the 2 periods below
    herd.manage(["auto"], once=True)
    assert len(ready_names(herd.status("auto"))) == 2
    assert scaling_events(herd) == ["scale-out web: queue 30 >= 10 for 1 of 1 samples → +2 (1 → 3)",
                                    "scale-in web: queue 1 < 5 for 2 of 2 samples → -1 (3 → 2)"]
    herd.down("auto")


def test_scheduled_actions_fire_at_their_minute_once_and_set_bounds_and_size(home: Path, tmp_path: Path) -> None:
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30, no daylight saving: the same test on every day of the year
    # two minutes of the next hours, written in Kolkata's time; the passes run on a clock the test sets
    morning = (datetime.now(UTC) + timedelta(hours=1)).replace(second=0, microsecond=0).astimezone(kolkata)
    night = morning + timedelta(hours=2)
    schedules = (f"        - {{name: morning, cron: '{morning.minute} {morning.hour} * * *', timezone: Asia/Kolkata,"
                 " min: 2, desired: 3}\n"
                 f"        - {{name: night, cron: '{night.minute} {night.hour} * * *', timezone: Asia/Kolkata,"
                 " min: 0, max: 1, desired: 0}\n")
    spec = ("name: timed\ngroups:\n  web:\n    count: 1\n    min: 1\n    max: 4\n"
            f"    scaling:\n      schedules:\n{schedules}")
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "t", spec))
    store = Store()
    infra = store.active_named("timed")
    assert infra is not None
    times = CheckTimes()

    def pass_at(moment: datetime) -> None:
        times.clock = lambda: moment
        report = asyncio.run(reconcile(store, infra.id, times=times))
        assert report.error is None, report

    pass_at(morning - timedelta(seconds=30))  # not yet
    assert len(ready_names(herd.status("timed"))) == 1
    pass_at(morning + timedelta(seconds=10))
    pass_at(morning + timedelta(seconds=40))  # the same occurrence: fired once
    view = herd.status("timed")
    assert len(ready_names(view)) == 3 and (view.groups[0].min, view.groups[0].max) == (2, 4)
    pass_at(night + timedelta(minutes=5))  # a late pass still fires it, once
    view = herd.status("timed")
    assert not ready_names(view) and (view.groups[0].min, view.groups[0].max) == (0, 1)
    reader = Reader.open(database_url())
    assert reader is not None and reader.scheduled_bounds(infra.id) == store.scheduled_bounds(infra.id) == {
        "web": (0, 1)}
    reader.close()
    fired = [e.message for e in herd.events("timed") if e.kind == "scheduled"]
    assert fired == [f"web: morning at {morning.astimezone(UTC).isoformat()} → min 2, desired 3 (size 1 → 3)",
                     f"web: night at {night.astimezone(UTC).isoformat()} → min 0, max 1, desired 0 (size 3 → 0)"]
    assert "clamped to max 1" in cli("scale", "timed", "web", "=3").stderr  # the bounds in force are the schedule's
    store.engine.dispose()
    herd.down("timed")
