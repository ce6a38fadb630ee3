"""``cloudherd up``, ``plan``, ``down``, ``gc`` and ``adopt``: an infrastructure's life from spec to nothing."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from cloudherd.api.types import GroupPlan
from cloudherd.cli.common import (
    ACCEPT_NEW,
    AS_JSON,
    AUTH_DATA,
    CONCURRENCY,
    FORMAT,
    REF,
    WAIT,
    duration,
    err,
    guard,
    herd,
    local_herd,
    out,
    print_json,
    warn,
)
from cloudherd.lifecycle import RevisionState
from cloudherd.providers.prices import HOURS_A_MONTH

router = typer.Typer()


@router.command()
def up(
    spec: list[Path] = typer.Argument(None, help="The spec file (YAML); several OGC files merge left to right "
                                                 "(with --plan-file: the plan's own, unless given)."),
    keep_on_failure: bool = typer.Option(False, "--keep-on-failure", help="Keep what was made when up fails."),
    connect_timeout: float = typer.Option(120.0, "--connect-timeout", callback=duration,
                                         help="Seconds to wait for a node's SSH."),
    force: bool = typer.Option(False, "--force", help="Re-run scripts even where they already succeeded unchanged."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan (as `cloudherd plan`) and change nothing."),
    no_rollback: bool = typer.Option(False, "--no-rollback", help="A rolling update whose batch fails its health "
                                                                  "gate stops there instead of rolling back."),
    pause_after: int | None = typer.Option(None, "--pause-after", min=0, help="A rolling update pauses after "
                                           "this many nodes (a canary; 0: never). See `cloudherd rollout`."),
    concurrency: int | None = CONCURRENCY,
    accept_new_host_key: list[str] = ACCEPT_NEW,
    wait: float = WAIT,
    format: str | None = FORMAT,
    auth_data: Path | None = AUTH_DATA,
    plan_file: Path | None = typer.Option(None, "--plan-file", help="Execute exactly the plan `cloudherd plan --out` "
                                          "saved there; refused when the infrastructure or the spec changed since."),
    ttl: str | None = typer.Option(None, "--ttl", help="How long from now (8h, 2d, 90m…) until the manager brings "
                                   "the infrastructure down (the spec's ttl: counts from its making)."),
) -> None:
    """Create the spec's nodes (or converge the running ones of the same name) and deploy their scripts.

    Prints the infrastructure's id.  Scripts that already succeeded unchanged on a node are skipped.
    """
    if not spec and plan_file is None:
        err.print(Text("error: give the spec file (or --plan-file with a saved plan)", style="red"))
        raise typer.Exit(2)
    if dry_run:
        plan(spec, as_json=False, format=format, auth_data=None, save_to=None)
        return
    from cloudherd.cli.progress import Progress

    lifetime = guard(lambda: _seconds("--ttl", ttl)) if ttl is not None else None
    client = herd()
    started = time.monotonic()

    def work() -> str:
        with Progress(err) as progress:
            return client.up(spec or None, keep_on_failure=keep_on_failure, on_event=progress,
                             connect_timeout=connect_timeout, force=force, concurrency=concurrency,
                             accept_new_host_key=accept_new_host_key or (), wait=wait, format=format,
                             no_rollback=no_rollback, pause_after=pause_after, plan_file=plan_file,
                             ttl=lifetime)

    infra_id = guard(work)
    infra = guard(lambda: client.infrastructure(infra_id))
    latest = guard(lambda: client.history(infra_id))[-1:]
    if latest and latest[0].state == RevisionState.PAUSED:
        err.print(Text(f"{infra.name} is paused at revision {latest[0].number}: {latest[0].reason}: "
                       f"`cloudherd rollout {infra.name} resume` goes on, "
                       "`abort` goes back", style="yellow"))
        out.print(infra_id)
        return
    waiting = sum(n.state == "waiting" for n in infra.nodes)
    held = f", {waiting} waiting for launch hooks (cloudherd hook ls {infra.name})" if waiting else ""
    err.print(Text(f"{infra.name} is ready: {infra.ready_nodes} node(s){held} in {time.monotonic() - started:.1f}s "
                   f"(cloudherd status {infra_id})", style="green"))
    out.print(infra_id)


@router.command()
def plan(
    spec: list[Path] = typer.Argument(..., help="The spec file (YAML); several OGC files merge left to right."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    format: str | None = FORMAT,
    auth_data: Path | None = AUTH_DATA,
    save_to: Path | None = typer.Option(None, "--out", help="Also save the plan here, for `cloudherd up --plan-file` "
                                    "to execute exactly (only while the infrastructure stays as it is now)."),
) -> None:
    """Show what `up` would change: nodes to create, destroy or replace, scripts to re-run. Changes nothing."""
    result = guard(lambda: herd().plan(spec, format=format, out=save_to))
    warn(result.warnings)
    if as_json:
        print_json(result)
        return
    target = f"{result.name} ({result.infrastructure})" if result.infrastructure else f"{result.name} (new)"
    out.print(Text(f"plan for {target}", style="bold"))
    for group in result.groups:
        head = f"group {group.name} ({group.provider}): "
        head += "removed from the spec" if group.removed else f"{group.current} → {group.count} node(s)"
        out.print(Text(("  + " if group.new else "  ~ " if group.changes else "    ") + head))
        if group.reasons:
            out.print(Text(f"      because: {'; '.join(group.reasons)}", style="dim"))
        if group.replace:
            out.print(Text(f"      ± replace {len(group.replace)}: {', '.join(group.replace)}", style="yellow"))
        if group.rolling:
            batches = -(-len(group.rolling) // group.surge)
            out.print(Text(f"      ⇄ roll {len(group.rolling)} in {batches} batch(es) of {group.surge}: "
                           f"{', '.join(group.rolling)}", style="yellow"))
        if group.create:
            out.print(Text(f"      + create {group.create}", style="green"))
        if group.destroy:
            out.print(Text(f"      - destroy {len(group.destroy)}: {', '.join(group.destroy)}", style="red"))
        for source, names in group.scripts.items():
            shown = ", ".join(names[:6]) + (f" (+{len(names) - 6})" if len(names) > 6 else "")
            out.print(Text(f"      ↻ run {source} on {len(names)}: {shown}", style="cyan"))
        if group.create or group.destroy or group.warmed:
            out.print(Text(f"      $ {_price_line(group)}", style="magenta"))
    totals = result.totals
    if not result.changes:
        out.print(Text("no changes: the infrastructure matches the spec", style="green"))
    else:
        cost = "" if result.hourly_delta is None else \
            f", {_dollars(result.hourly_delta)}/h ({_dollars(result.hourly_delta * HOURS_A_MONTH)}/month)"
        out.print(f"plan: {totals.create} to create, {totals.destroy} to destroy, {totals.replace} to "
                  f"replace, {totals.script_runs} script run(s){cost}")
    if result.over_budget:
        err.print(Text(f"refused: {result.over_budget}", style="red"))
        raise typer.Exit(2)
    if save_to is not None:
        err.print(f"saved to {save_to}: `cloudherd up --plan-file {save_to}` executes exactly this plan")


def _seconds(option: str, text: str) -> float:
    from cloudherd.errors import UsageError
    from cloudherd.spec.durations import DurationError, parse_duration

    try:
        seconds = parse_duration(text, bare_text=True)
    except DurationError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"{option}: more than 0 seconds (got {text})")
    return seconds


def _dollars(amount: float) -> str:
    """A signed dollar amount, to a hundredth of a cent below a dollar."""
    sign = "-" if amount < 0 else "+"
    return f"{sign}${abs(amount):.4f}" if abs(amount) < 1 else f"{sign}${abs(amount):,.2f}"


def _price_line(group: GroupPlan) -> str:
    if group.hourly is None or group.hourly_delta is None:
        return f"Δ cost unknown: {group.prices}"
    if group.hourly == 0:
        return f"no cost ({group.prices})"
    return (f"Δ {_dollars(group.hourly_delta)}/h ({_dollars(group.hourly_delta * HOURS_A_MONTH)}/month) at "
            f"${group.hourly:.4f}/h a node, {group.prices}")


@router.command()
def down(
    ref: str = REF,
    artifacts: Path | None = typer.Option(
        None, "--artifacts", help="Where groups' artifacts land (DIR/<node>/); default: the data folder."
    ),
    wait: float = WAIT,
    force: bool = typer.Option(False, "--force", help="Forget nodes whose provider cannot terminate them "
                                                      "(their machines may still run; a warning says so)."),
    auth_data: Path | None = AUTH_DATA,
) -> None:
    """Pull artifacts, run teardown scripts, terminate every node, mark the infrastructure destroyed."""
    from cloudherd.cli.progress import Progress

    client = herd()

    def work() -> str:
        with Progress(err) as progress:
            return client.down(ref, on_event=progress, artifacts_dir=artifacts, wait=wait, force=force)

    infra_id = guard(work)
    out.print(f"destroyed {infra_id}")


@router.command()
def gc(
    provider: str | None = typer.Option(None, "--provider", "-p", help="Only this provider (name or type)."),
    delete: bool = typer.Option(False, "--delete", help="Terminate the orphans found."),
    as_json: bool = AS_JSON,
) -> None:
    """Find machines with cloudherd's tags that no infrastructure in this database accounts for."""
    orphans = guard(lambda: local_herd("gc").gc(provider=provider, delete=delete))
    if as_json:
        print_json(orphans)
        return
    if not orphans:
        err.print(Text("no orphans", style="green"))
        return
    table = Table("provider", "kind", "id", "name", "state", "address", "why")
    for o in orphans:
        table.add_row(o.provider, o.kind, o.id, o.name, o.state, o.address or "", o.why)
    out.print(table)
    if delete:
        err.print(Text(f"removed {len(orphans)} orphan(s)", style="yellow"))
    else:
        err.print(f"{len(orphans)} orphan(s): `cloudherd gc --delete` removes them, `cloudherd adopt` keeps them")


@router.command()
def adopt(
    ref: str = REF,
    group: str = typer.Argument(..., help="The group the machines join."),
    ids: list[str] = typer.Argument(..., help="Orphan machine ids (see `cloudherd gc`)."),
) -> None:
    """Bring orphan machines under an infrastructure; the next `up` deploys the group's scripts on them."""
    names = guard(lambda: local_herd("adopt").adopt(ref, group, ids))
    for name in names:
        out.print(name)
    err.print(f"adopted {len(names)} machine(s) into {group}; raise the group's count in the spec to keep them "
              f"(the next `up` retires nodes beyond it)")

