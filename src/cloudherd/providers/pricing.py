"""The refreshing side of :mod:`cloudherd.providers.prices`: which prices a refresh asks for, and the cloud's own
pricing module that asks (``<type>/pricing.py``, imported only when asked, like its driver).

Why one scope rule for every cloud: a refresh must not lose a price the user had.  It asks for every region and
size of the book in use (shipped or refreshed) and for those given, so a refreshed book covers at least what the
snapshot did; what the cloud no longer prices is left out, and said (:func:`missing`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from cloudherd.providers.base import UnknownProviderError
from cloudherd.providers.prices import FREE, PriceBook, price_book, region_of

PRICED = ("aws", "gce", "libcloud")  # the types with a pricing module


def scope(provider_type: str, regions: Iterable[str], sizes: Iterable[str]) -> tuple[list[str], list[str]]:
    """The regions and sizes a refresh asks for: the current book's and ``regions`` / ``sizes``, sorted."""
    book = price_book(provider_type)
    known_regions = set(book.regions) if book is not None else set()
    known_sizes = {size for by_size in (book.regions.values() if book is not None else ()) for size in by_size}
    return (sorted(known_regions | {r for r in regions if r}), sorted(known_sizes | {s for s in sizes if s}))


def missing(book: PriceBook, regions: Iterable[str], sizes: Iterable[str]) -> list[tuple[str, str]]:
    """The (region, size) pairs asked for that ``book`` has no price of."""
    return [(r, s) for r in regions for s in sizes if s not in book.regions.get(r, {})]


async def refresh(provider_type: str, name: str, settings: Mapping[str, Any], regions: Iterable[str] = (),
                  sizes: Iterable[str] = ()) -> PriceBook:
    """A new book of ``provider_type`` from its cloud, through the provider entry ``name``'s ``settings``
    (its own region is asked for too).  ``local`` is free: nothing to ask."""
    if provider_type in FREE:
        return PriceBook(provider_type, date.today(), "free")
    if provider_type not in PRICED:
        from cloudherd.spec.providers import unknown_type

        raise UnknownProviderError(unknown_type(provider_type))
    own = region_of(provider_type, settings)
    module = importlib.import_module(f"cloudherd.providers.{provider_type}.pricing")
    book: PriceBook = await module.refresh(settings, [*regions, *([own] if own else [])], list(sizes), name=name)
    return book
