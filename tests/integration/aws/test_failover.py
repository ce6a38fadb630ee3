"""Placement across providers with fail-fast failover (AWS over moto answering InsufficientInstanceCapacity
through the fault injector, then the local provider), group policies, and the per-provider rate budget."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

from cloudherd.api import SyncClient
from cloudherd.errors import ApplyFailed
from cloudherd.providers.base import CapacityError, Instance, ThrottledError
from cloudherd.providers.budget import BudgetedProvider, TokenBucket
from cloudherd.providers.local import LocalProvider

pytest.importorskip("moto.server")
from moto_catalog import an_image
from moto_faults import FaultyMotoServer

AMI = an_image()  # an al2023 x86_64 image from moto's own catalog


def spec(folder: Path, count: int, places: str, policy: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cloudherd.yml"
    path.write_text(
        "name: spread\nproviders:\n"
        "  east: {type: aws, region: us-east-1, retries: 1, reach: \"tests.support.moto_reach:LocalStandIns\"}\n"
        f"groups:\n  web:\n    image: {AMI}\n    size: t3.micro\n    count: {count}\n{policy}"
        f"    placement:\n{places}"
    )
    return path


EAST_THEN_LOCAL = "      - {provider: east, max: 2}\n      - {provider: local}\n"


def where(herd: SyncClient, infra_id: str) -> dict[str, str]:
    return {n.name: n.provider for n in herd.infrastructure(infra_id).nodes if n.state == "ready"}


def test_placement_fills_places_in_order(home: Path, tmp_path: Path, moto_server: FaultyMotoServer) -> None:
    herd = SyncClient()
    infra_id = herd.up(spec(tmp_path / "s", 3, EAST_THEN_LOCAL))
    assert sorted(where(herd, infra_id).values()) == ["east", "east", "local"]
    assert len(moto_server.faults.calls_of("RunInstances")) == 1
    herd.down(infra_id)


def test_capacity_error_fails_over_at_once_and_cools_down(home: Path, tmp_path: Path,
                                                         moto_server: FaultyMotoServer) -> None:
    moto_server.faults.fail("RunInstances", "InsufficientInstanceCapacity")
    herd = SyncClient()
    path = spec(tmp_path / "s", 3, EAST_THEN_LOCAL)
    infra_id = herd.up(path)
    assert where(herd, infra_id) == {"spread-web-1": "local", "spread-web-2": "local", "spread-web-3": "local"}
    assert len(moto_server.faults.calls_of("RunInstances")) == 1  # one refusal, no retry: straight to the next place
    path.write_text(path.read_text().replace("count: 3", "count: 4"))
    herd.up(path)  # east is set aside for this group during its cooldown: not asked again
    assert len(moto_server.faults.calls_of("RunInstances")) == 1
    assert sorted(where(herd, infra_id).values()) == ["local"] * 4
    herd.down(infra_id)


def test_policies_when_no_place_has_room(home: Path, tmp_path: Path, moto_server: FaultyMotoServer) -> None:
    moto_server.faults.fail("RunInstances", "InsufficientInstanceCapacity")
    herd = SyncClient()
    only_east = "      - {provider: east}\n"
    with pytest.raises(ApplyFailed, match="no place had room for 2 node"):
        herd.up(spec(tmp_path / "a", 2, only_east))  # all_or_nothing (the default)
    with pytest.raises(ApplyFailed, match="at least 1"):
        herd.up(spec(tmp_path / "b", 2, only_east, "    policy: {min_count: 1}\n"))
    mixed = "      - {provider: local, max: 1}\n      - {provider: east}\n"
    infra_id = herd.up(spec(tmp_path / "c", 3, mixed, "    policy: {min_count: 1}\n"))
    assert where(herd, infra_id) == {"spread-web-5": "local"}  # 1-4 were tried by the failed runs: never reused
    herd.down(infra_id)
    assert not list((home / "local").glob("*/node.json"))


# -- the rate budget ---------------------------------------------------------------------------------


def test_token_bucket_paces_calls_beyond_the_burst() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(rate=4.0, burst=2, clock=lambda: now[0], sleep=sleep)

    async def take(n: int) -> list[float]:
        return [await bucket.acquire() for _ in range(n)]

    waits = asyncio.run(take(5))
    assert waits[:2] == [0.0, 0.0]  # the burst
    assert waits[2:] == pytest.approx([0.25, 0.25, 0.25])  # then one every 1/rate seconds
    now[0] += 10  # idle time refills up to the burst, not beyond
    assert asyncio.run(take(3)) == pytest.approx([0.0, 0.0, 0.25])


class ThrottlingLocal(LocalProvider):
    """The real local provider, answering the first ``throttle`` list calls with ThrottledError."""

    def __init__(self, root: Path, throttle: int, error: type[Exception] = ThrottledError) -> None:
        super().__init__("local", {"root": str(root)})
        self.throttle = throttle
        self.error = error
        self.attempts = 0
        self.active = 0
        self.peak = 0

    async def list(self, tags: Mapping[str, str]) -> list[Instance]:
        self.attempts += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(0)  # a yield while holding the slot: the others run up to the cap
            if self.attempts <= self.throttle:
                raise self.error("slow down")
            return await super().list(tags)
        finally:
            self.active -= 1


def test_budget_retries_throttling_but_not_capacity(tmp_path: Path) -> None:
    inner = ThrottlingLocal(tmp_path / "r", throttle=2)
    budget = BudgetedProvider(inner, {"retries": 3, "backoff": 0.001, "backoff_max": 0.01})
    assert asyncio.run(budget.list({})) == []
    assert inner.attempts == 3  # two throttled, the third answered
    refusing = ThrottlingLocal(tmp_path / "c", throttle=5, error=CapacityError)
    with pytest.raises(CapacityError):
        asyncio.run(BudgetedProvider(refusing, {"retries": 3, "backoff": 0.001}).list({}))
    assert refusing.attempts == 1
    giving_up = ThrottlingLocal(tmp_path / "g", throttle=99)
    with pytest.raises(ThrottledError, match="gave up after 2 attempts") as caught:
        asyncio.run(BudgetedProvider(giving_up, {"retries": 2, "backoff": 0.001}).list({}))
    assert giving_up.attempts == 2 == caught.value.attempts  # retries: attempts in all


def test_budget_caps_calls_in_flight(tmp_path: Path) -> None:
    inner = ThrottlingLocal(tmp_path / "f", throttle=0)
    budget = BudgetedProvider(inner, {"budget": {"in_flight": 3, "rate": 1000, "burst": 1000}})

    async def many() -> None:
        await asyncio.gather(*(budget.list({}) for _ in range(12)))

    asyncio.run(many())
    assert inner.attempts == 12 and inner.peak == 3
