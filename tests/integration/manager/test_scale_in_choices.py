"""Scale-in choices and suspended processes on real local nodes: a shrink follows the group's termination policy
and passes over protected nodes; a node in standby keeps running out of the count; a suspended process is not run
until resumed, and the suspension is kept in the state (a new client, a new process, sees it)."""

from __future__ import annotations

from pathlib import Path

from helpers import cli, write_spec

from cloudherd.api import SyncClient
from cloudherd.api.types import Infrastructure


def spec(count: int, scaling: str = "") -> str:
    return (f"name: choose\ngroups:\n  web:\n    count: {count}\n    min: 0\n    max: 6\n"
            + (f"    scaling: {scaling}\n" if scaling else ""))


def live(view: Infrastructure) -> dict[str, str]:
    return {n.name: n.state for n in view.live}


def test_a_shrink_takes_the_oldest_first_and_passes_over_protected_nodes(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", spec(4, "{termination: oldest}")))
    assert sorted(live(herd.status("choose"))) == ["choose-web-1", "choose-web-2", "choose-web-3", "choose-web-4"]
    [shown] = herd.protect("choose", "choose-web-1")
    assert shown.protected and not shown.standby

    herd.scale("choose", "web", "=2")  # oldest first, web-1 protected: web-2 and web-3 go
    assert sorted(live(herd.status("choose"))) == ["choose-web-1", "choose-web-4"]
    herd.scale("choose", "web", "=0")  # web-1 stays: the group runs above its size until it is released
    view = herd.status("choose")
    assert sorted(live(view)) == ["choose-web-1"] and view.groups[0].count == 0
    plan = herd.plan(write_spec(tmp_path / "q", spec(0, "{termination: oldest}")))
    assert "1 protected node(s) over the size kept" in plan.groups[0].reasons
    shown = cli("status", "choose")
    assert "web: scale-in: oldest, then newest first" in shown.stdout, shown.stdout

    assert cli("protect", "choose", "choose-web-1", "--off").returncode == 0
    herd.manage(["choose"], once=True)
    assert live(herd.status("choose")) == {}
    kinds = [(e.kind, e.message) for e in herd.events("choose") if e.kind == "protection"]
    assert kinds == [("protection", "choose-web-1: protected from scale-in"),
                     ("protection", "choose-web-1: no longer protected from scale-in")]
    herd.down("choose")


def test_new_nodes_start_protected_when_the_group_says_so(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", spec(2, "{protect_new: true}")))
    assert all(n.protected for n in herd.status("choose").live)
    herd.scale("choose", "web", "-1")
    assert len(herd.status("choose").live) == 2  # both protected: none goes
    herd.down("choose")  # protection is from scale-in, not from down
    assert live(herd.status("choose")) == {}


def test_a_node_in_standby_runs_out_of_the_count(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", spec(2)))
    [away] = herd.standby("choose", "choose-web-1")  # the size goes down by one: nothing is made for it
    assert away.standby and away.state == "ready"
    view = herd.status("choose")
    assert view.groups[0].count == 1 and sorted(live(view)) == ["choose-web-1", "choose-web-2"]
    [result] = herd.exec("choose", "echo still here", node="choose-web-1")  # kept running, reachable
    assert result.stdout.strip() == "still here"
    herd.scale("choose", "web", "=0")  # a shrink does not choose it
    assert sorted(live(herd.status("choose"))) == ["choose-web-1"]

    refused = cli("standby", "choose", "choose-web-1")
    assert refused.returncode == 2 and "not in service (ready or unhealthy) and not in standby" in refused.stderr
    [back] = herd.standby("choose", "choose-web-1", enter=False)  # back in service: the size grows by one
    assert not back.standby and herd.status("choose").groups[0].count == 1
    herd.standby("choose", "choose-web-1", replace=True)  # in its place a new node is made, the size kept
    view = herd.status("choose")
    assert view.groups[0].count == 1 and sorted(live(view)) == ["choose-web-1", "choose-web-3"]
    assert [n.name for n in view.live if not n.standby] == ["choose-web-3"]
    herd.down("choose")


def test_suspended_processes_are_held_until_resumed(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", spec(2)))
    group = herd.suspend("choose", "web", ["launch", "Terminate"], reason="maintenance")
    assert group.suspended == {"launch": "maintenance", "terminate": "maintenance"}
    herd.scale("choose", "web", "=3")  # launch held
    assert len(herd.status("choose").live) == 2
    herd.scale("choose", "web", "=1")  # terminate held
    assert len(herd.status("choose").live) == 2
    plan = herd.plan(write_spec(tmp_path / "q", spec(1)))
    assert "terminate suspended: 1 node(s) over the size kept" in plan.groups[0].reasons

    again = SyncClient()  # another client (a restart): the suspension is in the state
    assert again.status("choose").groups[0].suspended == {"launch": "maintenance", "terminate": "maintenance"}
    refused = cli("suspend", "choose", "web", "teleport")
    assert refused.returncode == 2 and "no process 'teleport'" in refused.stderr
    shown = cli("resume", "choose", "web", "terminate")
    assert shown.returncode == 0 and "web: suspended: launch" in shown.stdout, shown.stdout
    herd.manage(["choose"], once=True)
    assert len(herd.status("choose").live) == 1
    herd.resume_processes("choose", "web")
    assert herd.status("choose").groups[0].suspended == {}
    messages = [e.message for e in herd.events("choose") if e.kind == "processes"]
    assert messages == ["web: suspended launch, terminate", "web: resumed terminate", "web: resumed launch"]
    herd.down("choose")
