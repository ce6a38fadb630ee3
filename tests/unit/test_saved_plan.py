"""A saved plan is a contract: it round-trips through its file, carries the fingerprint of the state it was computed
from, and executing it refuses (a usage error, nothing done) once that state or the spec changed; executed
while they stand, it makes exactly what it said, and it cannot be executed twice.

The first tests use an in-memory Store (no provider is asked: the recorded nodes hold no machine); the last one
brings a real fleet up on local nodes."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
from helpers import recorded_infrastructure, spec_of

from cloudherd.engine.apply import execute
from cloudherd.engine.diff import Batch
from cloudherd.engine.plan import Plan, StalePlan, check_plan, load_plan, make_plan, prior_state, save_plan
from cloudherd.errors import UsageError
from cloudherd.spec import LoadedSpec
from cloudherd.state.repo import Store

SPEC = "name: sp\ngroups:\n  web:\n    count: {web}\n    scripts: [a.sh]\n  db:\n    count: 1\n"


def spec(tmp_path: Path, web: int = 2, script: str = "echo a\n") -> LoadedSpec:
    return spec_of(tmp_path, SPEC.format(web=web), {"a.sh": script})


def record(store: Store, loaded: LoadedSpec) -> str:
    """An infrastructure as ``up`` left it: its groups and two ready web nodes and a db node (no machines)."""
    infra = recorded_infrastructure(store, loaded)
    for position, (name, group) in enumerate(loaded.spec.groups.items()):
        store.add_group(infra.id, name=name, position=position, provider="local", provider_type="local",
                        image=group.image, size=group.size_name, count=group.count)
    store.add_nodes(infra.id, [
        {"group_name": g, "name": f"sp-{g}-{i}", "index": i, "provider": "local", "state": "ready",
         "address": f"127.0.0.{i}"}
        for g, count in (("web", 2), ("db", 1)) for i in range(1, count + 1)
    ])
    return infra.id


def test_a_plan_round_trips_through_its_file(tmp_path: Path, memory_store: Store) -> None:
    loaded = spec(tmp_path, web=3)
    record(memory_store, loaded)
    plan = asyncio.run(make_plan(loaded, memory_store))
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it names the fleet's nodes: its owner's alone
    again = load_plan(path)
    assert again.as_dict() == plan.as_dict()
    assert (again.prior, again.spec, again.totals()) == (plan.prior, plan.spec, plan.totals())
    web = next(g for g in again.groups if g.name == "web")
    assert (web.create, web.indices, web.reruns) == (1, [3], {"a.sh": ["sp-web-1", "sp-web-2", "sp-web-3"]})
    data = json.loads(path.read_text())
    assert data["totals"] == {"create": 1, "destroy": 0, "replace": 0, "script_runs": 3}


def test_the_fingerprint_follows_the_state_the_plan_depends_on(tmp_path: Path, memory_store: Store) -> None:
    loaded = spec(tmp_path)
    infra_id = record(memory_store, loaded)
    plan = asyncio.run(make_plan(loaded, memory_store))
    check_plan(plan, loaded, prior_state(memory_store, "sp"))  # nothing changed: it stands
    memory_store.add_event(infra_id, "info", "an event changes nothing the plan depends on")
    check_plan(plan, loaded, prior_state(memory_store, "sp"))

    web1 = next(n for n in memory_store.nodes(infra_id) if n.name == "sp-web-1")
    memory_store.update_node(web1.id, state="failed", reason="a script failed meanwhile")
    with pytest.raises(StalePlan, match="state of sp changed since the plan was computed"):
        check_plan(plan, loaded, prior_state(memory_store, "sp"))


def test_a_script_run_since_the_plan_makes_it_stale(tmp_path: Path, memory_store: Store) -> None:
    loaded = spec(tmp_path)
    infra_id = record(memory_store, loaded)
    plan = asyncio.run(make_plan(loaded, memory_store))
    web1 = next(n for n in memory_store.nodes(infra_id) if n.name == "sp-web-1")
    action = memory_store.start_action(infra_id, web1.id, "script", "a.sh", "0" * 64)
    memory_store.finish_action(action, 0, "", "")  # the plan's re-runs were worked out without this success
    with pytest.raises(StalePlan):
        check_plan(plan, loaded, prior_state(memory_store, "sp"))


def test_a_changed_spec_or_another_name_is_refused(tmp_path: Path, memory_store: Store) -> None:
    loaded = spec(tmp_path)
    record(memory_store, loaded)
    plan = asyncio.run(make_plan(loaded, memory_store))
    prior = prior_state(memory_store, "sp")
    with pytest.raises(StalePlan, match="spec of sp changed"):
        check_plan(plan, spec(tmp_path / "v2", web=5), prior)
    with pytest.raises(StalePlan, match="spec of sp changed"):
        check_plan(plan, spec(tmp_path / "v3", script="echo b\n"), prior)
    other = spec_of(tmp_path / "other", SPEC.format(web=2).replace("name: sp", "name: other"), {"a.sh": "echo a\n"})
    with pytest.raises(StalePlan, match="the plan is for sp"):
        check_plan(plan, other, prior)


def test_a_plan_for_a_new_infrastructure_is_stale_once_one_of_its_name_exists(tmp_path: Path,
                                                                             memory_store: Store) -> None:
    loaded = spec(tmp_path)
    plan = asyncio.run(make_plan(loaded, memory_store))
    assert plan.infrastructure_id is None and plan.prior is not None
    check_plan(plan, loaded, prior_state(memory_store, "sp"))
    record(memory_store, loaded)
    with pytest.raises(StalePlan):
        check_plan(plan, loaded, prior_state(memory_store, "sp"))


def test_executing_a_stale_plan_does_nothing(tmp_path: Path, memory_store: Store, home: Path) -> None:
    loaded = spec(tmp_path)
    infra_id = record(memory_store, loaded)
    plan = asyncio.run(make_plan(loaded, memory_store))
    memory_store.update_group(infra_id, "web", count=7)  # a scale request consumed meanwhile
    nodes, events = memory_store.nodes(infra_id), memory_store.events(infra_id)
    with pytest.raises(StalePlan) as refused:
        asyncio.run(execute(plan, loaded, memory_store, wait=0))
    assert refused.value.exit_code == 2 and "run plan again" in str(refused.value)
    assert [(n.id, n.state) for n in memory_store.nodes(infra_id)] == [(n.id, n.state) for n in nodes]
    assert len(memory_store.events(infra_id)) == len(events)
    assert memory_store.revisions(infra_id) == []


def test_plans_that_cannot_be_contracts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="only a plan computed by make_plan"):
        save_plan(Plan("sp", None, []), tmp_path / "p.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UsageError, match="not a cloudherd plan"):
        load_plan(tmp_path / "bad.json")
    (tmp_path / "old.json").write_text(json.dumps({"format": 0}))
    with pytest.raises(UsageError, match="not a cloudherd plan"):
        load_plan(tmp_path / "old.json")
    (tmp_path / "cut.json").write_text(json.dumps({"format": 1, "name": "sp"}))
    with pytest.raises(UsageError, match="damaged plan"):
        load_plan(tmp_path / "cut.json")
    with pytest.raises(UsageError, match="cannot read the plan"):
        load_plan(tmp_path / "missing.json")


def test_the_rollout_batches_are_part_of_the_plan(tmp_path: Path, memory_store: Store) -> None:
    """Nodes behind a rolling group's release are the plan's, batch by batch: by surge, or in place when the
    group allows nodes out (``max_unavailable``) and their shape is the group's."""
    loaded = spec(tmp_path)
    infra_id = record(memory_store, loaded)
    for node in memory_store.nodes(infra_id):
        memory_store.update_node(node.id, release="an older release", shape="an older shape")
    plan = asyncio.run(make_plan(loaded, memory_store))
    web = next(g for g in plan.groups if g.name == "web")
    ids = {n.name: n.id for n in memory_store.nodes(infra_id)}
    assert web.rolling == ["sp-web-1", "sp-web-2"]
    assert web.batches == [Batch(False, (ids["sp-web-1"],)), Batch(False, (ids["sp-web-2"],))]
    assert plan.held() == {ids["sp-web-1"], ids["sp-web-2"], ids["sp-db-1"]}
    assert load_plan_of(plan, tmp_path).batches("web") == web.batches


def load_plan_of(plan: Plan, tmp_path: Path) -> Plan:
    save_plan(plan, tmp_path / "saved.json")
    return load_plan(tmp_path / "saved.json")


@pytest.mark.scenario
def test_a_saved_plan_is_executed_once_as_it_said(home: Path, tmp_path: Path) -> None:
    from cloudherd.api import SyncClient

    herd = SyncClient()
    store = herd.aio.store
    first = spec(tmp_path / "v1", web=1, script="echo {{ node.name }} > me.txt\n")
    plan = asyncio.run(make_plan(first, store))
    save_plan(plan, tmp_path / "v1.plan")
    infra_id = asyncio.run(execute(load_plan(tmp_path / "v1.plan"), first, store))
    live = sorted(n.name for n in store.nodes(infra_id) if n.state == "ready")
    assert live == ["sp-db-1", "sp-web-1"]
    with pytest.raises(StalePlan):  # the same plan again: the state it was computed from is gone
        asyncio.run(execute(load_plan(tmp_path / "v1.plan"), first, store))

    grown = spec(tmp_path / "v1", web=2, script="echo {{ node.name }} > me.txt\n")
    plan = asyncio.run(make_plan(grown, store))
    web = next(g for g in plan.groups if g.name == "web")
    assert (web.create, web.reruns) == (1, {"a.sh": ["sp-web-2"]})
    save_plan(plan, tmp_path / "v2.plan")
    assert asyncio.run(execute(load_plan(tmp_path / "v2.plan"), grown, store)) == infra_id
    live = sorted(n.name for n in store.nodes(infra_id) if n.state == "ready")
    assert live == ["sp-db-1", "sp-web-1", "sp-web-2"]
    assert asyncio.run(make_plan(grown, store)).changes is False
    herd.close()
