"""What a machine costs: a price book per provider type, by region and size, in US dollars an hour.

Why a dated book and not a live lookup: a plan, a status or a cost report must not wait on a pricing API (nor
fail without credentials), and its numbers must say how old they are.  Each cloud's book is shipped as a
snapshot (``<provider>/prices.json`` beside its driver) and replaced by ``cloudherd catalog refresh PROVIDER``,
which writes the user's own copy in the data folder; the newer of the two is used.  Its date is shown wherever
a price is, and a book older than :data:`STALE_DAYS` says so.  ``local`` costs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

STALE_DAYS = 90  # a book older than this is shown as stale
FREE = ("local",)  # provider types whose machines cost nothing
HOURS_A_MONTH = 730.0  # AWS's and Google's monthly reckoning of an hourly price


@dataclass(frozen=True)
class Price:
    """One size in one region: on-demand, and spot where the cloud publishes it (None: unknown)."""

    hourly: float
    spot: float | None = None


@dataclass(frozen=True)
class PriceBook:
    """A provider type's prices: region → size → :class:`Price`, taken on ``taken`` from ``source``."""

    provider: str
    taken: date
    source: str
    regions: Mapping[str, Mapping[str, Price]] = field(default_factory=dict)
    default_size: str | None = None  # what cloudherd makes when a group names no size

    def price(self, region: str | None, size: str | None) -> Price | None:
        """The price of ``size`` (None: the provider's default size) in ``region``; ``local`` is free."""
        if self.provider in FREE:
            return Price(0.0, 0.0)
        return self.regions.get(region or "", {}).get(size or self.default_size or "")

    def age_days(self, today: date | None = None) -> int:
        return ((today or date.today()) - self.taken).days

    def stale(self, today: date | None = None) -> bool:
        return self.provider not in FREE and self.age_days(today) > STALE_DAYS

    def label(self, today: date | None = None) -> str:
        """How the book is named beside a price: its date, and its staleness when it is stale."""
        if self.provider in FREE:
            return f"{self.provider}: free"
        words = f"{self.provider} prices of {self.taken.isoformat()}"
        if self.stale(today):
            words += (f" (stale: {self.age_days(today)} days old, over {STALE_DAYS}; "
                      f"`cloudherd catalog refresh {self.provider}`)")
        return words

    def as_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "taken": self.taken.isoformat(), "source": self.source,
                "currency": "USD", "default_size": self.default_size,
                "regions": {region: {size: {"hourly": p.hourly, **({"spot": p.spot} if p.spot is not None else {})}
                                     for size, p in sorted(sizes.items())}
                            for region, sizes in sorted(self.regions.items())}}


def book_of(data: Mapping[str, Any]) -> PriceBook:
    """A book from its JSON form (``as_dict``'s)."""
    regions = {str(region): {str(size): Price(float(p["hourly"]), None if p.get("spot") is None else float(p["spot"]))
                             for size, p in sizes.items()}
               for region, sizes in (data.get("regions") or {}).items()}
    return PriceBook(str(data["provider"]), date.fromisoformat(str(data["taken"])), str(data.get("source") or ""),
                     regions, data.get("default_size"))


def shipped_path(provider_type: str) -> Path:
    return Path(__file__).parent / provider_type / "prices.json"


def refreshed_path(provider_type: str) -> Path:
    from cloudherd.paths import data_dir, private_dir

    return private_dir(data_dir() / "prices") / f"{provider_type}.json"


def price_book(provider_type: str) -> PriceBook | None:
    """The newer of the shipped snapshot and the user's refreshed copy (None: no prices for this provider)."""
    if provider_type in FREE:
        return PriceBook(provider_type, date.today(), "free")
    books = []
    for mine, path in enumerate((shipped_path(provider_type), refreshed_path(provider_type))):
        if path.is_file():
            books.append((book_of(json.loads(path.read_text())), mine))
    # the newer, and of two of the same day the user's own (a refresh taken the day the snapshot was)
    return max(books, key=lambda pair: (pair[0].taken, pair[1]))[0] if books else None


def save_book(book: PriceBook) -> Path:
    """Keep a refreshed book as the user's copy; returns where."""
    from cloudherd.paths import create_private

    path = refreshed_path(book.provider)
    create_private(path)
    path.write_text(json.dumps(book.as_dict(), indent=1) + "\n")
    return path


def region_of(provider_type: str, settings: Mapping[str, Any]) -> str | None:
    """The region a provider entry's machines are priced in: AWS's region, GCE's zone's region, or a ``region``
    setting of libcloud's."""
    import os

    if provider_type == "aws":
        return str(settings.get("region") or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
                   or "us-east-1")
    if provider_type == "gce":
        zone = str(settings.get("zone") or os.environ.get("GOOGLE_DATACENTER") or "")
        return zone.rsplit("-", 1)[0] if zone.count("-") >= 2 else zone or None
    region = settings.get("region") or settings.get("location")
    return str(region) if region else None
