"""Selectors of fleet commands (no sshd, no database): ``Selector.of`` from CLI-like values, and which
recorded nodes a selector picks — live and addressable only; groups, nodes and tags each an OR, ANDed."""

from __future__ import annotations

import pytest

from cloudherd.engine.fleet import Selector, parse_tags, select_nodes
from cloudherd.errors import UsageError
from cloudherd.state.models import Group, Infrastructure, Node


def node(group: str, index: int, state: str = "ready", address: str | None = "127.0.0.9") -> Node:
    return Node(id=f"id-{group}-{index}", name=f"f-{group}-{index}", group_name=group, index=index,
                provider="local", provider_id=f"p-{group}-{index}", state=state, address=address, port=22)


def fleet() -> tuple[Infrastructure, list[Node]]:
    infra = Infrastructure(id="infra1", name="f")
    infra.groups = [
        Group(name="web", provider="local", count=3, config={"tags": {"team": "web", "tier": "front"}}),
        Group(name="db", provider="local", count=2, config={"tags": {"team": "data", "tier": "back"}}),
        Group(name="cache", provider="local", count=1, config={}),
    ]
    nodes = [node("web", 1), node("web", 2, state="deploying"), node("web", 3, state="failed"),
             node("db", 1), node("db", 2, state="booting"), node("cache", 1)]
    return infra, nodes


def names(chosen: list[Node]) -> list[str]:
    return [n.name for n in chosen]


def test_of_takes_one_name_or_many_and_tags_as_mapping_or_pairs() -> None:
    assert Selector.of() == Selector()
    assert Selector.of(group="web", node="n1") == Selector(groups=("web",), nodes=("n1",))
    assert Selector.of(group=["web", "db"], node=("a", "b")) == Selector(groups=("web", "db"), nodes=("a", "b"))
    assert Selector.of(group="", node=[]).groups == () and Selector.of(node=[]).nodes == ()
    assert Selector.of(tags={"team": "web", "n": 3}).tags == {"team": "web", "n": "3"}  # values as strings
    assert Selector.of(tags=["team=web", " tier = front ", "empty="]).tags == {"team": "web", "tier": "front",
                                                                              "empty": ""}
    assert Selector.of(tags=["expr=a=b"]).tags == {"expr": "a=b"}  # split at the first '='


@pytest.mark.parametrize("bad", ["team", "=web", " =x"])
def test_a_tag_without_key_or_equals_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError, match="KEY=VALUE") as caught:
        parse_tags([bad])
    assert f"'{bad}'" in str(caught.value)  # names what was given


def test_no_selector_picks_every_live_addressable_node() -> None:
    infra, nodes = fleet()
    gone = [node("web", 4, state="pending", address=None), node("web", 5, state="terminated"),
            node("db", 3, state="dead"), node("db", 4, state="stopped"), node("cache", 2, address=None)]
    everyone = select_nodes(infra, [*nodes, *gone])
    assert names(everyone) == names(nodes)
    assert select_nodes(infra, nodes, Selector()) == everyone


def test_groups_are_ored() -> None:
    infra, nodes = fleet()
    assert names(select_nodes(infra, nodes, Selector.of(group="db"))) == ["f-db-1", "f-db-2"]
    assert names(select_nodes(infra, nodes, Selector.of(group=["cache", "db"]))) == ["f-db-1", "f-db-2", "f-cache-1"]


def test_an_unknown_group_is_a_usage_error_naming_the_known_ones() -> None:
    infra, nodes = fleet()
    with pytest.raises(UsageError, match="'api'") as caught:
        select_nodes(infra, nodes, Selector.of(group="api"))
    assert "cache, db, web" in str(caught.value)
    # a group that exists but has no live node is not an error: it picks nothing
    assert select_nodes(infra, [n for n in nodes if n.group_name != "cache"], Selector.of(group="cache")) == []


def test_nodes_by_name_id_or_provider_id() -> None:
    infra, nodes = fleet()
    chosen = select_nodes(infra, nodes, Selector.of(node=["f-web-1", "id-db-2", "p-cache-1"]))
    assert names(chosen) == ["f-web-1", "f-db-2", "f-cache-1"]


def test_a_node_that_is_not_live_is_a_usage_error() -> None:
    infra, nodes = fleet()
    with pytest.raises(UsageError, match="'f-web-9'"):
        select_nodes(infra, nodes, Selector.of(node="f-web-9"))
    dead = node("web", 4, state="dead")
    with pytest.raises(UsageError, match="'f-web-4'"):
        select_nodes(infra, [*nodes, dead], Selector.of(node="f-web-4"))
    # a node outside the chosen group is not live *for this selector*
    with pytest.raises(UsageError, match="'f-db-1'"):
        select_nodes(infra, nodes, Selector.of(group="web", node="f-db-1"))


def test_tags_come_from_the_group_and_must_all_match() -> None:
    infra, nodes = fleet()
    assert names(select_nodes(infra, nodes, Selector.of(tags=["team=web"]))) == ["f-web-1", "f-web-2", "f-web-3"]
    assert names(select_nodes(infra, nodes, Selector.of(tags={"team": "data", "tier": "back"}))) == ["f-db-1",
                                                                                                     "f-db-2"]
    assert select_nodes(infra, nodes, Selector.of(tags={"team": "data", "tier": "front"})) == []
    assert select_nodes(infra, nodes, Selector.of(tags={"team": "nobody"})) == []  # no match is no error


def test_group_node_and_tags_are_anded() -> None:
    infra, nodes = fleet()
    both = Selector.of(group=["web", "db"], node=["f-web-2", "f-db-1", "f-cache-1"], tags={"tier": "back"})
    with pytest.raises(UsageError, match="f-cache-1"):  # outside the groups
        select_nodes(infra, nodes, both)
    chosen = select_nodes(infra, nodes, Selector.of(group=["web", "db"], node=["f-web-2", "f-db-1"],
                                                    tags={"tier": "back"}))
    assert names(chosen) == ["f-db-1"]
