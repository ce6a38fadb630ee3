"""``cloudherd ls``, ``status``, ``logs``, ``history`` and ``events``: what is there and what happened."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from cloudherd.cli.common import AS_JSON, REF, err, guard, herd, out, print_json
from cloudherd.cli.style import INFRA_STYLE, STATE_STYLE
from cloudherd.errors import CloudherdError
from cloudherd.lifecycle import RevisionState

if TYPE_CHECKING:
    from cloudherd.api.herd import HerdClient
    from cloudherd.api.types import Event, Group, HookHold, Infrastructure, Node

router = typer.Typer()


@router.command("ls")
def list_(
    as_json: bool = AS_JSON,
    all_: bool = typer.Option(False, "--all", "-a", help="Include destroyed infrastructures."),
) -> None:
    """List infrastructures, with what each costs an hour now and has cost so far."""
    client = herd()
    rows = guard(lambda: client.ls(include_destroyed=all_))
    if as_json:
        print_json(rows)
        return
    if not rows:
        err.print("no infrastructures (cloudherd up SPEC makes one)")
        return
    costs = _costs_by_infrastructure(client)
    table = Table(box=None, header_style="bold")
    for column in ("id", "name", "state", "nodes", "ready", "created", "$/h now", "cost"):
        table.add_column(column, justify="right" if column[0] in "$c" and column != "created" else "left")
    for row in rows:
        hourly, total = costs.get(row.id, (0.0, 0.0))
        table.add_row(row.id, row.name, Text(row.state, style=INFRA_STYLE.get(row.state, "")),
                      str(row.live_nodes), str(row.ready_nodes), row.created_at.isoformat(" ")[:19],
                      _money(hourly), _money(total))
    out.print(table)


def _costs_by_infrastructure(client: HerdClient) -> dict[str, tuple[float | None, float | None]]:
    """Each infrastructure's $/h now and cost so far (None: a price unknown; nothing at all when the cost cannot
    be read: the list is still shown)."""
    try:
        report = client.cost()
    except CloudherdError:
        return {}
    found: dict[str, tuple[float | None, float | None]] = {}
    for line in report.lines:
        hourly, total = found.get(line.infrastructure_id, (0.0, 0.0))
        found[line.infrastructure_id] = (_plus(hourly, line.hourly_now), _plus(total, line.cost))
    return found


def _plus(first: float | None, second: float | None) -> float | None:
    return None if first is None or second is None else first + second


@router.command()
def status(
    ref: str = REF,
    as_json: bool = AS_JSON,
) -> None:
    """Groups and nodes of an infrastructure: address, state (with its marks and the hook holding it), last
    action; each group's suspended processes and warm pool."""
    client = herd()
    infra = guard(lambda: client.status(ref))
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
    for rule, moment in infra.idle_deadlines.items():
        out.print(Text(f"{rule}: {moment:%Y-%m-%d %H:%M:%S} UTC if idle until then ({_from_now(moment)})",
                       style="yellow"))
    if infra.notifications_given_up:
        out.print(Text(f"notifications: {infra.notifications_given_up} given up (`cloudherd notify deliveries` says "
                       "why; `cloudherd notify retry` sends them again)", style="yellow"))
    if infra.ends_at is not None:
        out.print(Text(f"ends: {infra.ends_at:%Y-%m-%d %H:%M:%S} UTC ({_from_now(infra.ends_at)}; time to live)",
                       style="yellow"))
    out.print(Text(_cost_line(client, infra.id), style="dim"))
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
        for line in _group_lines(g, infra):
            out.print(line)
    holds = _holds(client, infra)
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
        table.add_row(node.name, node.group, _node_state(node, holds.get(node.id, [])),
                      address, health, last_text[:50], *([node.machine or ""] if machines else []))
    out.print(table)


MARKS = (("protected", "cyan"), ("standby", "yellow"), ("warm", "blue"))


def _group_lines(group: Group, infra: Infrastructure) -> list[Text]:
    """What the group's table row does not say: its suspended processes (and why), its nodes by market (and a
    spot fallback), its warm pool by state."""
    lines = []
    if group.suspended:
        said = ", ".join(f"{process} ({why})" if why else process for process, why in group.suspended.items())
        lines.append(Text(f"{group.name}: suspended: {said}", style="yellow"))
    if group.markets and (group.fallback or set(group.markets) != {"on-demand"}):
        bought = ", ".join(f"{count} {market}" for market, count in sorted(group.markets.items(), reverse=True))
        lines.append(Text(f"{group.name}: market: {bought}"
                          + (f"; new nodes {group.fallback}" if group.fallback else ""),
                          style="yellow" if group.fallback else "dim"))
    pool: dict[str, int] = {}
    for node in infra.live:
        if node.group == group.name and node.warm:
            pool[node.state] = pool.get(node.state, 0) + 1
    if pool:
        counted = ", ".join(f"{count} {state}" for state, count in sorted(pool.items()))
        lines.append(Text(f"{group.name}: warm pool: {counted}", style="dim"))
    return lines


def _holds(client: HerdClient, infra: Infrastructure) -> dict[str, list[HookHold]]:
    """Each held node's open holds (by node id), read as cheaply as the rest (:mod:`cloudherd.api.status_holds`);
    none asked for when no node waits or drains."""
    from cloudherd.api.status_holds import open_holds

    held: dict[str, list[HookHold]] = {}
    for hold in guard(lambda: open_holds(client, infra)):
        held.setdefault(hold.node_id, []).append(hold)
    return held


def _node_state(node: Node, holds: list[HookHold]) -> Text:
    """The node's state, its marks beside it (protected, standby, warm) and, while a hook holds it, which hook
    and until when."""
    shown = Text(node.state, style=STATE_STYLE.get(node.state, ""))
    for mark, style in MARKS:
        if getattr(node, mark):
            shown.append(" ").append(mark, style=style)
    for hold in holds:
        shown.append(f" ({hold.transition} hook {hold.hook} until {hold.deadline:%H:%M:%S} UTC)", style="dim")
    return shown


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
def why(
    node: str = typer.Argument(..., help="The node: its name, id, provider id or address."),
    ref: str = typer.Option(None, "--infra", "-i", help="Look in this infrastructure only (ended nodes too)."),
    as_json: bool = AS_JSON,
) -> None:
    """Why a node exists: what made it, and what that followed from, back to what began it."""
    answer = guard(lambda: herd().why(node, ref))
    if as_json:
        print_json(answer)
        return
    out.print(Text.assemble((answer.node, "bold"), f" ({answer.state}, {answer.infrastructure}) exists because:"))
    if not answer.chain:
        out.print("  nothing recorded says (its events were pruned, or it was made before causes were kept)")
    if answer.inferred and answer.chain:
        out.print(Text("  (no event names it as made: the newest decision before it was made)", style="yellow"))
    origin = None
    for event in answer.chain:
        out.print(Text.assemble(f"  {event.at.strftime('%m-%d %H:%M:%S')}  ", (f"{event.kind:<15}", "cyan"),
                                event.message))
        if event.origin and event.origin != origin:
            trace = f" · trace {event.trace_id}" if event.trace_id else ""
            out.print(Text(f"  {'':14}  in {event.origin}{trace}", style="dim"))
            origin = event.origin


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



@router.command()
def cost(
    ref: str | None = typer.Argument(None, help="Infrastructure id, id prefix or name (none: all of them)."),
    since: str | None = typer.Option(None, "--since", help="From when: a date or time (2026-12-01, "
                                                           "2026-12-01T08:00) or a time ago (90m, 12h, 7d)."),
    as_json: bool = AS_JSON,
) -> None:
    """What the machines have cost, by infrastructure, group, provider and market: node-hours from the state (a machine
    from its create call to its end; a launch that made no machine costs nothing) at the price books' prices."""
    start = guard(lambda: _since(since)) if since else None
    report = guard(lambda: herd().cost(ref, since=start))
    if as_json:
        print_json(report)
        return
    table = Table(box=None, pad_edge=False)
    # short headers, and a spot line said by its group, so that the numbers fit 80 columns whole
    for column in ("infra", "group", "provider", "machines", "running", "node-h", "$/h now", "cost"):
        table.add_column(column, justify="left" if column in ("infra", "group", "provider") else "right",
                         no_wrap=True)
    for line in report.lines:
        group = line.group if line.market == "on-demand" else f"{line.group} ({line.market})"
        table.add_row(line.infrastructure + ("†" if line.destroyed else ""), group, line.provider, str(line.machines),
                      str(line.running), f"{line.node_hours:.2f}", _money(line.hourly_now),
                      _money(line.cost), style="dim" if line.destroyed else None)
    if any(line.destroyed for line in report.lines):
        table.caption = "† destroyed"
    out.print(table)
    window = f"since {report.since:%Y-%m-%d %H:%M} UTC" if report.since else "since the start"
    out.print(f"total {window}: ${report.total:,.4f}; now ${report.hourly_now:,.4f}/h")
    for book in sorted({line.prices for line in report.lines}):
        err.print(Text(f"prices: {book}", style="dim"))
    for note in report.notes:
        err.print(Text(f"note: {note}", style="dim"))


def _cost_line(client: HerdClient, infra_id: str) -> str:
    """What the infrastructure costs now and has cost so far, with the price books' dates."""
    try:
        report = client.cost(infra_id)
    except CloudherdError as exc:
        return f"cost: unknown ({exc})"
    if not report.lines:
        return "cost: nothing so far (no machine made)"
    unknown = [f"{line.group} ({line.prices})" for line in report.lines if line.cost is None]
    books = sorted({line.prices for line in report.lines if line.cost is not None})
    text = f"cost: ${report.hourly_now:,.4f}/h now, ${report.total:,.4f} so far"
    text += f" ({'; '.join(books)})" if books else ""
    return text + (f"; not priced: {', '.join(unknown)}" if unknown else "")


def _from_now(moment: datetime) -> str:
    """``in 7h 59m`` / ``due now``: how far a moment is."""
    from cloudherd.times import as_utc, utcnow

    seconds = int((as_utc(moment) - utcnow()).total_seconds())
    if seconds <= 0:
        return "due now: at the manager's next pass"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{rest // 60}m"]
    return "in " + " ".join(parts[:2])


def _money(amount: float | None) -> str:
    return "?" if amount is None else f"${amount:,.4f}"


def _since(text: str) -> datetime:
    """A moment from a date, a time, or a time ago (``90m``, ``12h``, ``7d``)."""
    from datetime import timedelta

    from cloudherd.errors import UsageError
    from cloudherd.times import as_utc, utcnow

    units = {"m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return utcnow() - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise UsageError(f"--since {text!r}: a date (2026-12-01), a time (2026-12-01T08:00) or a time ago "
                         "(90m, 12h, 7d)") from None
