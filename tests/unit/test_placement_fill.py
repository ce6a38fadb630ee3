"""Placement and failover without sshd or a cloud: a group's pending nodes fill its places in order up to each
``max`` (nodes already there take room), a place that answers with a capacity or quota error is set aside for
that group for the cooldown and the rest move on at once, and the policy decides when no place has room.

The engine's placement step takes the create call as a function (``make(place, rows)``); here that function
is a cloud whose places are full or not, and the state is a real in-memory Store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import recorded_infrastructure, spec_of

from cloudherd.engine.converge import _place, cooling
from cloudherd.errors import ApplyFailed, CloudherdError
from cloudherd.providers.base import CapacityError, QuotaError
from cloudherd.spec import LoadedSpec
from cloudherd.state.models import Event, Infrastructure, Node
from cloudherd.state.repo import Store

SPEC = """name: pp
providers:
  east: {{type: local}}
  west: {{type: local}}
  gcp: {{type: local}}
groups:
  web:
    count: {count}
    placement:
      - {{provider: east, max: 2}}
      - {{provider: west, max: 1}}
      - {{provider: gcp{gcp_max}}}
    policy: {policy}
  api:
    count: 1
    placement: [{{provider: east}}, {{provider: west}}]
"""


class Cloud:
    """The create call of the places: records each call; a full place raises what its cloud would."""

    def __init__(self, store: Store, full: dict[str, type[Exception]] | None = None) -> None:
        self.store = store
        self.full = dict(full or {})
        self.calls: list[tuple[str, list[str], set[str]]] = []  # place, node names, providers the rows say

    async def make(self, place: str, batch: Sequence[Node]) -> None:
        self.calls.append((place, [n.name for n in batch], {n.provider for n in batch}))
        if place in self.full:
            raise self.full[place](f"{place} is full")
        for row in batch:
            self.store.update_node(row.id, state="booting", provider_id=f"{place}-{row.name}")


def setup(tmp_path: Path, store: Store, count: int, policy: str = "all_or_nothing", gcp_max: int | None = None,
          existing: Sequence[tuple[str, str]] = ()) -> tuple[Infrastructure, LoadedSpec]:
    """The infrastructure with ``existing`` (provider, state) nodes of group web first, then pending rows for
    the rest of ``count``."""
    loaded = spec_of(tmp_path, SPEC.format(count=count, policy=policy,
                                           gcp_max="" if gcp_max is None else f", max: {gcp_max}"))
    infra = recorded_infrastructure(store, loaded, state="creating")
    store.add_nodes(infra.id, [
        {"group_name": "web", "name": f"pp-web-{i}", "index": i, "provider": provider, "state": state}
        for i, (provider, state) in enumerate(existing, 1)
    ])
    store.add_nodes(infra.id, [
        {"group_name": "web", "name": f"pp-web-{i}", "index": i, "provider": "east"}
        for i in range(len(existing) + 1, count + 1)
    ])
    return infra, loaded


def place(store: Store, infra: Infrastructure, loaded: LoadedSpec, cloud: Cloud, group: str = "web") -> None:
    nodes = store.nodes(infra.id)
    rows = [n for n in nodes if n.group_name == group and n.state == "pending"]
    asyncio.run(_place(store, infra, group, loaded.group(group), rows, nodes, cloud.make, None))


def providers_of(store: Store, infra: Infrastructure) -> dict[str, tuple[str, str]]:
    return {n.name: (n.provider, n.state) for n in store.nodes(infra.id)}


def test_places_fill_in_order_up_to_each_max(tmp_path: Path, memory_store: Store) -> None:
    infra, loaded = setup(tmp_path, memory_store, count=6)
    cloud = Cloud(memory_store)
    place(memory_store, infra, loaded, cloud)
    assert [(p, names) for p, names, _ in cloud.calls] == [
        ("east", ["pp-web-1", "pp-web-2"]), ("west", ["pp-web-3"]), ("gcp", ["pp-web-4", "pp-web-5", "pp-web-6"]),
    ]
    assert all(said == {p} for p, _, said in cloud.calls)  # each row names its place before the call
    assert [p for p, _ in providers_of(memory_store, infra).values()] == ["east"] * 2 + ["west"] + ["gcp"] * 3


def test_a_place_that_is_not_needed_is_not_called(tmp_path: Path, memory_store: Store) -> None:
    infra, loaded = setup(tmp_path, memory_store, count=2)
    cloud = Cloud(memory_store)
    place(memory_store, infra, loaded, cloud)
    assert [p for p, _, _ in cloud.calls] == ["east"]


def test_nodes_already_in_a_place_take_its_room(tmp_path: Path, memory_store: Store) -> None:
    # one live node on east (room left: 1); a pending and a dead one there take no room
    existing = [("east", "ready"), ("east", "dead"), ("west", "terminated")]
    infra, loaded = setup(tmp_path, memory_store, count=6, existing=existing)
    cloud = Cloud(memory_store)
    place(memory_store, infra, loaded, cloud)
    assert [(p, names) for p, names, _ in cloud.calls] == [
        ("east", ["pp-web-4"]), ("west", ["pp-web-5"]), ("gcp", ["pp-web-6"]),
    ]


def test_a_full_place_when_its_max_is_reached_is_skipped(tmp_path: Path, memory_store: Store) -> None:
    existing = [("east", "ready"), ("east", "booting")]
    infra, loaded = setup(tmp_path, memory_store, count=3, existing=existing)
    cloud = Cloud(memory_store)
    place(memory_store, infra, loaded, cloud)
    assert [(p, names) for p, names, _ in cloud.calls] == [("west", ["pp-web-3"])]


@pytest.mark.parametrize("error", [CapacityError, QuotaError])
def test_no_room_fails_over_to_the_next_place_at_once(tmp_path: Path, memory_store: Store,
                                                      error: type[Exception]) -> None:
    infra, loaded = setup(tmp_path, memory_store, count=4)
    cloud = Cloud(memory_store, full={"east": error})
    place(memory_store, infra, loaded, cloud)
    assert [(p, names) for p, names, _ in cloud.calls] == [
        ("east", ["pp-web-1", "pp-web-2"]), ("west", ["pp-web-1"]), ("gcp", ["pp-web-2", "pp-web-3", "pp-web-4"]),
    ]
    assert providers_of(memory_store, infra) == {
        "pp-web-1": ("west", "booting"), "pp-web-2": ("gcp", "booting"), "pp-web-3": ("gcp", "booting"),
        "pp-web-4": ("gcp", "booting"),
    }
    (cooldown,) = [e for e in memory_store.events(infra.id) if e.kind == "cooldown"]
    assert cooldown.message.startswith(f"web:east:{error.__name__}")
    assert cooling(memory_store, infra.id, "web") == {"east": error.__name__}


def test_a_place_without_room_is_set_aside_for_that_group_only(tmp_path: Path, memory_store: Store) -> None:
    infra, loaded = setup(tmp_path, memory_store, count=3)
    place(memory_store, infra, loaded, Cloud(memory_store, full={"east": CapacityError}))
    # more web nodes later: east is not asked again, even though it has room now
    memory_store.add_nodes(infra.id, [{"group_name": "web", "name": "pp-web-9", "index": 9, "provider": "east"}])
    again = Cloud(memory_store)
    place(memory_store, infra, loaded, again)
    assert [p for p, _, _ in again.calls] == ["gcp"]
    # another group of the same infrastructure still tries east first
    memory_store.add_nodes(infra.id, [{"group_name": "api", "name": "pp-api-1", "index": 1, "provider": "east"}])
    other = Cloud(memory_store)
    place(memory_store, infra, loaded, other, group="api")
    assert [p for p, _, _ in other.calls] == ["east"]
    assert cooling(memory_store, infra.id, "api") == {}


def test_the_cooldown_ends(tmp_path: Path, memory_store: Store) -> None:
    infra, loaded = setup(tmp_path, memory_store, count=1)
    with memory_store.session() as s, s.begin():
        s.add_all([
            Event(infrastructure_id=infra.id, kind="cooldown", message="web:east:CapacityError: full",
                  at=datetime.now(UTC) - timedelta(minutes=11)),
            Event(infrastructure_id=infra.id, kind="cooldown", message="web:west:QuotaError: quota",
                  at=datetime.now(UTC) - timedelta(minutes=9)),
        ])
    assert cooling(memory_store, infra.id, "web") == {"west": "QuotaError"}
    cloud = Cloud(memory_store)
    place(memory_store, infra, loaded, cloud)
    assert [p for p, _, _ in cloud.calls] == ["east"]


def test_other_errors_do_not_fail_over(tmp_path: Path, memory_store: Store) -> None:
    infra, loaded = setup(tmp_path, memory_store, count=3)
    cloud = Cloud(memory_store, full={"east": CloudherdError})
    with pytest.raises(CloudherdError, match="east is full"):
        place(memory_store, infra, loaded, cloud)
    assert [p for p, _, _ in cloud.calls] == ["east"]
    assert cooling(memory_store, infra.id, "web") == {}


FULL = {"east": CapacityError, "west": QuotaError, "gcp": CapacityError}


def test_all_or_nothing_fails_when_a_node_finds_no_place(tmp_path: Path, memory_store: Store) -> None:
    infra, loaded = setup(tmp_path, memory_store, count=4, gcp_max=1)
    cloud = Cloud(memory_store, full={"gcp": CapacityError})
    with pytest.raises(ApplyFailed, match="no place had room for 1 node"):
        place(memory_store, infra, loaded, cloud)
    assert [p for p, _, _ in cloud.calls] == ["east", "west", "gcp"]


def test_best_effort_keeps_what_was_made(tmp_path: Path, memory_store: Store) -> None:
    infra, loaded = setup(tmp_path, memory_store, count=4, policy="best_effort")
    place(memory_store, infra, loaded, Cloud(memory_store, full={"west": QuotaError, "gcp": CapacityError}))
    states = providers_of(memory_store, infra)
    assert [s for _, s in states.values()] == ["booting", "booting", "terminated", "terminated"]
    assert {n.reason for n in memory_store.nodes(infra.id) if n.state == "terminated"} == {
        "no place had room (best effort)"}


def test_best_effort_with_no_room_anywhere_is_no_error(tmp_path: Path, memory_store: Store) -> None:
    infra, loaded = setup(tmp_path, memory_store, count=1, policy="best_effort")
    place(memory_store, infra, loaded, Cloud(memory_store, full=FULL))
    assert [s for _, s in providers_of(memory_store, infra).values()] == ["terminated"]


@pytest.mark.parametrize(("existing", "kept"), [((), False), ((("gcp", "ready"),), True)])
def test_min_count_counts_nodes_already_there(tmp_path: Path, memory_store: Store, existing: tuple,
                                              kept: bool) -> None:
    # east makes 2 of the 4 wanted, the rest find no room: kept only when a node already there makes it 3
    infra, loaded = setup(tmp_path, memory_store, count=4 + len(existing), policy="{min_count: 3}",
                          existing=existing)
    cloud = Cloud(memory_store, full={"west": QuotaError, "gcp": CapacityError})
    if kept:
        place(memory_store, infra, loaded, cloud)
        assert sorted(s for _, s in providers_of(memory_store, infra).values()) == [
            "booting", "booting", "ready", "terminated", "terminated"]
    else:
        with pytest.raises(ApplyFailed, match="at least 3"):
            place(memory_store, infra, loaded, cloud)
