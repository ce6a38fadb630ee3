"""Which nodes a shrink gives up (engine/scale_in.py): each termination policy's order, ties broken by the next,
places before policies, named victims first, protected nodes passed over."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cloudherd.engine.scale_in import keep_order, shrink_choice

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@dataclass
class N:
    id: str
    index: int
    minutes_old: float = 0
    provider: str = "a"
    release: str | None = "r2"
    protected: bool = False

    @property
    def created_at(self) -> datetime:
        return NOW - timedelta(minutes=self.minutes_old)


def goes(nodes: list[N], count: int, *, places: tuple[str, ...] = ("a",), policies: tuple[str, ...] = ("newest",),
         victims: frozenset[str] = frozenset(), release: str | None = None) -> list[str]:
    ordered = keep_order(nodes, places=places, policies=policies, victims=victims, release=release, now=NOW)
    return [n.id for n in shrink_choice(ordered, count, victims)]


def fleet() -> list[N]:
    return [N("n1", 1, 200), N("n2", 2, 50, release="r1"), N("n3", 3, 118), N("n4", 4, 10)]


def test_each_policy_has_its_order() -> None:
    assert goes(fleet(), 3) == ["n4"]  # newest
    assert goes(fleet(), 3, policies=("oldest",)) == ["n1"]
    assert goes(fleet(), 3, policies=("oldest-release",), release="r2") == ["n2"]
    # 118 minutes old: 2 minutes left of its second billed hour, the fewest
    assert goes(fleet(), 3, policies=("closest-to-next-hour",)) == ["n3"]


def test_ties_fall_to_the_next_policy_then_to_the_newest() -> None:
    nodes = [N("n1", 1, release="r1"), N("n2", 2, release="r1"), N("n3", 3)]
    assert goes(nodes, 1, policies=("oldest-release",), release="r2") == ["n1", "n2"]
    assert goes(nodes, 2, policies=("oldest-release", "oldest"), release="r2") == ["n1"]
    assert goes(nodes, 2, policies=("oldest-release",), release="r2") == ["n2"]


def test_places_come_before_policies_and_victims_before_places() -> None:
    nodes = [N("n1", 1, provider="b"), N("n2", 2, provider="a"), N("n3", 3, provider="a")]
    assert goes(nodes, 2, places=("a", "b")) == ["n1"]  # the last place empties first
    assert goes(nodes, 2, places=("a", "b"), victims=frozenset({"n2"})) == ["n2"]


def test_protected_nodes_are_passed_over_unless_named() -> None:
    nodes = fleet()
    nodes[3].protected = True
    assert goes(nodes, 3) == ["n3"]  # the newest is protected: the next newest goes
    assert goes(nodes, 0) == ["n1", "n2", "n3"]  # the group stays above its size
    assert goes(nodes, 3, victims=frozenset({"n4"})) == ["n4"]  # a user's own request still takes it
