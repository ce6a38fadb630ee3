"""`cloudherd status` shows what a user chose for a fleet and what holds it: a group's suspended processes (and
why), its warm pool counted by state, each node's marks (protected, standby, warm) beside its state, and which
lifecycle hook holds a waiting node and until when.  Real local nodes; the command as a user runs it, and still
without SQLAlchemy's import (the lean reader serves the holds too)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import cli, write_spec

from cloudherd.api import SyncClient
from cloudherd.api.status_holds import open_holds
from cloudherd.state.reader import Reader

SPEC = """\
name: chosen
groups:
  web:
    count: 2
    min: 0
    max: 4
    hooks:
      - {name: warmup, on: launch}
    warm_pool: {size: 2}
"""


def _row(shown: str, node: str) -> str:
    found = re.search(rf"^\s*{re.escape(node)}\s.*$", shown, re.M)
    assert found, shown
    return found.group(0)


def test_status_shows_suspended_processes_the_warm_pool_marks_and_hook_holds(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", SPEC))
    live = {n.name: n for n in herd.status("chosen").live}
    serving = sorted(name for name, n in live.items() if not n.warm)
    pool = sorted(name for name, n in live.items() if n.warm)
    assert len(serving) == 2 and len(pool) == 2, live
    assert {live[name].state for name in serving} == {"waiting"}  # the launch hook holds both
    first, second = serving
    herd.complete_hook("chosen", first)
    herd.protect("chosen", [first])
    herd.suspend("chosen", "web", ["launch"], reason="maintenance")
    [hold] = herd.hooks("chosen")
    assert hold.node == second
    pool_states = sorted(n.state for n in herd.status("chosen").live if n.warm)
    # the holds status shows are the hooks' own, read by the store and by the lean reader alike
    assert open_holds(herd, herd.status("chosen")) == [hold]
    lean = SyncClient()
    try:
        assert open_holds(lean, lean.status("chosen")) == [hold] and isinstance(lean.reads, Reader)
    finally:
        lean.close()

    done = cli("status", "chosen", env={"COLUMNS": "250"})
    assert done.returncode == 0, done.stderr
    shown = done.stdout
    assert "web: suspended: launch (maintenance)" in shown, shown
    counted = ", ".join(f"{pool_states.count(s)} {s}" for s in sorted(set(pool_states)))
    assert f"web: warm pool: {counted}" in shown, shown
    assert re.search(r"\bready protected\b", _row(shown, first)), shown
    waiting = _row(shown, second)
    assert f"waiting (launch hook warmup until {hold.deadline:%H:%M:%S} UTC)" in waiting, shown
    assert "protected" not in waiting
    for name in pool:
        assert re.search(r"\bwarm\b", _row(shown, name)), shown

    # the same, read by the lean reader: no SQLAlchemy imported for the holds either
    timed = subprocess.run([sys.executable, "-X", "importtime", "-m", "cloudherd", "status", "chosen"],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "250"})
    assert timed.returncode == 0, timed.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in timed.stderr.splitlines() if "|" in line}
    assert not {"sqlalchemy", "alembic"} & imported
    assert f"launch hook warmup until {hold.deadline:%H:%M:%S} UTC" in timed.stdout, timed.stdout

    herd.resume_processes("chosen", "web")
    herd.complete_hook("chosen", second)
    shown = cli("status", "chosen", env={"COLUMNS": "250"}).stdout
    assert "suspended:" not in shown and "hook warmup" not in shown, shown
    assert re.search(r"\bready\b", _row(shown, second)), shown
    herd.down("chosen")
