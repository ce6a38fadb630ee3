"""The manager keeps fleets alive: real sshd nodes, real health checks, real replacements."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import cli, node_folders, wait_until, write_spec
from manager_helpers import FAST, passes_until, ready_names

from cloudherd.api import SyncClient
from cloudherd.engine.locks import try_hold
from cloudherd.engine.manager import manager_scope
from cloudherd.errors import UsageError


def _sshd_pid(home: Path, node: str) -> int:
    return int((node_folders(home)[node] / "sshd.pid").read_text().split()[0])


def test_a_killed_node_is_replaced_under_manage(home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "k", "name: alive\ngroups:\n  web:\n    count: 3\n    scripts: [s.sh]\n" + FAST,
                      {"s.sh": "echo '{{ node.name }}' > me.txt\n"})
    herd = SyncClient()
    herd.up(spec)
    manager = subprocess.Popen([sys.executable, "-m", "cloudherd", "manage", "alive", "--interval", "0.5"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        wait_until(lambda: herd.status("alive").managed, 60, "the manager to claim alive")
        os.kill(_sshd_pid(home, "alive-web-1"), signal.SIGKILL)
        view = wait_until(lambda: (v := herd.status("alive")) and ready_names(v) == {"alive-web-2", "alive-web-3",
                                                                                  "alive-web-4"} and v, 90,
                          "alive-web-1 to be replaced by alive-web-4")
        assert view.node("alive-web-4").state == "ready"
        assert [r.stdout for r in herd.exec("alive", "cat me.txt", node="alive-web-4")] == ["alive-web-4\n"]
        kinds = [(e.kind, e.node) for e in herd.events("alive")]
        assert ("health", "alive-web-1") in kinds
    finally:
        manager.send_signal(signal.SIGTERM)
        out, err = manager.communicate(timeout=60)
    assert manager.returncode == 0, err
    assert "alive: " in out  # one line per pass
    assert herd.status("alive").state == "ready"  # a stop tears nothing down
    herd.down("alive")


def test_a_failing_command_check_fails_the_node_and_a_recovering_one_stays(home: Path, tmp_path: Path) -> None:
    health = "    health: {command: 'test -f ok.flag', ssh: false, interval: 0.1s, grace: 0s, timeout: 2s, " \
             "unhealthy_after: 3}\n"
    spec = write_spec(tmp_path / "c", "name: checked\ngroups:\n  web:\n    count: 2\n    scripts: [s.sh]\n" + health,
                      {"s.sh": "touch ok.flag\n"})
    herd = SyncClient()
    herd.up(spec)
    passes_until(herd, "checked", lambda v: all(n.health == "healthy" for n in v.live), what="first checks")

    assert all(r.ok for r in herd.exec("checked", "rm ok.flag", node="checked-web-2"))
    view = passes_until(herd, "checked", lambda v: v.node("checked-web-2").state == "unhealthy")
    assert "command exited 1" in (view.node("checked-web-2").last_check or "")
    assert all(r.ok for r in herd.exec("checked", "touch ok.flag", node="checked-web-2"))  # recovers in time
    view = passes_until(herd, "checked", lambda v: v.node("checked-web-2").state == "ready")
    assert ready_names(view) == {"checked-web-1", "checked-web-2"}

    assert all(r.ok for r in herd.exec("checked", "rm ok.flag", node="checked-web-1"))
    view = passes_until(herd, "checked", lambda v: ready_names(v) == {"checked-web-2", "checked-web-3"})
    messages = [e.message for e in herd.events("checked") if e.node == "checked-web-1"]
    assert any("unhealthy" in m for m in messages) and any("failed after 3" in m for m in messages)
    herd.down("checked")


@pytest.mark.scenario
def test_circuit_breaker_holds_when_too_many_are_unhealthy(home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "b", "name: blip\ngroups:\n  web:\n    count: 5\n" + FAST)
    herd = SyncClient()
    herd.up(spec)
    frozen = [f"blip-web-{i}" for i in (1, 2, 3)]
    try:
        for node in frozen:  # a blip: the machines are there, nothing on them answers
            herd.fault(node, "hang")
        view = passes_until(herd, "blip", lambda v: sum(n.state == "failed" for n in v.live) == 3,
                            what="three nodes to fail")
        for _ in range(3):
            herd.manage(["blip"], once=True)
        view = herd.status("blip")
        assert {n.name for n in view.live} == {f"blip-web-{i}" for i in range(1, 6)}  # nothing replaced
        breaker = [e.message for e in herd.events("blip") if e.kind == "circuit-breaker"]
        assert len(breaker) == 1 and "3 of 5 nodes unhealthy" in breaker[0] and "replacing none" in breaker[0]
        assert "replacing none" in (view.last_pass or "")
        for node in frozen[:2]:
            herd.fault(node, "heal")
        view = passes_until(herd, "blip", lambda v: len(ready_names(v)) == 5 and "blip-web-3" not in ready_names(v),
                            what="the one node still failing to be replaced")
        assert "blip-web-6" in ready_names(view)
    finally:
        for node in frozen:
            with contextlib.suppress(UsageError):  # the one replaced is gone
                herd.fault(node, "heal")
    herd.down("blip")


@pytest.mark.scenario
def test_scale_up_down_to_clamped_and_victims(home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s", "name: elastic\ngroups:\n  web:\n    count: 2\n    min: 1\n    max: 5\n")
    herd = SyncClient()
    herd.up(spec)
    result = herd.scale("elastic", "web", "+2")  # no manager runs: the command runs the pass itself
    assert result.applied and result.target == 4
    assert len(ready_names(herd.status("elastic"))) == 4
    herd.scale("elastic", "web", "-1")  # the newest goes
    assert ready_names(herd.status("elastic")) == {"elastic-web-1", "elastic-web-2", "elastic-web-3"}
    clamped = cli("scale", "elastic", "web", "=9")
    assert clamped.returncode == 0 and "clamped to max 5: asked for 9" in clamped.stderr
    assert len(ready_names(herd.status("elastic"))) == 5
    by_name = herd.scale("elastic", "web", "-1", victims=["elastic-web-1"])
    assert by_name.target == 4 and "elastic-web-1" not in ready_names(herd.status("elastic"))
    address = herd.status("elastic").node("elastic-web-2").address or ""
    herd.scale("elastic", "web", "-1", victims=[address])
    assert ready_names(herd.status("elastic")) == {"elastic-web-3", "elastic-web-5", "elastic-web-6"}
    low = cli("scale", "elastic", "web", "=0")
    assert "clamped to min 1: asked for 0" in low.stderr and len(ready_names(herd.status("elastic"))) == 1
    for bad, message in ((["=x"], "+N, -N or =N"), (["-1", "--victim", "nosuch"], "no live node 'nosuch'")):
        refused = cli("scale", "elastic", "web", *bad)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert "no group 'db'" in cli("scale", "elastic", "db", "+1").stderr
    herd.down("elastic")


def test_a_scale_request_waits_for_the_manager_and_survives_its_restart(home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "r", "name: durable\ngroups:\n  web:\n    count: 1\n    max: 4\n")
    herd = SyncClient()
    herd.up(spec)
    store = herd.aio.store
    claim = try_hold(store, manager_scope("durable"), "manage")  # a manager "runs" (then dies)
    assert claim is not None
    result = herd.scale("durable", "web", "+2")
    assert not result.applied and len(ready_names(herd.status("durable"))) == 1
    store.release_lease(claim.scope, claim.owner)
    reports = herd.manage(["durable"], once=True)  # the next manager's first pass consumes it
    assert reports[0].scaled == ("web: +2 → 3",)
    assert len(ready_names(herd.status("durable"))) == 3
    assert [e.message for e in herd.events("durable") if e.kind == "scale"] == ["web: +2 → 3"]
    herd.down("durable")


def test_a_second_manager_is_refused(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "m", "name: single\ngroups:\n  web:\n    count: 1\n"))
    claim = try_hold(herd.aio.store, manager_scope("single"), "manage")
    assert claim is not None
    second = cli("manage", "single", "--once")
    assert second.returncode == 3 and "single is already managed: manage by" in second.stderr
    herd.aio.store.release_lease(claim.scope, claim.owner)
    herd.down("single")


def test_attach_detach_and_manage_all(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "a", "name: kept\ngroups:\n  web:\n    count: 1\n" + FAST))
    herd.up(write_spec(tmp_path / "b", "name: left\ngroups:\n  web:\n    count: 1\n" + FAST))
    assert herd.attach("kept").attached
    reports = herd.manage(every_attached=True, once=True)
    assert [r.name for r in reports] == ["kept"]
    herd.detach("kept")
    assert herd.manage(every_attached=True, once=True) == []
    assert cli("manage").returncode == 2
    herd.down("kept")
    herd.down("left")


def test_dependencies_deploy_in_order_and_see_addresses(home: Path, tmp_path: Path) -> None:
    text = ("name: deps\ngroups:\n  web:\n    count: 2\n    depends_on: [db]\n    scripts: [web.sh]\n"
            "  db:\n    count: 1\n    scripts: [db.sh]\n")
    spec = write_spec(tmp_path / "d", text, {"web.sh": "echo '{{ getip(\"db\") }}' > db.txt\n",
                                              "db.sh": "sleep 0.3; echo db > role.txt\n"})
    herd = SyncClient()
    herd.up(spec)
    view = herd.status("deps")
    db_address = view.node("deps-db-1").address
    assert [r.stdout for r in herd.exec("deps", "cat db.txt", group="web")] == [f"{db_address}\n"] * 2
    actions = herd.logs("deps")
    db_done = max(a.ended_at for a in actions if a.node == "deps-db-1" and a.ended_at)
    assert all(a.started_at >= db_done for a in actions if a.node.startswith("deps-web"))
    cycle = write_spec(tmp_path / "cyc", "name: cyc\ngroups:\n  a:\n    depends_on: [b]\n  b:\n    depends_on: a\n")
    refused = cli("validate", str(cycle))
    assert (refused.returncode == 2 and "dependency cycle" in refused.stderr and ":4:" in refused.stderr) \
        or ":6:" in refused.stderr, refused.stderr
    herd.down("deps")


def test_placement_is_refilled_in_order_and_emptied_from_the_last_place(home: Path, tmp_path: Path) -> None:
    text = ("name: spread\nproviders:\n  first: {type: local}\n  second: {type: local}\ngroups:\n  web:\n"
            "    count: 3\n    max: 6\n    placement:\n      - {provider: first, max: 2}\n      - {provider: second}\n"
            + FAST)
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", text))
    where = {n.name: n.provider for n in herd.status("spread").live}
    assert sorted(where.values()) == ["first", "first", "second"]
    victim = next(name for name, place in where.items() if place == "first")
    os.kill(_sshd_pid(home, victim), signal.SIGKILL)
    view = passes_until(herd, "spread", lambda v: len(ready_names(v)) == 3 and victim not in ready_names(v))
    assert sorted(n.provider for n in view.live if n.state == "ready") == ["first", "first", "second"]  # refilled
    herd.scale("spread", "web", "=5")
    assert sorted(n.provider for n in herd.status("spread").live) == ["first", "first", "second", "second", "second"]
    herd.scale("spread", "web", "=2")
    assert sorted(n.provider for n in herd.status("spread").live) == ["first", "first"]  # the last place first
    herd.down("spread")


@pytest.mark.parametrize("command", [["events", "nosuch"], ["attach", "nosuch"], ["scale", "nosuch", "web", "+1"]])
def test_manager_commands_on_unknown_infrastructures(home: Path, command: list[str]) -> None:
    result = cli(*command)
    assert result.returncode == 2 and "no infrastructure matches" in result.stderr


def test_events_json_and_status_show_the_manager(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "e", "name: shown\ngroups:\n  web:\n    count: 1\n    min: 1\n    max: 3\n"))
    herd.manage(["shown"], once=True)
    lines = [json.loads(line) for line in cli("events", "shown", "--json").stdout.splitlines()]
    assert lines and {"id", "at", "kind", "message", "node"} <= set(lines[0])
    status = json.loads(cli("status", "shown", "--json").stdout)
    assert status["last_pass_at"] and status["groups"][0] | {} and status["groups"][0]["max"] == 3
    assert status["groups"][0]["healthy"] == 1 and status["nodes"][0]["last_check"]
    text = cli("status", "shown").stdout
    assert "manager:" in text and "last pass" in text
    herd.down("shown")


def test_events_follow_streams_new_events(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "f", "name: followed\ngroups:\n  web:\n    count: 1\n"))
    follower = subprocess.Popen([sys.executable, "-m", "cloudherd", "events", "followed", "--follow"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    seen: list[str] = []
    try:
        assert follower.stdout is not None
        wait_until(lambda: seen.append(follower.stdout.readline()) or any("up" in line for line in seen), 30,
                   "the existing events")
        herd.attach("followed")  # a new event while it follows
        wait_until(lambda: seen.append(follower.stdout.readline()) or any("attached" in line for line in seen), 30,
                   "the new event to stream")
    finally:
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=30)
    assert follower.returncode == 0
    herd.down("followed")


def _checked_before(moment: datetime | None, seconds: float) -> bool:
    """Never checked, or last checked more than ``seconds`` ago."""
    if moment is None:
        return True
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (datetime.now(UTC) - aware).total_seconds() > seconds


def test_a_pass_over_a_healthy_fleet_logs_in_only_for_command_checks(home: Path, tmp_path: Path) -> None:
    """At size and healthy: the list call and the checks, nothing else (counted in the nodes' own logs)."""
    from helpers import logins

    text = ("name: quiet\ngroups:\n  banner:\n    count: 2\n    scripts: [s.sh]\n" + FAST +
            "  probed:\n    count: 2\n    scripts: [s.sh]\n"
            "    health: {command: 'true', interval: 0.1s, grace: 0s, timeout: 2s}\n")
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "q", text, {"s.sh": "echo set up\n"}))
    folders = node_folders(home)
    before = {name: logins(folder) for name, folder in folders.items()}
    actions = len(herd.logs("quiet"))
    for _ in range(3):
        wait_until(lambda: all(_checked_before(n.last_check_at, 0.12) for n in herd.status("quiet").nodes),
                   timeout=10, what="every node's next check to be due")  # a fast pass would find none due
        reports = herd.manage(["quiet"], once=True)
        assert not reports[0].converged and reports[0].checked >= 1
    after = {name: logins(folder) for name, folder in folders.items()}
    assert all(after[f"quiet-banner-{i}"] == before[f"quiet-banner-{i}"] for i in (1, 2))  # banner only: no login
    assert all(1 <= after[f"quiet-probed-{i}"] - before[f"quiet-probed-{i}"] <= 3 for i in (1, 2))  # ≤ 1 a pass
    assert len(herd.logs("quiet")) == actions  # no script ran again
    herd.down("quiet")
