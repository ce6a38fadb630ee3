"""Autostop and autodown on real local nodes, with the passes' clock a test's own: an interactive SSH session
keeps the fleet in use; once idle for `autostop.idle` its machines are stopped (processes gone, folders kept) and
the manager's launching processes suspended; idle for `autodown.idle` it is brought down; `status` says when."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from helpers import cli, node_folders, node_processes, wait_until, write_spec

from cloudherd.api import SyncClient
from cloudherd.engine.idle import SESSIONS
from cloudherd.engine.reconcile import CheckTimes, reconcile
from cloudherd.state.repo import Store
from cloudherd.times import utcnow

SPEC = """\
name: lull
autostop: {idle: 30m, cpu: 95}
autodown: {idle: 2h, cpu: 95}
groups:
  web:
    count: 2
    size: nano  # a cpu limit of its own: its cpu is its own, not the machine's (busy with other tests)
"""


class Passes:
    """Passes of one 'manager' whose wall clock is ``start`` plus what the test says."""

    def __init__(self, infra_id: str) -> None:
        self.infra_id = infra_id
        self.start = utcnow()
        self.times = CheckTimes()

    def at(self, minutes: float) -> None:
        moment: datetime = self.start + timedelta(minutes=minutes)
        self.times.clock = lambda: moment
        asyncio.run(reconcile(Store(), self.infra_id, times=self.times, keeper=True))


def said(herd: SyncClient, infra_id: str, kind: str) -> list[str]:
    return [e.message for e in herd.events(infra_id) if e.kind == kind]


def test_an_idle_fleet_is_stopped_then_ended_and_a_session_keeps_it(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "p", SPEC))
    deadlines = herd.status("lull").idle_deadlines
    assert sorted(deadlines) == ["autodown", "autostop"]
    assert deadlines["autodown"] - deadlines["autostop"] == timedelta(minutes=90)
    assert "autostop: " in cli("status", "lull").stdout
    passes = Passes(infra_id)

    command = herd.ssh_command("lull", "lull-web-1")
    session = subprocess.Popen([*command[:1], "-tt", *command[1:], "sleep 300"], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: herd.exec("lull", SESSIONS, node="lull-web-1")[0].stdout.strip() not in ("", "0"),
                   timeout=30, what="the interactive session seen on the node")
        passes.at(40)  # idle for 40 minutes by the clock, but a person is logged in
        assert said(herd, infra_id, "autostop") == []
    finally:
        session.kill()
        session.wait()
    # the node's end of the session goes once its sshd sees the connection closed: until then it is in use
    wait_until(lambda: herd.exec("lull", SESSIONS, node="lull-web-1")[0].stdout.strip() == "0",
               timeout=30, what="the session gone from the node")
    passes.at(60)  # idle since 40 (or busy now: the test's own logins cost a small node's cpu): no stop
    assert said(herd, infra_id, "autostop") == []
    passes.at(95)  # idle since 60 at the latest: 35 minutes
    [stopped] = said(herd, infra_id, "autostop")
    assert stopped.startswith("autostop: idle since ") and stopped.endswith(": 2 machine(s) stopped")
    view = herd.status("lull")
    assert {n.name: n.state for n in view.live} == {"lull-web-1": "stopped", "lull-web-2": "stopped"}
    assert view.groups[0].suspended["launch"].startswith("autostop: idle since ")
    assert node_processes(home / "local") == []  # stopped: no process of any node left, their folders kept
    assert sorted(node_folders(home)) == ["lull-web-1", "lull-web-2"]

    passes.at(60 + 121)  # idle two hours since: ended
    [ended] = said(herd, infra_id, "autodown")
    assert ended.endswith(": down") and herd.status(infra_id).state == "destroyed"
