"""One way to find a node: by its name, id, machine id or an address, live nodes only, one answer or a clear
error (never the first of several)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import recorded_infrastructure, spec_of

from cloudherd.errors import NotFound, UsageError
from cloudherd.lifecycle import NodeState
from cloudherd.state.repo import Store

SPEC = "name: web\ngroups:\n  app: {provider: local, count: 2}\n"


def _fleet(store: Store, tmp_path: Path, name: str = "web") -> str:
    infra = recorded_infrastructure(store, spec_of(tmp_path / name, SPEC.replace("web", name)))
    store.add_nodes(infra.id, [
        {"group_name": "app", "name": f"{name}-app-1", "index": 1, "provider": "local", "provider_id": f"m-{name}1",
         "state": NodeState.READY, "address": f"10.0.0.{len(name)}", "private_address": "192.168.0.1"},
        {"group_name": "app", "name": f"{name}-app-2", "index": 2, "provider": "local", "provider_id": f"m-{name}2",
         "state": NodeState.TERMINATED, "address": "10.0.0.9"},
    ])
    return infra.id


def test_a_node_answers_to_each_of_its_names(memory_store: Store, tmp_path: Path) -> None:
    infra_id = _fleet(memory_store, tmp_path)
    node = memory_store.resolve_node("web-app-1", infrastructure_id=infra_id)
    for ref in (node.id, "m-web1", "10.0.0.3", "192.168.0.1"):
        assert memory_store.resolve_node(ref, infrastructure_id=infra_id).id == node.id
    assert memory_store.resolve_node("m-web1").id == node.id  # in any active infrastructure


def test_a_terminated_node_or_an_unknown_name_is_not_found(memory_store: Store, tmp_path: Path) -> None:
    infra_id = _fleet(memory_store, tmp_path)
    for ref in ("web-app-2", "10.0.0.9", "nothing"):
        with pytest.raises(NotFound, match=repr(ref)):
            memory_store.resolve_node(ref, infrastructure_id=infra_id)


def test_a_name_several_nodes_answer_to_is_refused(memory_store: Store, tmp_path: Path) -> None:
    _fleet(memory_store, tmp_path, "web")
    _fleet(memory_store, tmp_path, "api")
    with pytest.raises(UsageError, match="names 2 nodes"):
        memory_store.resolve_node("192.168.0.1")
