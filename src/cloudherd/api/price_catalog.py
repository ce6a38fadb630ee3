"""``catalog refresh`` and ``catalog prices``: a provider named as ``sizes`` names one (a type, configured from the
environment) or as an entry of a spec (``spec``: its settings, endpoints and credentials), its price book refreshed
from its cloud and kept as the user's copy (:func:`~cloudherd.providers.prices.save_book`).

Why a refresh fails as a usage error (exit 2) and saves nothing: it is asked for by hand, and a half-refreshed book
would carry today's date over prices it never asked for; the book in use stays as it was.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cloudherd.errors import UsageError
from cloudherd.providers.base import ProviderError
from cloudherd.providers.prices import PriceBook, price_book, save_book


@dataclass(frozen=True)
class Refreshed:
    """A refresh's result: the new book, where it is kept, and what was asked for that the cloud did not price."""

    book: PriceBook
    path: Path
    missing: tuple[tuple[str, str], ...] = ()


def resolve(provider: str, spec: str | os.PathLike[str] | None = None) -> tuple[str, str, dict[str, Any]]:
    """(name, type, settings) of ``provider``: an entry of ``spec`` by its name (or its type when one entry has it),
    else a provider type with no settings (as ``cloudherd sizes`` takes it)."""
    from cloudherd.spec.providers import PROVIDER_TYPES, WRAPPER_KEYS, unknown_type

    if spec is not None:
        from cloudherd.spec import load_spec

        entries = load_spec(spec).spec.providers
        config = entries.get(provider)
        if config is None:
            of_type = [name for name, c in entries.items() if c.type == provider]
            if len(of_type) != 1:
                names = ", ".join(sorted(entries)) or "none"
                raise UsageError(f"{spec}: no provider entry {provider!r} (its entries: {names})")
            provider, config = of_type[0], entries[of_type[0]]
        settings = {k: v for k, v in config.settings.items() if k not in WRAPPER_KEYS}
        return provider, config.type, settings
    if provider not in PROVIDER_TYPES:
        raise UsageError(unknown_type(provider) + "; or name an entry of a spec with --spec FILE")
    return provider, provider, {}


async def refresh_prices(provider: str, *, spec: str | os.PathLike[str] | None = None, regions: Sequence[str] = (),
                         sizes: Sequence[str] = ()) -> Refreshed:
    """Ask ``provider``'s cloud for its prices (every region and size of the book in use, and ``regions`` /
    ``sizes``), keep the new book as the user's copy; a cloud's refusal is a :class:`UsageError`, nothing saved."""
    from cloudherd.providers.prices import region_of
    from cloudherd.providers.pricing import missing, refresh, scope

    name, kind, settings = resolve(provider, spec)
    if kind == "libcloud" and spec is None:
        raise UsageError("a libcloud provider is a spec's entry (its driver and settings): "
                         "`cloudherd catalog refresh ENTRY --spec FILE`")
    settings = _checked(kind, name, settings)
    own = region_of(kind, settings)
    asked_regions, asked_sizes = scope(kind, [*regions, *([own] if own else [])], sizes)
    try:
        book = await refresh(kind, name, settings, regions, sizes)
    except ProviderError as exc:
        raise UsageError(f"{exc} (no prices were changed)") from None
    if kind == "local":
        return Refreshed(book, Path())
    if not book.regions:  # saved, an empty book would hide the one in use (it is newer)
        raise UsageError(f"{kind}: the cloud gave no price for any size asked for (no prices were changed)")
    gaps = missing(book, asked_regions, asked_sizes) if kind != "libcloud" else []
    return Refreshed(book, save_book(book), tuple(gaps))


def prices(provider: str, *, spec: str | os.PathLike[str] | None = None, region: str | None = None,
           size: str | None = None) -> PriceBook:
    """The book in use for ``provider``'s type (the newer of the shipped and the refreshed one), only ``region``'s
    and the sizes whose name ``size`` (a regular expression) is found in, when given."""
    _name, kind, _settings = resolve(provider, spec)
    book = price_book(kind)
    if book is None:
        how = f"{provider} --spec {spec}" if spec else "ENTRY --spec FILE" if kind == "libcloud" else provider
        raise UsageError(f"no price book for {kind} yet: `cloudherd catalog refresh {how}` makes one")
    try:
        pattern = re.compile(size, re.IGNORECASE) if size else None
    except re.error as exc:
        raise UsageError(f"--size {size!r} is not a regular expression: {exc}") from None
    kept = {r: {s: p for s, p in by_size.items() if pattern is None or pattern.search(s)}
            for r, by_size in book.regions.items() if region is None or r == region}
    return replace(book, regions={r: by_size for r, by_size in kept.items() if by_size})


def _checked(kind: str, name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings checked as ``make_provider`` checks them (an error names the entry)."""
    from cloudherd.spec.providers import SettingsError, check

    try:
        return check(kind, settings)
    except SettingsError as exc:
        raise UsageError(f"provider {name} ({kind}): {exc}") from None
