"""What every command of the CLI shares: the consoles, the error guard, the client, the common options.

Errors print one line (``error: …``) and exit non-zero; ``--debug`` shows the traceback.  Each command
imports what it needs when it runs (the API, the engine, the drivers), so that a read-only command
starts about as fast as ``--version``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from cloudherd.errors import CloudherdError, SpecError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from cloudherd.api.client import SyncClient
    from cloudherd.api.herd import HerdClient
    from cloudherd.api.types import ExecResult, TransferResult


class _Console(Console):
    """A console whose reader went away (``cloudherd exec … | head``) falls silent, and the command goes on
    to its end: rich's default raises SystemExit from inside whatever printed, which, in a callback of a
    fleet-wide exec, tore the event loop down with tracebacks."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, (sys.stderr if self.stderr else sys.stdout).fileno())
        os.close(devnull)


out = _Console(highlight=False, soft_wrap=True)
err = _Console(stderr=True, highlight=False, soft_wrap=True)
T = TypeVar("T")


class _Run:
    """This run's switches, set once by the root command's options."""

    debug = False


run_options = _Run()


def flag(remedy: tuple[str, str] | None) -> str:
    """A remedy said as this face says it: a flag and its value."""
    if not remedy:
        return ""
    name = f"--{remedy[0].replace('_', '-')}"
    return f" ({name} {remedy[1]})" if remedy[1] else f" ({name})"


def message(exc: CloudherdError) -> str:
    """The error's one line, with its remedy as a flag."""
    text = Exception.__str__(exc) + flag(exc.remedy)
    return text if isinstance(exc, SpecError) else f"error: {text}"


def failure(result: ExecResult | TransferResult) -> str:
    return f"{result.node}: {result.error}" + flag((result.remedy.option, result.remedy.value)
                                                   if result.remedy else None)


def guard(work: Callable[[], T]) -> T:
    """Run a command body: known errors become one line and an exit code; Ctrl-C exits 130."""
    try:
        return work()
    except typer.Exit:  # a guard inside this one already said why
        raise
    except CloudherdError as exc:
        if run_options.debug:
            raise
        err.print(Text(message(exc), style="red"))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print(Text("interrupted", style="red"))
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug of ours: still one line, the traceback behind --debug
        if run_options.debug:
            raise
        err.print(Text(f"error: internal error: {exc.__class__.__name__}: {exc} (--debug shows the traceback)",
                       style="red"))
        raise typer.Exit(1) from None


class _Clients:
    """The API clients of this run, made on first use so that ``--help`` and ``--version`` start fast."""

    herd: HerdClient | None = None
    local: SyncClient | None = None


_clients = _Clients()


def herd() -> HerdClient:
    """The client of the herd: over a shared server when ``CLOUDHERD_SERVER`` is set (or after ``cloudherd
    login``), else over the local state.  Only what both answer can be asked of it."""
    if _clients.herd is None:
        from cloudherd.api.login import configured

        remote = configured()
        if remote is None:
            _clients.herd = local_herd(None)
        else:
            from cloudherd.api.remote import RemoteClient

            _clients.herd = guard(lambda: RemoteClient(*remote))
    return _clients.herd


def local_herd(command: str | None) -> SyncClient:
    """The client over this machine's state, for ``command``, which needs that machine (its database, its
    keys, its nodes): refused, with the remedy, when a server is configured.  ``None``: no refusal (a command
    that reads files only, or the local half of :func:`herd`)."""
    if command is not None:
        from cloudherd.api.login import refuse_remote

        guard(lambda: refuse_remote(command))
    if _clients.local is None:
        from cloudherd.api.client import SyncClient

        _clients.local = SyncClient()
    return _clients.local


def duration(value: float | None) -> float | None:
    """A duration option: more than 0 seconds, checked before any work starts."""
    from cloudherd.spec.durations import DurationError, positive_seconds

    try:
        return None if value is None else positive_seconds(value, "it")
    except DurationError as exc:
        raise typer.BadParameter(str(exc).removeprefix("it ")) from None


def _auth_data(value: Path | None) -> Path | None:
    """Read an Occopus auth-data file into this process's environment, before the command runs."""
    if value is not None:
        from cloudherd.spec.compat import occopus_auth

        guard(lambda: occopus_auth.use(value))
    return value


REF = typer.Argument(..., help="Infrastructure id, id prefix or name.")
GROUPS = typer.Option([], "--group", "-g", help="Only nodes of this group (repeatable).")
NODES = typer.Option([], "--node", "-n", help="Only this node: name or id (repeatable).")
TAGS = typer.Option([], "--tag", "-t", help="Only nodes whose group has tag KEY=VALUE (repeatable).")
RESULTS_JSON = typer.Option(False, "--json", help="Print per-node results as JSON.")
SSH_TIMEOUT = typer.Option(30.0, "--timeout", callback=duration, help="Seconds to wait for each node's SSH.")
CONCURRENCY = typer.Option(
    None, "--concurrency", "-c", min=1,
    help="SSH handshakes in flight (default: CLOUDHERD_SSH_CONCURRENCY or 64 per core).",
)
ACCEPT_NEW = typer.Option(
    [], "--accept-new-host-key", metavar="NODE", help="Take the host key NODE presents now as its new pin."
)
PROVIDER_TYPE = typer.Argument(..., help="Provider type: local, aws, …")
REGION = typer.Option(None, "--region", help="Region (default: the provider's).")
AS_JSON = typer.Option(False, "--json", help="Print JSON.")


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise typer.BadParameter(f"text or json, not {value!r}")
    return value


LOG_FORMAT = typer.Option("text", "--log-format", metavar="text|json", callback=_log_format,
                          help="json: one object a line (time, level, event kind, infrastructure, node, trace id), "
                               "for a log shipper.")
WAIT = typer.Option(600.0, "--wait", min=0, help="Seconds to wait for another command already changing this "
                                                "infrastructure (0: give up at once).")
FORMAT = typer.Option(None, "--format", help="native, ogc or occopus (default: detected from the file).")
AUTH_DATA = typer.Option(None, "--auth-data", "--auth_data_path", callback=_auth_data,
                         help="An Occopus auth-data file (auth_data.yaml): its credentials go to the clouds its "
                              "entries are for, through environment variables (never stored).")


def print_json(data: BaseModel | Sequence[BaseModel] | Sequence[str]) -> None:
    """API values as JSON: the same shape the REST service answers with."""
    if isinstance(data, Sequence) and not isinstance(data, str):
        payload: Any = [item if isinstance(item, str) else item.model_dump(mode="json") for item in data]
    else:
        payload = data.model_dump(mode="json")  # type: ignore[union-attr]
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


def warn(warnings: Sequence[str]) -> None:
    """A loaded file's warnings (what it says that will not be done as written), one a line, on stderr."""
    for warning in warnings:
        err.print(Text(f"warning: {warning}", style="yellow"), soft_wrap=True)
