"""``cloudherd sizes``, ``images`` and ``regions``: what a provider offers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from cloudherd.cli.common import AS_JSON, PROVIDER_TYPE, REGION, err, guard, local_herd, out, print_json

if TYPE_CHECKING:
    from pydantic import BaseModel


router = typer.Typer()


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

