"""``cloudherd init``, ``validate``, ``convert`` and ``import``: the spec files and this machine's set-up."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cloudherd.cli.common import AUTH_DATA, FORMAT, guard, herd, local_herd, out, warn

router = typer.Typer()


@router.command()
def init() -> None:
    """Make the state database, your user and your SSH key pair (done on first use anyway)."""
    info = guard(lambda: local_herd("init").init())
    out.print(f"user      {info.user}")
    out.print(f"ssh key   {info.key}")
    out.print(f"database  {info.database}")
    out.print(f"data      {info.data}")


@router.command()
def validate(spec: list[Path] = typer.Argument(..., help="The spec file (YAML): native, OGC or Occopus; several "
                                                       "OGC files merge left to right."),
             format: str | None = FORMAT, auth_data: Path | None = AUTH_DATA) -> None:
    """Check a spec without touching anything; exit 2 with FILE:LINE: path: message when it is wrong."""
    summary = guard(lambda: herd().validate(spec, format=format))
    warn(summary.warnings)
    counts = ", ".join(f"{name} x{count}" for name, count in summary.groups.items())
    out.print(f"{' + '.join(str(p) for p in spec)}: ok ({summary.name}: {counts})")


@router.command()
def convert(spec: list[Path] = typer.Argument(..., help="An OGC layout file (or several, merged left to right) "
                                                        "or an Occopus description."),
            format: str | None = FORMAT, auth_data: Path | None = AUTH_DATA) -> None:
    """Print the native spec a foreign file means (what `up` of it does)."""
    sys.stdout.write(guard(lambda: local_herd(None).convert(spec if len(spec) > 1 else spec[0], format=format)))


@router.command("import")
def import_(path: Path = typer.Argument(..., help="An Occopus node definition file ('node_def:<type>' entries)."),
            auth_data: Path | None = AUTH_DATA) -> None:
    """Store Occopus node definitions; Occopus descriptions naming their types then come up (occopus-import)."""
    types = guard(lambda: local_herd("import").import_node_defs(path))
    out.print(f"imported {len(types)} node definition(s): {', '.join(types)}")

