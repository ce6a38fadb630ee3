"""``cloudherd sizes``, ``images`` and ``regions``: what a provider offers; ``cloudherd catalog prices`` and
``catalog refresh``: what its machines cost, and asking its cloud again (:mod:`cloudherd.api.price_catalog`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from cloudherd.cli.common import AS_JSON, PROVIDER_TYPE, REGION, err, guard, local_herd, out, print_json

if TYPE_CHECKING:
    from pydantic import BaseModel

    from cloudherd.api.price_catalog import Refreshed
    from cloudherd.providers.prices import PriceBook


router = typer.Typer()
catalog_app = typer.Typer(help="Prices: each provider's price book (a dated snapshot), and refreshing it from its "
                               "cloud.", no_args_is_help=True)
router.add_typer(catalog_app, name="catalog")
PRICED_PROVIDER = typer.Argument(..., help="Provider type (aws, gce, libcloud, local), or with --spec the name of one "
                                           "of its provider entries.")
SPEC = typer.Option(None, "--spec", help="A spec whose provider entry PROVIDER is (its settings: region, endpoints, "
                                         "credentials).")


def _table_of(rows: Sequence[BaseModel], kind: str) -> None:
    if not rows:
        err.print(f"no {kind} match")
        return
    data = [row.model_dump() for row in rows]
    table = Table(box=None, header_style="bold")
    for column in data[0]:
        table.add_column(column)
    for row in data:
        table.add_row(*[Text("*" if value else "", style="green") if column == "default" else str(value)
                        for column, value in row.items()])
    out.print(table)


@router.command()
def sizes(
    provider: str = PROVIDER_TYPE,
    pattern: str | None = typer.Argument(None, help="Regular expression the size name must contain."),
    region: str | None = REGION,
    as_json: bool = AS_JSON,
) -> None:
    """Machine sizes a provider offers (the default one marked)."""
    rows = guard(lambda: local_herd("sizes").sizes(provider, pattern, region=region))
    print_json(rows) if as_json else _table_of(rows, "sizes")


@router.command()
def images(
    provider: str = PROVIDER_TYPE,
    pattern: str | None = typer.Argument(None, help="Regular expression the image name must contain."),
    region: str | None = REGION,
    as_json: bool = AS_JSON,
) -> None:
    """Images a provider offers."""
    rows = guard(lambda: local_herd("images").images(provider, pattern, region=region))
    print_json(rows) if as_json else _table_of(rows, "images")


@router.command()
def regions(
    provider: str = PROVIDER_TYPE,
    pattern: str | None = typer.Argument(None, help="Text the region name must contain."),
    as_json: bool = AS_JSON,
) -> None:
    """Regions a provider offers."""
    names = guard(lambda: local_herd("regions").regions(provider, pattern))
    if as_json:
        print_json(names)
    elif not names:
        err.print("no regions match")
    else:
        for name in names:
            out.print(name)


@catalog_app.command()
def refresh(
    provider: str = PRICED_PROVIDER,
    region: list[str] = typer.Option([], "--region", help="A region to price besides the book's (repeatable)."),
    size: list[str] = typer.Option([], "--size", help="A size to price besides the book's (repeatable)."),
    spec: Path | None = SPEC,
    as_json: bool = AS_JSON,
) -> None:
    """Ask the cloud for today's prices of every region and size of the book in use, and keep them as your copy."""
    import asyncio

    from cloudherd.api.price_catalog import refresh_prices

    done = guard(lambda: asyncio.run(refresh_prices(provider, spec=spec, regions=region, sizes=size)))
    if as_json:
        _json({**done.book.as_dict(), "label": done.book.label(), "path": str(done.path) if done.book.regions else None,
               "missing": [{"region": r, "size": s} for r, s in done.missing]})
    else:
        _refreshed(done)


@catalog_app.command()
def prices(
    provider: str = PRICED_PROVIDER,
    region: str | None = typer.Option(None, "--region", help="Only this region."),
    size: str | None = typer.Option(None, "--size", help="Only sizes whose name this regular expression is found in."),
    spec: Path | None = SPEC,
    as_json: bool = AS_JSON,
) -> None:
    """The prices cloudherd reckons with (US dollars an hour), and the date of the book they come from."""
    from cloudherd.api.price_catalog import prices as book_of

    book = guard(lambda: book_of(provider, spec=spec, region=region, size=size))
    if as_json:
        _json({**book.as_dict(), "label": book.label(), "stale": book.stale()})
    else:
        _price_table(book)


def _json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _label(book: PriceBook) -> Text:
    return Text(book.label(), style="yellow" if book.stale() else "bold")


def _refreshed(done: Refreshed) -> None:
    book = done.book
    if not book.regions:
        out.print(Text.assemble(_label(book), ": nothing to refresh" if book.provider == "local" else ": no prices"))
        return
    count = sum(len(by_size) for by_size in book.regions.values())
    spot = sum(p.spot is not None for by_size in book.regions.values() for p in by_size.values())
    where = ", ".join(f"{region or '(no region)'} ({len(by_size)})" for region, by_size in sorted(book.regions.items()))
    out.print(Text.assemble(_label(book), f": {count} prices ({spot} with spot) in {len(book.regions)} "
                                          f"region{'s' if len(book.regions) != 1 else ''}: {where}"))
    out.print(Text(f"from {book.source}", style="dim"))
    out.print(f"kept in {done.path}")
    left: dict[str, list[str]] = {}
    for region, size in done.missing:
        left.setdefault(region, []).append(size)
    for region, sizes in sorted(left.items()):
        err.print(Text(f"not priced in {region} by the cloud (left out): {', '.join(sorted(sizes))}", style="yellow"))


def _usd(value: float) -> str:
    """Dollars to four decimals, or to six where the price has them (a spot price of a small size)."""
    whole, _, cents = f"{value:.6f}".rstrip("0").partition(".")
    return f"{whole}.{cents.ljust(4, '0')}"


def _price_table(book: PriceBook) -> None:
    from cloudherd.providers.prices import HOURS_A_MONTH

    out.print(_label(book))
    if book.source and book.provider != "local":
        out.print(Text(f"from {book.source}", style="dim"))
    if book.provider == "local":
        return
    if not book.regions:
        err.print("no prices match")
        return
    table = Table(box=None, header_style="bold")
    for column in ("region", "size", "default", "$/h", "spot $/h", "$/month"):
        table.add_column(column, justify="right" if "$" in column else "left")
    for region, by_size in sorted(book.regions.items()):
        for name, price in sorted(by_size.items(), key=lambda item: (item[1].hourly, item[0])):
            table.add_row(region or "-", name, Text("*" if name == book.default_size else "", style="green"),
                          _usd(price.hourly), "-" if price.spot is None else _usd(price.spot),
                          f"{price.hourly * HOURS_A_MONTH:.2f}")
    out.print(table)
