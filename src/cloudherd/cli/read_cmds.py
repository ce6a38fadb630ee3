"""``cloudherd ls``, ``status``, ``logs``, ``history`` and ``events``: what is there and what happened."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from cloudherd.cli.common import AS_JSON, REF, err, guard, herd, out, print_json
from cloudherd.cli.style import INFRA_STYLE, STATE_STYLE
from cloudherd.lifecycle import RevisionState

if TYPE_CHECKING:
    from cloudherd.api.types import Event

router = typer.Typer()


@router.command("ls")
def list_(
    as_json: bool = AS_JSON,
    all_: bool = typer.Option(False, "--all", "-a", help="Include destroyed infrastructures."),
) -> None:
    """List infrastructures."""
    rows = guard(lambda: herd().ls(include_destroyed=all_))
    if as_json:
        print_json(rows)
        return
    if not rows:
        err.print("no infrastructures (cloudherd up SPEC makes one)")
        return
    table = Table(box=None, header_style="bold")
    for column in ("id", "name", "state", "nodes", "ready", "created"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.id, row.name, Text(row.state, style=INFRA_STYLE.get(row.state, "")),
                      str(row.live_nodes), str(row.ready_nodes), row.created_at.isoformat(" ")[:19])
    out.print(table)


@router.command()
def status(
    ref: str = REF,
    as_json: bool = AS_JSON,
) -> None:
    """Groups and nodes of an infrastructure: address, state, last action."""
    infra = guard(lambda: herd().status(ref))
    if as_json:
        print_json(infra)
        return
    out.print(Text.assemble((infra.name, "bold"), f"  {infra.id}  ",
                            (infra.state, INFRA_STYLE.get(infra.state, ""))))
    if infra.reason:
        out.print(Text(f"reason: {infra.reason}", style="red"))
    manager = "managed now" if infra.managed else "attached (no manager running)" if infra.attached else "not managed"
    if infra.last_pass_at:
        manager += f"; last pass {infra.last_pass_at.strftime('%H:%M:%S')}: {infra.last_pass}"
    out.print(Text(f"manager: {manager}", style="dim"))
    groups = Table(box=None, header_style="bold")
    for column in ("group", "provider", "desired", "actual", "healthy", "min", "max"):
        groups.add_column(column)
    for g in infra.groups:
        groups.add_row(g.name, g.provider, str(g.count), str(g.actual), str(g.healthy),
                       "" if g.min is None else str(g.min), "" if g.max is None else str(g.max))
    out.print(groups)
    for g in infra.groups:
        if g.policies or g.metrics:
            now = ", ".join(f"{metric} {value:.4g}" for metric, value in g.metrics.items())
            out.print(Text(f"{g.name}: " + ("; ".join(g.policies) or "no policy") + (f"; now {now}" if now else ""),
                           style="dim"))
    table = Table(box=None, header_style="bold")
    machines = any(node.machine for node in infra.nodes)
    for column in ("node", "group", "state", "address", "health", "last action", *(["machine"] if machines else [])):
        table.add_column(column)
    for node in infra.nodes:
        if node.state == "terminated" and infra.state != "destroyed":
            continue
        last = node.last_action
        last_text = f"{last.kind} {last.name} → {last.exit_code}" if last else ""
        address = f"{node.address}:{node.port}" if node.address else ""
        health = (node.last_check or "")[:50]
        table.add_row(node.name, node.group, Text(node.state, style=STATE_STYLE.get(node.state, "")),
                      address, health, last_text[:50], *([node.machine or ""] if machines else []))
    out.print(table)


@router.command()
def logs(
    ref: str = REF,
    node: str | None = typer.Argument(None, help="Only this node's actions."),
    as_json: bool = AS_JSON,
) -> None:
    """Recorded actions (scripts, teardown, exec): exit code, timing, output."""
    rows = guard(lambda: herd().logs(ref, node))
    if as_json:
        print_json(rows)
        return
    for row in rows:
        seconds = f"{row.seconds:.2f}s" if row.seconds is not None else "unfinished"
        style = "green" if row.exit_code == 0 else "red"
        out.print(Text.assemble(("== ", "dim"), (row.node, "bold"), f" {row.kind} {row.name} ",
                                (f"exit {row.exit_code}", style), f" {seconds}  {row.started_at.isoformat()[:19]}"))
        for text, stream_style in ((row.stdout, ""), (row.stderr, "yellow")):
            if text.rstrip("\n"):
                out.print(Text(text.rstrip("\n"), style=stream_style))
    if not rows:
        err.print("no recorded actions")


@router.command()
def history(
    ref: str = REF,
    as_json: bool = AS_JSON,
) -> None:
    """The releases applied to an infrastructure (spec and scripts, sizes aside), oldest first."""
    rows = guard(lambda: herd().history(ref))
    if as_json:
        print_json(rows)
        return
    if not rows:
        err.print("no revisions recorded yet (each up records one)")
        return
    table = Table(box=None)
    for column in ("rev", "when", "by", "origin", "state", "scripts"):
        table.add_column(column, no_wrap=column != "scripts")
    for row in rows:
        applied, failed = row.state == RevisionState.APPLIED, row.state == RevisionState.FAILED
        state = Text(row.state, style="green" if applied else "red" if failed else "yellow")
        table.add_row(Text(f"{row.number}{' *' if row.current else ''}", style="bold" if row.current else ""),
                      row.created_at.strftime("%m-%d %H:%M"), row.author, row.origin, state,
                      ", ".join(row.scripts) or "-")
    out.print(table)
    for row in rows:
        if row.reason:
            out.print(Text(f"{row.number}: {row.reason}", style="red" if row.state == "failed" else ""))


@router.command()
def events(
    ref: str = REF,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events until Ctrl-C."),
    passes: bool = typer.Option(False, "--passes", help="Also each manager pass (who held the lease, when)."),
    as_json: bool = AS_JSON,
) -> None:
    """The event log: health changes, replacements, scaling, journal, errors."""
    client = herd()
    last = 0

    def newer() -> list[Event]:
        return client.events(ref, after=last)

    try:
        while True:
            rows = guard(newer)
            for row in rows:
                last = row.id
                if row.kind == "pass" and not passes:
                    continue
                if as_json:
                    sys.stdout.write(row.model_dump_json() + "\n")
                else:
                    who = f" {row.node}" if row.node else ""
                    out.print(Text.assemble((row.at.strftime("%Y-%m-%d %H:%M:%S"), "dim"), f" {row.kind:<15}",
                                            (who, "bold"), f" {row.message}"))
                last = row.id
            sys.stdout.flush()
            if not follow:
                return
            time.sleep(0.5)  # a poll of the log; --follow ends with Ctrl-C
    except KeyboardInterrupt:
        raise typer.Exit(0) from None

