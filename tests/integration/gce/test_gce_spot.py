"""GCE Spot VMs against the Compute API fake (tests/support/gce_wire.py), in GCE's own wire format.

A spot group's VMs are made with GCE's Spot scheduling; a VM GCE takes back (a ``compute.instances.preempted``
zone operation, the VM deleted) is told as a spot interruption and only its node replaced by the next manager
pass; a zone out of Spot capacity (``ZONE_RESOURCE_POOL_EXHAUSTED``) sends the group to on-demand.  The fleets
come up with ``up`` of a spec, each VM reached through a local stand-in (tests/support/moto_reach.py), so what
is asserted is what a user sees: status, events, and what GCE was asked for."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("google.cloud.compute_v1")

from gce_wire import FakeGce
from helpers import cli, write_spec

from cloudherd.api import SyncClient
from cloudherd.engine.reconcile import reconcile
from cloudherd.providers.base import SPOT_INTERRUPTED, Capability, CreateRequest, InvalidRequestError
from cloudherd.providers.gce import GceProvider
from cloudherd.state.repo import Store

ZONE = "us-central1-a"
PREEMPTED = "compute.instances.preempted"


def spec(fake: FakeGce, count: int = 3, market: str = "{type: spot}") -> str:
    entry = {"type": "gce", "project": fake.project, "zone": ZONE, "endpoint": fake.url, "anonymous": True,
             "poll_interval": 0.05, "reach": "tests.support.moto_reach:LocalStandIns"}
    return (f"name: bargain\nproviders:\n  gcp: {json.dumps(entry)}\n"
            f"groups:\n  web:\n    provider: gcp\n    count: {count}\n    market: {market}\n")


def provider(fake: FakeGce) -> GceProvider:
    return GceProvider("gcp", {"project": fake.project, "zone": ZONE, "endpoint": fake.url, "anonymous": True,
                               "poll_interval": 0.05})


def spot_request(count: int, **fields: Any) -> CreateRequest:
    return CreateRequest(count=count, image="debian-12", size="e2-small", tags={"cloudherd:infra": "spotty"},
                         ssh_user="deploy", ssh_public_key="", market="spot", **fields)


def bulk_inserts(fake: FakeGce) -> list[dict[str, Any]]:
    """The instanceProperties of every bulkInsert GCE received, in order."""
    return [r["body"]["instanceProperties"] for r in list(fake.requests) if r["call"] == "instances.bulkInsert"]


def one_pass(infra_id: str) -> None:
    report = asyncio.run(reconcile(Store(), infra_id, keeper=True))
    assert report.error is None, report.error


# -- a fleet on Spot VMs -------------------------------------------------------------------------------


def test_a_spot_group_is_made_of_spot_vms(home: Path, tmp_path: Path, fake: FakeGce) -> None:
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "p", spec(fake)))
    [props] = bulk_inserts(fake)  # one bulkInsert, all three VMs Spot, deleted when taken back
    assert props["scheduling"]["provisioningModel"] == "SPOT"
    assert props["scheduling"]["instanceTerminationAction"] == "DELETE"
    assert props["scheduling"]["automaticRestart"] is False and props["scheduling"]["onHostMaintenance"] == "TERMINATE"
    view = herd.status("bargain")
    assert len(view.live) == 3 and all(n.state == "ready" and n.market == "spot" for n in view.live)
    models = {name: item["scheduling"]["provisioningModel"] for (_, name), item in fake.instances.items()}
    assert models == {n.provider_id: "SPOT" for n in view.live}
    listed = asyncio.run(provider(fake).list({"cloudherd:infra": infra_id}))
    assert {i.id: i.extra["market"] for i in listed} == {n.provider_id: "spot" for n in view.live}
    assert cli("down", "bargain").returncode == 0
    assert fake.names() == []


def test_a_preempted_vm_is_told_and_only_its_node_replaced(home: Path, tmp_path: Path, fake: FakeGce) -> None:
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "p", spec(fake)))
    before = {n.name: n.provider_id for n in herd.status("bargain").live}
    victim = sorted(before)[1]
    preempted = fake.preempt(str(before[victim]))
    assert str(before[victim]) not in fake.names()  # GCE deleted it

    one_pass(infra_id)
    view = herd.status("bargain")
    assert len(view.live) == 3 and all(n.state == "ready" and n.market == "spot" for n in view.live)
    kept = {n.name: n.provider_id for n in view.live}
    assert {name: kept.get(name) for name in before if name != victim} == {
        name: pid for name, pid in before.items() if name != victim}
    [gone] = [n for n in view.nodes if n.provider_id == before[victim]]
    assert gone.state == "terminated" and (gone.reason or "").startswith(SPOT_INTERRUPTED), gone.reason
    assert PREEMPTED in (gone.reason or "") and preempted["insertTime"] in (gone.reason or "")
    [said] = [e for e in herd.events(infra_id) if e.kind == "interruption"]
    assert said.node and victim in said.message and SPOT_INTERRUPTED in said.message
    assert len(set(kept) - set(before)) == 1  # one replacement, a node of its own
    assert bulk_inserts(fake)[-1]["scheduling"]["provisioningModel"] == "SPOT"  # made Spot again
    assert sorted(fake.names()) == sorted(str(pid) for pid in kept.values())
    assert not [e for e in herd.events(infra_id) if e.kind == "market"]  # one interruption: still on spot
    assert cli("down", "bargain").returncode == 0


def test_a_zone_out_of_spot_capacity_falls_back_to_on_demand(home: Path, tmp_path: Path, fake: FakeGce) -> None:
    fake.spot_exhausted = True
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "p", spec(fake, count=2, market="{type: spot, fallback: on-demand}")))
    spot, on_demand = bulk_inserts(fake)  # Spot refused, then the same VMs on-demand
    assert spot["scheduling"]["provisioningModel"] == "SPOT" and "scheduling" not in on_demand
    ids = [r["query"]["requestId"] for r in fake.requests if r["call"] == "instances.bulkInsert"]
    assert len(set(ids)) == 2  # not GCE's answer to the refused request again
    view = herd.status("bargain")
    assert len(view.live) == 2 and all(n.state == "ready" and n.market == "on-demand" for n in view.live)
    models = sorted(item["scheduling"]["provisioningModel"] for item in fake.instances.values())
    assert models == ["STANDARD", "STANDARD"]
    [moved] = [e.message for e in herd.events(infra_id) if e.kind == "market"]
    assert "spot refused on gcp" in moved and "ZONE_RESOURCE_POOL_EXHAUSTED" in moved, moved
    shown = cli("status", "bargain").stdout
    assert "web: market: 2 on-demand; new nodes on-demand since " in shown, shown
    assert cli("down", "bargain").returncode == 0


# -- the driver ------------------------------------------------------------------------------------------


def test_ended_follows_the_pages_of_preemptions_and_tells_only_those(fake: FakeGce) -> None:
    p = provider(fake)
    assert p.supports(Capability.SPOT)
    made = asyncio.run(p.create(spot_request(5, names=[f"s-{n}" for n in range(5)])))
    ops = {i.id: fake.preempt(i.id) for i in made[:4]}  # more preemptions than fit a page of the fake
    asyncio.run(p.create(spot_request(1, names=["later"])))  # an operation of another kind in between
    told = asyncio.run(p.ended(["s-0", "s-3", "s-4", "never-made"]))
    assert told == {name: f"{SPOT_INTERRUPTED} ({PREEMPTED} at {ops[name]['insertTime']})" for name in ("s-0", "s-3")}
    lists = [r["query"] for r in fake.requests if r["call"] == "zoneOperations.list"]
    assert len(lists) > 1 and all(q["filter"] == f'operationType="{PREEMPTED}"' for q in lists)
    assert asyncio.run(p.ended([])) == {}


def test_a_vm_in_its_preemption_grace_is_no_longer_listed(fake: FakeGce) -> None:
    p = provider(fake)
    asyncio.run(p.create(spot_request(2, names=["keep", "going"])))
    fake.preempt("going", grace=True)  # GCE stops it, then deletes it: it is gone already
    assert [i.id for i in asyncio.run(p.list({"cloudherd:infra": "spotty"}))] == ["keep"]
    assert asyncio.run(p.ended(["going"]))["going"].startswith(SPOT_INTERRUPTED)
    asyncio.run(p.stop(["keep"]))  # a Spot VM the user stopped is listed, stopped
    assert [(i.id, i.state) for i in asyncio.run(p.list({"cloudherd:infra": "spotty"}))] == [("keep", "stopped")]


def test_a_preemptible_vm_reads_as_spot_and_on_demand_as_on_demand(fake: FakeGce) -> None:
    fake.add_instance("old-preemptible", {"cloudherd_infra": "mixed"}, scheduling={"preemptible": True})
    fake.add_instance("plain", {"cloudherd_infra": "mixed"})
    listed = asyncio.run(provider(fake).list({"cloudherd:infra": "mixed"}))
    assert {i.id: i.extra["market"] for i in listed} == {"old-preemptible": "spot", "plain": "on-demand"}


def test_a_maximum_price_is_refused_before_any_call(fake: FakeGce) -> None:
    with pytest.raises(InvalidRequestError, match="Spot VMs have no maximum price") as refused:
        asyncio.run(provider(fake).create(spot_request(1, max_price=0.01)))
    assert "max_price" in str(refused.value) and "\n" not in str(refused.value)
    assert fake.calls["instances.bulkInsert"] == 0
    on_demand = CreateRequest(count=1, image="debian-12", size="e2-small", tags={"cloudherd:infra": "x"},
                              ssh_user="deploy", ssh_public_key="", max_price=0.01)  # no spot: nothing to cap
    [made] = asyncio.run(provider(fake).create(on_demand))
    assert made.extra["market"] == "on-demand" and "scheduling" not in bulk_inserts(fake)[-1]
