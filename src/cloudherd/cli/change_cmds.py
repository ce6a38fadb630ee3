"""``cloudherd scale``, ``rollout``, ``rollback``, ``manage``, ``attach`` and ``detach``: changing a running
fleet, and keeping it alive."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import typer
from rich.text import Text

from cloudherd.cli.common import (
    AS_JSON,
    LOG_FORMAT,
    REF,
    WAIT,
    duration,
    err,
    guard,
    herd,
    local_herd,
    out,
    print_json,
)

if TYPE_CHECKING:
    from cloudherd.api.types import PassResult, ScaleResult

router = typer.Typer()


@router.command()
def rollback(
    ref: str = REF,
    revision: int | None = typer.Argument(None, help="The revision to go back to (default: the newest applied "
                                                     "one before the current; see `cloudherd history`)."),
    connect_timeout: float = typer.Option(120.0, "--connect-timeout", callback=duration,
                                         help="Seconds to wait for a node's SSH."),
    wait: float = WAIT,
) -> None:
    """Apply an earlier release again, as `up` would (each group keeps its size); records a new revision."""
    from cloudherd.cli.progress import Progress

    client = herd()

    def work() -> Any:
        with Progress(err) as progress:
            return client.rollback(ref, revision, on_event=progress, connect_timeout=connect_timeout, wait=wait)

    made = guard(work)
    err.print(Text(f"rolled back: revision {made.number} ({made.origin}) is {made.state}", style="green"))


@router.command()
def rollout(
    ref: str = REF,
    action: str = typer.Argument("status", help="status (the default), resume (go on to the end), or abort "
                                                "(back to the release before)."),
    as_json: bool = AS_JSON,
    wait: float = WAIT,
) -> None:
    """A rolling update's progress; resume a paused one, or abort it."""
    if action not in ("status", "resume", "abort"):
        err.print(Text(f"error: unknown action '{action}': give status, resume or abort", style="red"))
        raise typer.Exit(2)
    client = herd()
    if action == "status":
        state = guard(lambda: client.rollout(ref))
    else:
        from cloudherd.cli.progress import Progress

        def work() -> Any:
            with Progress(err) as progress:
                change = client.resume if action == "resume" else client.abort
                return change(ref, on_event=progress, wait=wait)

        state = guard(work)
    if as_json:
        print_json(state)
        return
    head = f"{state.name}: revision {state.revision} {state.state}" if state.revision else f"{state.name}: no revision"
    out.print(Text(head + (f" ({state.reason})" if state.reason else ""), style="bold"))
    for group in state.groups:
        line = f"  {group.name}: {len(group.updated)} of {group.count} on it"
        if group.behind:
            batches = -(-len(group.behind) // group.surge)
            line += f"; {len(group.behind)} behind ({batches} batch(es) of {group.surge}): {', '.join(group.behind)}"
        out.print(line)
    if not state.groups:
        out.print("  no rolling groups (update: {strategy: rolling})")


@router.command()
def manage(
    refs: list[str] = typer.Argument(None, help="Infrastructure ids, id prefixes or names."),
    all_: bool = typer.Option(False, "--all", "-a", help="Every attached infrastructure (picks up attach / "
                                                         "detach at each pass)."),
    interval: float = typer.Option(10.0, "--interval", "-i", callback=duration, help="Seconds between passes."),
    once: bool = typer.Option(False, "--once", help="One pass, then exit."),
    metrics_listen: str | None = typer.Option(None, "--metrics-listen", metavar="HOST:PORT",
                                              help="Serve Prometheus' /metrics on this address, without a token "
                                                   "(a listener of its own: keep it on loopback, or on a network "
                                                   "only Prometheus reaches), e.g. 127.0.0.1:9108."),
    log_format: str = LOG_FORMAT,
) -> None:
    """Keep infrastructures alive: health checks, healing, scaling, every --interval seconds until Ctrl-C.

    Ctrl-C or SIGTERM ends the current pass cleanly and stops; nothing is torn down.
    """
    import asyncio
    import logging
    import signal

    from cloudherd.observe import logs

    if not refs and not all_:
        err.print(Text("error: name the infrastructures to manage, or give --all", style="red"))
        raise typer.Exit(2)
    client = local_herd("manage")
    as_json = logs.use(log_format, sys.stdout) is not None  # each pass and each event a JSON line on stdout
    passes = logging.getLogger("cloudherd.manage")

    def said(report: PassResult) -> None:
        if as_json:
            failed = report.error or report.failed or report.held
            passes.log(logging.ERROR if report.error else logging.WARNING if failed else logging.INFO,
                       report.summary, extra={"kind": "pass", "infrastructure": report.name})
            return
        stamp = time.strftime("%H:%M:%S")
        style = "red" if report.error or report.failed or report.held else "green" if report.made else ""
        out.print(Text(f"{stamp} {report.name}: {report.summary}", style=style))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def ask_stop() -> None:
            if stop.is_set():
                raise SystemExit(130)
            err.print("stopping after the current pass (again to stop at once)")
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, ask_stop)
        await client.aio.manage(refs or (), every_attached=all_, interval=interval, once=once, on_pass=said,
                              stop=stop)

    def work() -> None:
        stop_metrics = _metrics(metrics_listen, client) if metrics_listen else None
        try:
            asyncio.run(run())
        finally:
            if stop_metrics is not None:
                stop_metrics()

    guard(work)


def _metrics(address: str, client: Any) -> Any:
    """``--metrics-listen``: /metrics served on ``address`` while the manager runs; what stops it."""
    from cloudherd.api.metrics_view import listen, open_warning

    stop = listen(address, client.store)
    warning = open_warning(address)
    if warning:
        err.print(Text(warning, style="yellow"))
    return stop


@router.command()
def attach(ref: str = REF) -> None:
    """Keep an infrastructure alive under `manage --all`."""
    row = guard(lambda: herd().attach(ref))
    out.print(f"attached {row.id} ({row.name})")


@router.command()
def detach(ref: str = REF) -> None:
    """Stop keeping an infrastructure alive (its nodes stay as they are)."""
    row = guard(lambda: herd().detach(ref))
    out.print(f"detached {row.id} ({row.name})")


@router.command(context_settings={"ignore_unknown_options": True})
def scale(
    ref: str = REF,
    group: str = typer.Argument(..., help="The group to scale."),
    change: str = typer.Argument(..., help="+N, -N or =N (or N)."),
    victim: list[str] = typer.Option([], "--victim", "-f", help="On a scale-down, remove this node first "
                                                                "(name, id or address; repeatable)."),
    wait: float = WAIT,
) -> None:
    """Grow or shrink a group; the manager's next pass does it, or this command when no manager runs."""
    from cloudherd.cli.progress import Progress

    client = herd()

    def work() -> ScaleResult:
        with Progress(err) as progress:
            return client.scale(ref, group, change, victims=victim, wait=wait, on_event=progress)

    result = guard(work)
    if result.note:
        err.print(Text(f"{group}: {result.before} → {result.target}{result.note}", style="yellow"))
    if result.applied:
        out.print(f"{group}: {result.before} → {result.target}")
    else:
        out.print(f"{group}: {result.before} → {result.target} (the running manager applies it at its next pass)")

