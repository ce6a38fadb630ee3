"""How the clouds' price lists are read: which AWS product and spot price is the price, which Google SKUs make a
machine type's, and what a refresh asks for."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudherd.providers.aws.pricing import hourly_of, lowest_spot
from cloudherd.providers.base import Size
from cloudherd.providers.gce.pricing import price_of, rates_of
from cloudherd.providers.prices import price_book
from cloudherd.providers.pricing import missing, scope


def product(usd: str, operation: str = "RunInstances", unit: str = "Hrs") -> dict[str, object]:
    return {"product": {"attributes": {"operation": operation}},
            "terms": {"OnDemand": {"T": {"priceDimensions": {"D": {"unit": unit, "pricePerUnit": {"USD": usd}}}}}}}


def test_the_plain_linux_product_is_the_on_demand_price() -> None:
    assert hourly_of([product("0.5", "RunInstances:0010"), product("0.0104")]) == 0.0104  # not one with software
    assert hourly_of([product("0.0000000000"), product("0.02")]) == 0.02  # a 0 rate is no price
    assert hourly_of([product("0.3", "RunInstances:0002")]) == 0.3  # no plain one: the lowest there is
    assert hourly_of([product("0.1", unit="Quantity")]) is None
    assert hourly_of([]) is None


def test_spot_is_each_zones_latest_and_the_lowest_zone() -> None:
    def seen(size: str, zone: str, usd: str, hour: int, system: str = "Linux/UNIX") -> dict[str, str]:
        return {"InstanceType": size, "AvailabilityZone": zone, "SpotPrice": usd,
                "Timestamp": f"2026-12-06T{hour:02d}:00:00Z", "ProductDescription": system}

    history = [seen("t3.micro", "a", "0.0040", 10), seen("t3.micro", "a", "0.0031", 12),
               seen("t3.micro", "b", "0.0035", 11, "Linux/UNIX (Amazon VPC)"),
               seen("t3.micro", "b", "0.0010", 11, "Windows"), seen("m5.large", "b", "0.0400", 11)]
    assert lowest_spot(history) == {"t3.micro": 0.0031, "m5.large": 0.04}


def sku(description: str, region: str, unit: str, *tiers: tuple[int, int, int], usage: str = "OnDemand"
        ) -> dict[str, object]:
    return {"description": description, "serviceRegions": [region],
            "category": {"resourceFamily": "Compute", "usageType": usage},
            "pricingInfo": [{"pricingExpression": {"usageUnit": unit, "tieredRates": [
                {"startUsageAmount": start, "unitPrice": {"currencyCode": "USD", "units": str(units), "nanos": nanos}}
                for start, units, nanos in tiers]}}]}


def test_a_machine_types_price_is_its_vcpus_and_memory_at_its_familys_rates() -> None:
    rates = rates_of([
        sku("N1 Predefined Instance Core running in Virginia", "us-east4", "h", (0, 0, 0), (720, 0, 35_000_000)),
        sku("N1 Predefined Instance Ram running in Virginia", "us-east4", "GiBy.h", (0, 0, 4_000_000)),
        sku("Spot Preemptible N1 Predefined Instance Core running in Virginia", "us-east4", "h", (0, 0, 7_000_000),
            usage="Preemptible"),
        sku("Spot Preemptible N1 Predefined Instance Ram running in Virginia", "us-east4", "GiBy.h",
            (0, 0, 1_000_000), usage="Preemptible"),
        sku("Compute optimized Core running in Virginia", "us-east4", "h", (0, 0, 40_000_000)),
        sku("Compute optimized Ram running in Virginia", "us-east4", "GiBy.h", (0, 0, 5_000_000)),
        sku("N1 Predefined Instance Core running in Virginia", "us-east4", "GiBy.mo", (0, 9, 0)),  # not an hour
        sku("Custom Instance Core running in Virginia", "us-east4", "h", (0, 9, 0)),
    ])
    standard = Size("n1-standard-2", 2, 7680)
    # the free first tier is not the price
    assert price_of(standard, "us-east4", rates, spot=False) == pytest.approx(2 * 0.035 + 7.5 * 0.004)
    assert price_of(standard, "us-east4", rates, spot=True) == pytest.approx(2 * 0.007 + 7.5 * 0.001)
    c2 = Size("c2-standard-4", 4, 16384)
    assert price_of(c2, "us-east4", rates, spot=False) == pytest.approx(4 * 0.04 + 16 * 0.005)
    assert price_of(standard, "us-west1", rates, spot=False) is None
    assert price_of(Size("e2-standard-2", 2, 8192), "us-east4", rates, spot=False) is None
    assert price_of(Size("n1-micro-x", 1, 600, {"shared_cpu": True}), "us-east4", rates, spot=False) is None


def test_a_refresh_asks_for_the_books_regions_and_sizes_and_those_given(home: Path) -> None:
    shipped = price_book("aws")
    assert shipped is not None
    regions, sizes = scope("aws", ["ap-south-1", ""], ["c7i.large"])
    assert regions == sorted({*shipped.regions, "ap-south-1"})
    assert set(sizes) == {s for by_size in shipped.regions.values() for s in by_size} | {"c7i.large"}
    assert missing(shipped, ["eu-west-1"], ["t3.micro", "t2.micro"]) == [("eu-west-1", "t2.micro")]
    assert scope("libcloud", [], []) == ([], [])
