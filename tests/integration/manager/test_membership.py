"""Detach and attach on real local nodes: a detached node's machine keeps running, out of every count and of
`gc`'s orphans, and the group shrinks (or replaces it); the machine attached to another infrastructure's group
keeps its node id, gets that group's scripts and grows its size; the refusals say what is wrong."""

from __future__ import annotations

import asyncio
from pathlib import Path

from helpers import cli, write_spec

from cloudherd.api import SyncClient
from cloudherd.providers import make_provider


def spec(name: str, mark: str, count: int, low: int = 0, high: int = 4) -> str:
    return (f"name: {name}\ngroups:\n  web:\n    count: {count}\n    min: {low}\n    max: {high}\n"
            f"    scripts:\n      - {{name: mark.sh, content: \"echo {mark} >> marks.log\"}}\n")


def machines() -> dict[str, tuple[str, str]]:
    """Every local machine: its state and the infrastructure its tags name."""
    async def listed() -> dict[str, tuple[str, str]]:
        driver = make_provider("local", "local", {})
        try:
            return {i.id: (str(i.state), i.tags.get("cloudherd:infra", "")) for i in await driver.list({})}
        finally:
            await driver.close()
    return asyncio.run(listed())


def end_machines(ids: list[str]) -> None:
    async def ended() -> None:
        driver = make_provider("local", "local", {})
        try:
            await driver.terminate(ids)
        finally:
            await driver.close()
    asyncio.run(ended())


def test_a_detached_machine_runs_on_and_is_attached_to_another_group(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "h", spec("home", "home", 2)))
    herd.up(write_spec(tmp_path / "a", spec("away", "away", 1)))
    [gone] = herd.detach_nodes("home", "home-web-1")
    assert gone.state == "terminated"
    machine = gone.provider_id
    assert machine is not None and machines()[machine] == ("running", "")  # kept running, nobody's
    view = herd.status("home")
    assert view.groups[0].count == 1 and [n.name for n in view.live] == ["home-web-2"]
    assert machine not in {o.instance.id for o in herd.gc()}  # not an orphan either
    said = [e.message for e in herd.events("home") if e.kind == "membership"]
    assert said == [f"web: detached home-web-1 ({machine}), machines kept running (size 2 → 1)"]

    [joined] = herd.attach_machines("away", "web", "home-web-1")  # found again by its old node's name
    assert (joined.id, joined.provider_id, joined.state) == (gone.id, machine, "ready")  # AWS keeps the id too
    assert joined.name == "away-web-2" and machines()[machine] == ("running", herd.status("away").id)
    [result] = herd.exec("away", "cat marks.log", node="away-web-2")
    assert result.stdout.split() == ["home", "away"]  # the new group's scripts ran on it
    assert herd.status("away").groups[0].count == 2

    [kept] = herd.detach_nodes("away", "away-web-1", replace=True)  # a new node in its place, the size kept
    view = herd.status("away")
    assert view.groups[0].count == 2 and sorted(n.name for n in view.live) == ["away-web-2", "away-web-3"]
    herd.down("home")
    herd.down("away")
    assert machines() == {kept.provider_id: ("running", "")}  # down ends what is its own, not a detached machine
    end_machines([kept.provider_id or ""])


def test_detach_and_attach_refuse_what_cannot_be(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "h", spec("home", "home", 2, low=2, high=2)))
    below = cli("detach-nodes", "home", "home-web-1")
    assert below.returncode == 2 and "web would have 1 node(s), below its min (2)" in below.stderr, below.stderr
    held = herd.status("home").live[0]
    taken = cli("attach-machines", "home", "web", held.provider_id or "")
    assert taken.returncode == 2 and f"is node {held.name}'s: detach it first" in taken.stderr, taken.stderr
    nothing = cli("attach-machines", "home", "web", "no-such-machine")
    assert nothing.returncode == 2 and "above its max (2)" in nothing.stderr, nothing.stderr
    herd.up(write_spec(tmp_path / "h2", spec("home", "home", 2, low=0, high=4)))
    missing = cli("attach-machines", "home", "web", "no-such-machine")
    assert missing.returncode == 2 and "attach refused: no running machine no-such-machine" in missing.stderr
    assert herd.status("home").groups[0].count == 2  # nothing changed
    herd.down("home")
