"""A libcloud cloud's prices, for ``cloudherd catalog refresh libcloud``: the ``price`` its driver gives each size
in ``list_sizes()`` (libcloud's: USD an hour), where it gives one.

Why only the entry's own region: a libcloud driver sees one account in one region (its ``region`` or
``location`` setting), so the book a refresh makes holds that region's sizes, every size with a price; sizes
without one (many drivers have none) are left out.  No spot prices: libcloud publishes none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from cloudherd.providers.libcloud.driver import LibcloudProvider
from cloudherd.providers.prices import Price, PriceBook, region_of


async def refresh(settings: Mapping[str, Any], regions: Iterable[str], sizes: Iterable[str], *,
                  name: str = "libcloud") -> PriceBook:
    """A book of the driver's priced sizes in the entry's region (``regions`` / ``sizes`` beyond its own: the
    driver cannot see them)."""
    api = LibcloudProvider(name, settings)
    try:
        listed = await api.sizes()
        default = await api.default_size()
    finally:
        await api.close()
    priced: dict[str, Price] = {}
    for size in listed:
        try:
            hourly = float(size.extra.get("price") or 0)
        except (TypeError, ValueError):
            continue
        if hourly > 0:
            priced[size.name] = Price(round(hourly, 6))
    region = region_of("libcloud", settings) or ""
    return PriceBook("libcloud", date.today(), f"libcloud driver {api.driver_name}: list_sizes() prices",
                     {region: priced} if priced else {}, default)
