"""One way to name a node, on every face: the client's ``node``, ``logs(node=…)``, ``scale``'s victims, ``fault``,
the OGC calls' node lookup, a fleet command's ``--node`` and the API value's ``Infrastructure.node`` all find a
node by its name, id, provider id or an address (``Node.answers_to``, ``Store.resolve_node``), and refuse a ref
that several live nodes answer to alike. A real Store on SQLite in tmp_path, no provider, no SSH."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import recorded_infrastructure, spec_of

from cloudherd.api import SyncClient
from cloudherd.api.ogc import _resolve
from cloudherd.engine.fleet import Selector, select_nodes
from cloudherd.errors import NotFound, UsageError
from cloudherd.lifecycle import NodeState

SPEC = "name: named\ngroups:\n  app: {provider: local, count: 2}\n  db: {provider: local, count: 1}\n"
AMBIGUOUS = "names 2 nodes"  # what Store.resolve_node says of a ref two live nodes answer to


@pytest.fixture
def herd(home: Path, tmp_path: Path) -> Iterator[SyncClient]:
    with SyncClient(f"sqlite:///{tmp_path / 'state.db'}") as client:
        yield client


@pytest.fixture
def infra_id(herd: SyncClient, tmp_path: Path) -> str:
    """app-1 and app-2 live (one private address shared), app-3 terminated (its address now app-1's), db-1 live;
    one recorded action each."""
    store = herd.store
    infra = recorded_infrastructure(store, spec_of(tmp_path / "spec", SPEC))
    for name, count in (("app", 2), ("db", 1)):
        store.add_group(infra.id, name=name, provider="local", provider_type="local", count=count, config={})
    store.add_nodes(infra.id, [
        {"group_name": "app", "name": "named-app-1", "index": 1, "provider": "local", "provider_id": "m-1",
         "state": NodeState.READY, "address": "10.0.0.1", "private_address": "192.168.0.1", "port": 22},
        {"group_name": "app", "name": "named-app-2", "index": 2, "provider": "local", "provider_id": "m-2",
         "state": NodeState.READY, "address": "10.0.0.2", "private_address": "192.168.0.1", "port": 22},
        {"group_name": "app", "name": "named-app-3", "index": 3, "provider": "local", "provider_id": "m-3",
         "state": NodeState.TERMINATED, "address": "10.0.0.1", "port": 22},
        {"group_name": "db", "name": "named-db-1", "index": 1, "provider": "local", "provider_id": "m-4",
         "state": NodeState.READY, "address": "10.0.0.4", "private_address": "192.168.0.4", "port": 22},
    ])
    for node in store.nodes(infra.id):
        store.finish_action(store.start_action(infra.id, node.id, "script", f"{node.name}.sh"), 0, "", "")
    return infra.id


def _app1_refs(herd: SyncClient, infra_id: str) -> list[str]:
    app1 = next(n for n in herd.store.nodes(infra_id) if n.name == "named-app-1")
    return ["named-app-1", app1.id, "m-1", "10.0.0.1"]


def test_every_face_finds_the_same_node_by_each_of_its_names(herd: SyncClient, infra_id: str) -> None:
    refs = _app1_refs(herd, infra_id)
    app1_id = refs[1]
    view = herd.infrastructure(infra_id)
    infra_row = herd.store.infrastructure(infra_id)
    for ref in refs:
        assert herd.node(infra_id, ref).id == app1_id, ref
        assert [a.name for a in herd.logs(infra_id, node=ref)] == ["named-app-1.sh"], ref
        assert _resolve(herd.store, ref) == {infra_id: [app1_id]}, ref
        assert view.node(ref).id == app1_id, ref
        chosen = select_nodes(infra_row, herd.store.nodes(infra_id), Selector.of(node=ref))
        assert [n.id for n in chosen] == [app1_id], ref
    # scale takes all four names of the one victim (the request records its id)
    for ref in refs:
        request = herd.scale(infra_id, "app", "-1", victims=[ref], run_pass=False)
        assert request.target == 1
    victims = [herd.store.scale_request(i) for i in range(1, len(refs) + 1)]
    assert [v.victims["nodes"] for v in victims if v is not None] == [[app1_id]] * len(refs)
    # the private address names a node too, where it is its own
    assert herd.node(infra_id, "192.168.0.4").name == "named-db-1"
    assert view.node("192.168.0.4").name == "named-db-1"


def test_a_ref_two_live_nodes_answer_to_is_refused_alike(herd: SyncClient, infra_id: str) -> None:
    shared = "192.168.0.1"
    refusals = {
        "node": lambda: herd.node(infra_id, shared),
        "logs": lambda: herd.logs(infra_id, node=shared),
        "scale": lambda: herd.scale(infra_id, "app", "-1", victims=[shared], run_pass=False),
        "ogc": lambda: _resolve(herd.store, shared),
        "fault": lambda: herd.fault(shared, "crash", ref=infra_id),
        "view": lambda: herd.infrastructure(infra_id).node(shared),
    }
    for face, call in refusals.items():
        with pytest.raises(UsageError, match=AMBIGUOUS) as refused:
            call()
        assert "named-app-1" in str(refused.value) and "named-app-2" in str(refused.value), face
        assert not isinstance(refused.value, NotFound), face
    # a fleet command's --node is a filter: the shared address picks both
    chosen = select_nodes(herd.store.infrastructure(infra_id), herd.store.nodes(infra_id), Selector.of(node=shared))
    assert sorted(n.name for n in chosen) == ["named-app-1", "named-app-2"]


def test_a_terminated_node_is_found_for_its_logs_alone(herd: SyncClient, infra_id: str) -> None:
    # logs: a terminated node still has its logs; an address it shared with a live node means the live one
    assert [a.name for a in herd.logs(infra_id, node="m-3")] == ["named-app-3.sh"]
    assert [a.name for a in herd.logs(infra_id, node="10.0.0.1")] == ["named-app-1.sh"]
    with pytest.raises(NotFound, match="no live node named 'm-3'"):
        herd.node(infra_id, "m-3")
    with pytest.raises(KeyError):
        herd.infrastructure(infra_id).node("named-app-3")
    # the faces' own words for a ref nothing answers to stay as they were
    for call, message in (
        (lambda: herd.logs(infra_id, node="nosuch"), "no node 'nosuch' in named"),
        (lambda: herd.scale(infra_id, "app", "-1", victims=["m-3"], run_pass=False), "no live node 'm-3' in named"),
        (lambda: _resolve(herd.store, "nosuch"), "no infrastructure or live node 'nosuch'"),
        (lambda: herd.fault("nosuch", "crash"), "no live node 'nosuch'"),
        (lambda: select_nodes(herd.store.infrastructure(infra_id), herd.store.nodes(infra_id),
                              Selector.of(node="m-3")), "no live node 'm-3' in named"),
    ):
        with pytest.raises(UsageError, match=message):
            call()


def test_scale_victims_and_fault_peers_by_address(herd: SyncClient, infra_id: str) -> None:
    with pytest.raises(UsageError, match=re.escape("10.0.0.4 is in group db, not app")):
        herd.scale(infra_id, "app", "-1", victims=["10.0.0.4"], run_pass=False)
    with pytest.raises(UsageError, match=re.escape("no other live node '10.0.0.1' in named")):
        herd.fault("m-1", "partition", ref=infra_id, peer="10.0.0.1")  # itself, by its address
