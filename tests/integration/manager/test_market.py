"""Spot with fallback and return on real local nodes (``local`` plays a spot market: ``cloudherd local fault NODE
interrupt`` takes a spot machine back as a cloud does, and says so when asked why it ended).

What a user sees: only the interrupted node is replaced; enough interruptions within the window move the group's
new nodes to on-demand (an event with the count and the place); after ``return_after`` the group tries spot
again and moves its on-demand nodes back one a pass; ``status`` shows the nodes by market and the fallback."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from helpers import cli, write_spec

from cloudherd.api import SyncClient
from cloudherd.engine.reconcile import CheckTimes, reconcile
from cloudherd.state.repo import Store
from cloudherd.times import utcnow

SPEC = """name: bargain
groups:
  web:
    count: 3
    market: {type: spot, interruptions: 2, window: 1h, return_after: 10m}
"""


def one_pass(infra_id: str, later: timedelta = timedelta()) -> None:
    """A manager's pass whose clock reads ``later`` from now."""
    times = CheckTimes()
    times.clock = lambda: utcnow() + later
    report = asyncio.run(reconcile(Store(), infra_id, times=times, keeper=True))
    assert report.error is None, report.error


def markets(herd: SyncClient) -> dict[str, str | None]:
    return {n.name: n.market for n in herd.status("bargain").live}


def interrupt(node: str) -> None:
    done = cli("local", "fault", node, "interrupt")
    assert done.returncode == 0, done.stderr


def test_spot_interruptions_replace_only_their_nodes_fall_back_and_return(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "p", SPEC))
    first = markets(herd)
    assert list(first.values()) == ["spot"] * 3
    one, two, three = sorted(first)
    ids = {n.name: n.provider_id for n in herd.status("bargain").live}

    interrupt(one)
    one_pass(infra_id)
    view = herd.status("bargain")
    assert len(view.live) == 3 and all(n.state == "ready" for n in view.live)
    kept = {n.name: n.provider_id for n in view.live}
    assert kept[two] == ids[two] and kept[three] == ids[three]
    [gone] = [n for n in view.nodes if n.provider_id == ids[one]]
    assert gone.state == "terminated" and "spot interruption" in (gone.reason or "")
    assert set(markets(herd).values()) == {"spot"}  # one interruption: still on spot
    [said] = [e for e in herd.events(infra_id) if e.kind == "interruption"]
    assert said.node and "spot interruption" in said.message

    interrupt(two)
    one_pass(infra_id)
    moved = [e.message for e in herd.events(infra_id) if e.kind == "market"]
    assert moved == ["web: 2 spot interruptions on local within 1h → new nodes on on-demand"], moved
    now = markets(herd)
    assert sorted(now.values()) == ["on-demand", "spot", "spot"], now
    shown = cli("status", "bargain").stdout
    assert "web: market: 2 spot, 1 on-demand; new nodes on-demand since " in shown, shown

    one_pass(infra_id, timedelta(minutes=5))  # within return_after: nothing moves
    assert sorted(markets(herd).values()) == ["on-demand", "spot", "spot"]

    one_pass(infra_id, timedelta(minutes=11))  # back to spot; the on-demand node moved back a pass later
    one_pass(infra_id, timedelta(minutes=11))
    moved = [e.message for e in herd.events(infra_id) if e.kind == "market"]
    assert moved[1].startswith("web: trying spot again after 10m on on-demand (2 spot interruptions"), moved
    assert moved[2].startswith("web: moving bargain-web-") and "from on-demand back to spot" in moved[2], moved
    view = herd.status("bargain")
    assert len(view.live) == 3 and set(markets(herd).values()) == {"spot"}
    assert all(n.state == "ready" for n in view.live)
    assert cli("down", "bargain").returncode == 0


def test_only_a_spot_node_is_interrupted(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", "name: plain\ngroups:\n  web: {count: 1}\n"))
    [node] = herd.status("plain").live
    refused = cli("local", "fault", node.name, "interrupt")
    assert refused.returncode != 0 and "is not a spot machine" in refused.stderr, refused.stderr
    assert cli("down", "plain").returncode == 0
