"""Spot with fallback and return on moto's EC2 over real HTTP (tests/integration/manager/test_market.py is the same
on the ``local`` provider): a ``market: spot`` group's instances are spot instances in EC2 (at its ``max_price``),
an interruption (EC2's ``Server.SpotInstanceTermination``, made through moto's backend) replaces only its node,
enough of them move new nodes to on-demand, and a spot create refused for capacity falls back to on-demand at
once and comes back to spot after ``return_after``, one node a pass.  What a user sees: EC2's own view of the
instances, ``status``, the events."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from helpers import cli, write_spec
from moto_catalog import an_image
from moto_faults import FaultyMotoServer, interrupt_spot

from cloudherd.api import SyncClient
from cloudherd.engine.reconcile import CheckTimes, reconcile
from cloudherd.state.repo import Store
from cloudherd.times import utcnow

AMI = an_image()
PLACE = "cloud"  # the provider entry's name: where the events say spot failed

SPEC = """\
name: bargain
providers:
  {place}: {{type: aws, region: us-east-1, reach: "tests.support.moto_reach:LocalStandIns"}}
groups:
  web:
    provider: {place}
    image: {image}
    size: t3.micro
    count: {count}
    market: {market}
"""


def spec(folder: Path, count: int, market: str) -> Path:
    return write_spec(folder, SPEC.format(place=PLACE, image=AMI, count=count, market=market))


def env() -> dict[str, str]:
    """The CLI's environment: the reach plugin importable (moto's address is in os.environ already)."""
    return {"PYTHONPATH": str(Path(__file__).resolve().parents[3]) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def one_pass(infra_id: str, later: timedelta = timedelta()) -> None:
    """A manager's pass whose clock reads ``later`` from now."""
    times = CheckTimes()
    times.clock = lambda: utcnow() + later
    report = asyncio.run(reconcile(Store(), infra_id, times=times, keeper=True))
    assert report.error is None, report.error


def described(url: str, infra_id: str) -> dict[str, dict[str, Any]]:
    """EC2's own view of the infrastructure's instances (terminated ones included), by id."""
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag:cloudherd:infra", "Values": [infra_id]}])
    return {i["InstanceId"]: i for page in pages for r in page["Reservations"] for i in r["Instances"]}


def ec2_market(instance: dict[str, Any]) -> str:
    return "spot" if instance.get("InstanceLifecycle") == "spot" else "on-demand"


def live_in_ec2(url: str, infra_id: str) -> dict[str, str]:
    """Each running (or pending) instance's market as EC2 says it."""
    return {k: ec2_market(i) for k, i in described(url, infra_id).items()
            if i["State"]["Name"] in ("pending", "running")}


def markets(herd: SyncClient) -> dict[str, str | None]:
    """What ``status`` shows: each live node's market, by node name."""
    return {n.name: n.market for n in herd.status("bargain").live}


def machines(herd: SyncClient) -> dict[str, str]:
    return {n.name: str(n.provider_id) for n in herd.status("bargain").live}


def said(herd: SyncClient, infra_id: str, kind: str) -> list[str]:
    return [e.message for e in herd.events(infra_id) if e.kind == kind]


def test_a_spot_group_runs_spot_instances_at_its_max_price(home: Path, tmp_path: Path,
                                                           moto_server: FaultyMotoServer) -> None:
    herd = SyncClient()
    infra_id = herd.up(spec(tmp_path / "s", 2, "{type: spot, max_price: 0.05}"))
    assert list(markets(herd).values()) == ["spot", "spot"]
    in_ec2 = live_in_ec2(moto_server.url, infra_id)
    assert sorted(in_ec2) == sorted(machines(herd).values()) and set(in_ec2.values()) == {"spot"}
    [asked] = moto_server.faults.calls_of("RunInstances")
    options = {k.removeprefix("InstanceMarketOptions."): v for k, v in asked.items()
               if k.startswith("InstanceMarketOptions.")}
    assert options == {"MarketType": ["spot"], "SpotOptions.SpotInstanceType": ["one-time"],
                       "SpotOptions.InstanceInterruptionBehavior": ["terminate"], "SpotOptions.MaxPrice": ["0.05"]}
    shown = cli("status", "bargain", env=env())
    assert shown.returncode == 0 and "web: market: 2 spot" in shown.stdout, shown.stdout + shown.stderr
    assert cli("down", "bargain", env=env()).returncode == 0
    assert set(live_in_ec2(moto_server.url, infra_id)) == set()


def test_interruptions_replace_only_their_nodes_then_new_nodes_go_on_demand(home: Path, tmp_path: Path,
                                                                           moto_server: FaultyMotoServer) -> None:
    herd = SyncClient()
    infra_id = herd.up(spec(tmp_path / "s", 3, "{type: spot, interruptions: 2, window: 1h, return_after: 10m}"))
    ids = machines(herd)
    one, two, three = sorted(ids)

    interrupt_spot([ids[one]])
    one_pass(infra_id)
    view = herd.status("bargain")
    assert len(view.live) == 3 and all(n.state == "ready" for n in view.live)
    kept = machines(herd)
    assert kept[two] == ids[two] and kept[three] == ids[three]  # only the interrupted node was replaced
    [gone] = [n for n in view.nodes if n.provider_id == ids[one]]
    assert gone.state == "terminated"
    assert (gone.reason or "").startswith("spot interruption (Server.SpotInstanceTermination"), gone.reason
    [interruption] = [e for e in herd.events(infra_id) if e.kind == "interruption"]
    assert interruption.node and "spot interruption (Server.SpotInstanceTermination" in interruption.message
    assert set(markets(herd).values()) == {"spot"}  # one interruption: still on spot
    assert set(live_in_ec2(moto_server.url, infra_id).values()) == {"spot"}
    assert said(herd, infra_id, "market") == []

    interrupt_spot([kept[two]])
    one_pass(infra_id)
    assert said(herd, infra_id, "market") == \
        [f"web: 2 spot interruptions on {PLACE} within 1h → new nodes on on-demand"]
    now = machines(herd)
    assert now[three] == ids[three] and len(now) == 3
    [new] = [name for name, machine in now.items() if machine not in kept.values()]
    assert markets(herd)[new] == "on-demand"
    in_ec2 = live_in_ec2(moto_server.url, infra_id)
    assert in_ec2 == {m: ("on-demand" if name == new else "spot") for name, m in now.items()}, in_ec2
    shown = cli("status", "bargain", env=env()).stdout
    assert "web: market: 2 spot, 1 on-demand; new nodes on-demand since " in shown, shown
    assert cli("down", "bargain", env=env()).returncode == 0


def test_spot_refused_for_capacity_falls_back_at_up_and_returns_one_node_a_pass(
        home: Path, tmp_path: Path, moto_server: FaultyMotoServer) -> None:
    refusal = moto_server.faults.fail("RunInstances", "InsufficientInstanceCapacity",
                                      params={"InstanceMarketOptions.MarketType": "spot"})
    herd = SyncClient()
    infra_id = herd.up(spec(tmp_path / "s", 2, "{type: spot, return_after: 10m}"))
    assert refusal.fired == 1  # the spot create, refused once: no retry, straight to on-demand
    assert said(herd, infra_id, "market") == \
        [f"web: spot refused on {PLACE} (InsufficientInstanceCapacity) → new nodes on on-demand"]
    assert set(markets(herd).values()) == {"on-demand"}
    first = live_in_ec2(moto_server.url, infra_id)
    assert sorted(first) == sorted(machines(herd).values()) and set(first.values()) == {"on-demand"}
    spot, on_demand = moto_server.faults.calls_of("RunInstances")
    assert spot["ClientToken"] != on_demand["ClientToken"]  # the fallback is a create of its own to EC2
    assert "InstanceMarketOptions.MarketType" not in on_demand

    moto_server.faults.drop(refusal)  # spot has room again
    one_pass(infra_id, timedelta(minutes=5))  # within return_after: nothing moves
    assert set(markets(herd).values()) == {"on-demand"} and len(said(herd, infra_id, "market")) == 1

    counts = []
    for _ in range(6):  # two nodes to move, one a pass (bounded: each pass must make progress or the test fails)
        one_pass(infra_id, timedelta(minutes=11))
        view = herd.status("bargain")
        assert len(view.live) == 2 and all(n.state == "ready" for n in view.live)
        counts.append(sum(1 for n in view.live if n.market == "on-demand"))
        if counts[-1] == 0:
            break
    assert counts[-1] == 0, counts
    assert all(before - after <= 1 for before, after in zip([2, *counts], counts, strict=False)), counts
    moved = said(herd, infra_id, "market")
    assert moved[1].startswith(f"web: trying spot again after 10m on on-demand (spot refused on {PLACE}"), moved
    assert [m for m in moved if "from on-demand back to spot" in m] == moved[2:] and len(moved) == 4, moved
    in_ec2 = described(moto_server.url, infra_id)
    assert {ec2_market(in_ec2[m]) for m in machines(herd).values()} == {"spot"}
    assert {in_ec2[m]["State"]["Name"] for m in first} == {"terminated"}  # the on-demand ones were replaced
    assert cli("down", "bargain", env=env()).returncode == 0
