"""``cloudherd`` — the command line.  Every command is a few lines over :class:`cloudherd.api.SyncClient`.

Errors print one line (``error: …``) and exit non-zero; ``--debug`` shows the traceback.  Each command
imports what it needs when it runs (the API, the engine, the drivers), so that a read-only command
starts about as fast as ``--version``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cloudherd import __version__
from cloudherd.cli.style import INFRA_STYLE, STATE_STYLE
from cloudherd.errors import CloudherdError, SpecError
from cloudherd.quiet import loud, quiet_all

if TYPE_CHECKING:
    from pydantic import BaseModel

    from cloudherd.api.client import SyncClient
    from cloudherd.api.types import Event, ExecResult, PassResult, ScaleResult, TransferResult

app = typer.Typer(
    name="cloudherd", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Launch fleets of machines from one spec, deploy over SSH, tear them down.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
_debug = False


def _version(value: bool) -> None:
    if value:
        out.print(f"cloudherd {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug",
                               help="Show tracebacks on errors, and the warnings of the libraries cloudherd uses."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    global _debug
    _debug = debug or os.environ.get("CLOUDHERD_DEBUG") == "1"
    if _debug:
        loud()


def _flag(remedy: tuple[str, str] | None) -> str:
    """A remedy said as this face says it: a flag and its value."""
    if not remedy:
        return ""
    flag = f"--{remedy[0].replace('_', '-')}"
    return f" ({flag} {remedy[1]})" if remedy[1] else f" ({flag})"


def _message(exc: CloudherdError) -> str:
    """The error's one line, with its remedy as a flag."""
    text = Exception.__str__(exc) + _flag(exc.remedy)
    return text if isinstance(exc, SpecError) else f"error: {text}"


def _failure(result: ExecResult | TransferResult) -> str:
    return f"{result.node}: {result.error}" + _flag((result.remedy.option, result.remedy.value)
                                                    if result.remedy else None)


def _guard(work: Callable[[], T]) -> T:
    """Run a command body: known errors become one line and an exit code; Ctrl-C exits 130."""
    try:
        return work()
    except CloudherdError as exc:
        if _debug:
            raise
        err.print(Text(_message(exc), style="red"))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print(Text("interrupted", style="red"))
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug of ours: still one line, the traceback behind --debug
        if _debug:
            raise
        err.print(Text(f"error: internal error: {exc.__class__.__name__}: {exc} (--debug shows the traceback)",
                       style="red"))
        raise typer.Exit(1) from None


_herd_client: SyncClient | None = None


def _herd() -> SyncClient:
    """The API client, imported on first use so that ``--help`` and ``--version`` start fast: over a shared
    server when ``CLOUDHERD_SERVER`` is set (or after ``cloudherd login``), else over the local state."""
    global _herd_client
    if _herd_client is None:
        from cloudherd.api.remote import RemoteClient, configured

        remote = configured()
        if remote is not None:
            _herd_client = _guard(lambda: RemoteClient(*remote))  # type: ignore[assignment]
        else:
            from cloudherd.api.client import SyncClient

            _herd_client = SyncClient()
    assert _herd_client is not None
    return _herd_client


GROUPS = typer.Option([], "--group", "-g", help="Only nodes of this group (repeatable).")
NODES = typer.Option([], "--node", "-n", help="Only this node: name or id (repeatable).")
TAGS = typer.Option([], "--tag", "-t", help="Only nodes whose group has tag KEY=VALUE (repeatable).")
def _seconds(value: float | None) -> float | None:
    """A duration option: more than 0 seconds, checked before any work starts."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be more than 0 seconds (got {value:g})")
    return value


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
WAIT = typer.Option(600.0, "--wait", min=0, help="Seconds to wait for another command already changing this "
                                                "infrastructure (0: give up at once).")


FORMAT = typer.Option(None, "--format", help="native, ogc or occopus (default: detected from the file).")


def _auth_data(value: Path | None) -> Path | None:
    """Read an Occopus auth-data file into this process's environment, before the command runs."""
    if value is not None:
        from cloudherd.spec.compat import occopus_auth

        _guard(lambda: occopus_auth.use(value))
    return value


AUTH_DATA = typer.Option(None, "--auth-data", "--auth_data_path", callback=_auth_data,
                         help="An Occopus auth-data file (auth_data.yaml): its credentials go to the clouds its "
                              "entries are for, through environment variables (never stored).")


def _print_json(data: BaseModel | Sequence[BaseModel] | Sequence[str]) -> None:
    """API values as JSON: the same shape the REST service answers with."""
    if isinstance(data, Sequence) and not isinstance(data, str):
        payload: Any = [item if isinstance(item, str) else item.model_dump(mode="json") for item in data]
    else:
        payload = data.model_dump(mode="json")  # type: ignore[union-attr]
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


@app.command()
def init() -> None:
    """Make the state database, your user and your SSH key pair (done on first use anyway)."""
    info = _guard(lambda: _herd().init())
    out.print(f"user      {info.user}")
    out.print(f"ssh key   {info.key}")
    out.print(f"database  {info.database}")
    out.print(f"data      {info.data}")


def _warn(warnings: Sequence[str]) -> None:
    """A loaded file's warnings (what it says that will not be done as written), one a line, on stderr."""
    for warning in warnings:
        err.print(Text(f"warning: {warning}", style="yellow"), soft_wrap=True)


@app.command()
def validate(spec: list[Path] = typer.Argument(..., help="The spec file (YAML): native, OGC or Occopus; several "
                                                       "OGC files merge left to right."),
             format: str | None = FORMAT, auth_data: Path | None = AUTH_DATA) -> None:
    """Check a spec without touching anything; exit 2 with FILE:LINE: path: message when it is wrong."""
    summary = _guard(lambda: _herd().validate(spec, format=format))
    _warn(summary.warnings)
    counts = ", ".join(f"{name} x{count}" for name, count in summary.groups.items())
    out.print(f"{' + '.join(str(p) for p in spec)}: ok ({summary.name}: {counts})")


@app.command()
def up(
    spec: list[Path] = typer.Argument(..., help="The spec file (YAML); several OGC files merge left to right."),
    keep_on_failure: bool = typer.Option(False, "--keep-on-failure", help="Keep what was made when up fails."),
    connect_timeout: float = typer.Option(120.0, "--connect-timeout", callback=_seconds,
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
) -> None:
    """Create the spec's nodes (or converge the running ones of the same name) and deploy their scripts.

    Prints the infrastructure's id.  Scripts that already succeeded unchanged on a node are skipped.
    """
    if dry_run:
        plan(spec, as_json=False, format=format, auth_data=None)
        return
    from cloudherd.cli.progress import Progress

    herd = _herd()
    started = time.monotonic()

    def work() -> str:
        with Progress(err) as progress:
            return herd.up(spec, keep_on_failure=keep_on_failure, on_event=progress,
                           connect_timeout=connect_timeout, force=force, concurrency=concurrency,
                           accept_new_host_key=accept_new_host_key or (), wait=wait, format=format,
                           no_rollback=no_rollback, pause_after=pause_after)

    infra_id = _guard(work)
    infra = _guard(lambda: herd.infrastructure(infra_id))
    latest = _guard(lambda: herd.history(infra_id))[-1:]
    if latest and latest[0].state == "paused":
        err.print(Text(f"{infra.name} is paused at revision {latest[0].number}: {latest[0].reason}: "
                       f"`cloudherd rollout {infra.name} resume` goes on, "
                       "`abort` goes back", style="yellow"))
        out.print(infra_id)
        return
    err.print(Text(f"{infra.name} is ready: {infra.ready_nodes} node(s) in {time.monotonic() - started:.1f}s "
                   f"(cloudherd status {infra_id})", style="green"))
    out.print(infra_id)


@app.command()
def plan(
    spec: list[Path] = typer.Argument(..., help="The spec file (YAML); several OGC files merge left to right."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    format: str | None = FORMAT,
    auth_data: Path | None = AUTH_DATA,
) -> None:
    """Show what `up` would change: nodes to create, destroy or replace, scripts to re-run. Changes nothing."""
    result = _guard(lambda: _herd().plan(spec, format=format))
    _warn(result.warnings)
    if as_json:
        _print_json(result)
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
    totals = result.totals
    if not result.changes:
        out.print(Text("no changes: the infrastructure matches the spec", style="green"))
    else:
        out.print(f"plan: {totals.create} to create, {totals.destroy} to destroy, {totals.replace} to "
                  f"replace, {totals.script_runs} script run(s)")


@app.command()
def convert(spec: list[Path] = typer.Argument(..., help="An OGC layout file (or several, merged left to right) "
                                                        "or an Occopus description."),
            format: str | None = FORMAT, auth_data: Path | None = AUTH_DATA) -> None:
    """Print the native spec a foreign file means (what `up` of it does)."""
    sys.stdout.write(_guard(lambda: _herd().convert(spec if len(spec) > 1 else spec[0], format=format)))


@app.command("import")
def import_(path: Path = typer.Argument(..., help="An Occopus node definition file ('node_def:<type>' entries)."),
            auth_data: Path | None = AUTH_DATA) -> None:
    """Store Occopus node definitions; Occopus descriptions naming their types then come up (occopus-import)."""
    types = _guard(lambda: _herd().import_node_defs(path))
    out.print(f"imported {len(types)} node definition(s): {', '.join(types)}")


@app.command()
def down(
    ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name."),
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

    herd = _herd()

    def work() -> str:
        with Progress(err) as progress:
            return herd.down(ref, on_event=progress, artifacts_dir=artifacts, wait=wait, force=force)

    infra_id = _guard(work)
    out.print(f"destroyed {infra_id}")


@app.command()
def gc(
    provider: str | None = typer.Option(None, "--provider", "-p", help="Only this provider (name or type)."),
    delete: bool = typer.Option(False, "--delete", help="Terminate the orphans found."),
    as_json: bool = AS_JSON,
) -> None:
    """Find machines with cloudherd's tags that no infrastructure in this database accounts for."""
    orphans = _guard(lambda: _herd().gc(provider=provider, delete=delete))
    if as_json:
        _print_json(orphans)
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


@app.command()
def adopt(
    ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name."),
    group: str = typer.Argument(..., help="The group the machines join."),
    ids: list[str] = typer.Argument(..., help="Orphan machine ids (see `cloudherd gc`)."),
) -> None:
    """Bring orphan machines under an infrastructure; the next `up` deploys the group's scripts on them."""
    names = _guard(lambda: _herd().adopt(ref, group, ids))
    for name in names:
        out.print(name)
    err.print(f"adopted {len(names)} machine(s) into {group}; raise the group's count in the spec to keep them "
              f"(the next `up` retires nodes beyond it)")


@app.command("ls")
def list_(
    as_json: bool = AS_JSON,
    all_: bool = typer.Option(False, "--all", "-a", help="Include destroyed infrastructures."),
) -> None:
    """List infrastructures."""
    rows = _guard(lambda: _herd().ls(include_destroyed=all_))
    if as_json:
        _print_json(rows)
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


@app.command()
def status(
    ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name."),
    as_json: bool = AS_JSON,
) -> None:
    """Groups and nodes of an infrastructure: address, state, last action."""
    infra = _guard(lambda: _herd().status(ref))
    if as_json:
        _print_json(infra)
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


@app.command("exec")
def exec_(
    ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name."),
    command: str = typer.Argument(..., help="Shell command to run on each node."),
    group: list[str] = GROUPS,
    node: list[str] = NODES,
    tag: list[str] = TAGS,
    as_json: bool = typer.Option(False, "--json", help="Print per-node results as JSON."),
    timeout: float = typer.Option(30.0, "--timeout", callback=_seconds, help="Seconds to wait for each node's SSH."),
    command_timeout: float | None = typer.Option(None, "--command-timeout", callback=_seconds,
                                                 help="Seconds the command may run."),
    concurrency: int | None = CONCURRENCY,
    accept_new_host_key: list[str] = ACCEPT_NEW,
) -> None:
    """Run a command on every node (or the selected ones), output streamed and prefixed by node."""
    width = 0

    def line(node_name: str, stream: str, text: str) -> None:
        prefix = Text(f"{node_name:<{width}} | ", style="cyan" if stream == "stdout" else "yellow")
        out.print(Text.assemble(prefix, text))

    herd = _herd()
    if not as_json:
        width = max((len(n.name) for n in _guard(lambda: herd.infrastructure(ref)).live), default=0)
    results = _guard(lambda: herd.exec(
        ref, command, group=group, node=node, tags=tag, on_line=None if as_json else line, timeout=timeout,
        command_timeout=command_timeout, concurrency=concurrency, accept_new_host_key=accept_new_host_key or (),
    ))
    if as_json:
        _print_json(results)
    else:
        ok = sum(r.ok for r in results)
        unreachable = [r for r in results if r.error]
        failed = [r for r in results if not r.ok and not r.error]
        for r in failed:
            err.print(Text(f"{r.node}: exit {r.exit_code}", style="red"))
        for r in unreachable:
            err.print(Text(_failure(r), style="red"))
        summary = f"{ok} ok, {len(failed)} failed, {len(unreachable)} unreachable"
        err.print(Text(summary, style="green" if ok == len(results) else "red"))
        if not results:
            err.print("no live nodes matched")
    if not results or any(not r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def push(
    ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name."),
    src: list[Path] = typer.Argument(..., help="Local files or folders (the last argument is DST)."),
    dst: str = typer.Argument(..., help="Where on each node (relative: the node's work folder)."),
    group: list[str] = GROUPS,
    node: list[str] = NODES,
    tag: list[str] = TAGS,
    as_json: bool = typer.Option(False, "--json", help="Print per-node results as JSON."),
    timeout: float = typer.Option(30.0, "--timeout", callback=_seconds, help="Seconds to wait for each node's SSH."),
    concurrency: int | None = CONCURRENCY,
    accept_new_host_key: list[str] = ACCEPT_NEW,
) -> None:
    """Copy local files or folders to every node (or the selected ones), over SFTP."""
    results = _guard(lambda: _herd().push(
        ref, list(src), dst, group=group, node=node, tags=tag, timeout=timeout, concurrency=concurrency,
        accept_new_host_key=accept_new_host_key or (),
    ))
    _transfer_summary(results, as_json, "pushed")


@app.command()
def pull(
    ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name."),
    src: list[str] = typer.Argument(..., help="Remote paths or globs (relative: the node's work folder); "
                                              "the last argument is DST."),
    dst: Path = typer.Argument(..., help="Local folder; each node's files land in DST/<node>/."),
    group: list[str] = GROUPS,
    node: list[str] = NODES,
    tag: list[str] = TAGS,
    as_json: bool = typer.Option(False, "--json", help="Print per-node results as JSON."),
    timeout: float = typer.Option(30.0, "--timeout", callback=_seconds, help="Seconds to wait for each node's SSH."),
    concurrency: int | None = CONCURRENCY,
    accept_new_host_key: list[str] = ACCEPT_NEW,
) -> None:
    """Copy files from every node (or the selected ones) into DST/<node>/."""
    results = _guard(lambda: _herd().pull(
        ref, src, dst, group=group, node=node, tags=tag, timeout=timeout, concurrency=concurrency,
        accept_new_host_key=accept_new_host_key or (),
    ))
    _transfer_summary(results, as_json, "pulled")


def _transfer_summary(results: Sequence[TransferResult], as_json: bool, verb: str) -> None:
    if as_json:
        _print_json(results)
    else:
        for r in results:
            if r.ok:
                out.print(f"{r.node}: {verb} {len(r.files)} path(s) in {r.seconds:.2f}s")
            else:
                err.print(Text(_failure(r), style="red"))
        ok = sum(r.ok for r in results)
        err.print(Text(f"{ok} ok, {len(results) - ok} failed", style="green" if ok == len(results) else "red"))
        if not results:
            err.print("no live nodes matched")
    if not results or any(not r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def ssh(
    ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name."),
    node: str = typer.Argument(..., help="Node name or id."),
    command: list[str] = typer.Argument(None, help="Command to run instead of a shell."),
    accept_new_host_key: bool = typer.Option(False, "--accept-new-host-key",
                                             help="Take the host key the node presents now as its new pin."),
) -> None:
    """Open an SSH session on a node (OpenSSH's ssh, with the node's pinned host key)."""
    argv = _guard(lambda: _herd().ssh_command(ref, node, command or (), accept_new_host_key=accept_new_host_key))
    sys.stdout.flush()
    os.execv(argv[0], argv)


@app.command()
def logs(
    ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name."),
    node: str | None = typer.Argument(None, help="Only this node's actions."),
    as_json: bool = AS_JSON,
) -> None:
    """Recorded actions (scripts, teardown, exec): exit code, timing, output."""
    rows = _guard(lambda: _herd().logs(ref, node))
    if as_json:
        _print_json(rows)
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


@app.command()
def history(
    ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name."),
    as_json: bool = AS_JSON,
) -> None:
    """The releases applied to an infrastructure (spec and scripts, sizes aside), oldest first."""
    rows = _guard(lambda: _herd().history(ref))
    if as_json:
        _print_json(rows)
        return
    if not rows:
        err.print("no revisions recorded yet (each up records one)")
        return
    table = Table(box=None)
    for column in ("rev", "when", "by", "origin", "state", "scripts"):
        table.add_column(column, no_wrap=column != "scripts")
    for row in rows:
        state = Text(row.state, style={"applied": "green", "failed": "red"}.get(row.state, "yellow"))
        table.add_row(Text(f"{row.number}{' *' if row.current else ''}", style="bold" if row.current else ""),
                      row.created_at.strftime("%m-%d %H:%M"), row.author, row.origin, state,
                      ", ".join(row.scripts) or "-")
    out.print(table)
    for row in rows:
        if row.reason:
            out.print(Text(f"{row.number}: {row.reason}", style="red" if row.state == "failed" else ""))


@app.command()
def rollback(
    ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name."),
    revision: int | None = typer.Argument(None, help="The revision to go back to (default: the newest applied "
                                                     "one before the current; see `cloudherd history`)."),
    connect_timeout: float = typer.Option(120.0, "--connect-timeout", callback=_seconds,
                                         help="Seconds to wait for a node's SSH."),
    wait: float = WAIT,
) -> None:
    """Apply an earlier release again, as `up` would (each group keeps its size); records a new revision."""
    from cloudherd.cli.progress import Progress

    herd = _herd()

    def work() -> Any:
        with Progress(err) as progress:
            return herd.rollback(ref, revision, on_event=progress, connect_timeout=connect_timeout, wait=wait)

    made = _guard(work)
    err.print(Text(f"rolled back: revision {made.number} ({made.origin}) is {made.state}", style="green"))


@app.command()
def rollout(
    ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name."),
    action: str = typer.Argument("status", help="status (the default), resume (go on to the end), or abort "
                                                "(back to the release before)."),
    as_json: bool = AS_JSON,
    wait: float = WAIT,
) -> None:
    """A rolling update's progress; resume a paused one, or abort it."""
    if action not in ("status", "resume", "abort"):
        err.print(Text(f"error: unknown action '{action}': give status, resume or abort", style="red"))
        raise typer.Exit(2)
    herd = _herd()
    if action == "status":
        state = _guard(lambda: herd.rollout(ref))
    else:
        from cloudherd.cli.progress import Progress

        def work() -> Any:
            with Progress(err) as progress:
                change = herd.resume if action == "resume" else herd.abort
                return change(ref, on_event=progress, wait=wait)

        state = _guard(work)
    if as_json:
        _print_json(state)
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


@app.command()
def manage(
    refs: list[str] = typer.Argument(None, help="Infrastructure ids, id prefixes or names."),
    all_: bool = typer.Option(False, "--all", "-a", help="Every attached infrastructure (picks up attach / "
                                                         "detach at each pass)."),
    interval: float = typer.Option(10.0, "--interval", "-i", callback=_seconds, help="Seconds between passes."),
    once: bool = typer.Option(False, "--once", help="One pass, then exit."),
) -> None:
    """Keep infrastructures alive: health checks, healing, scaling, every --interval seconds until Ctrl-C.

    Ctrl-C or SIGTERM ends the current pass cleanly and stops; nothing is torn down.
    """
    import asyncio
    import signal

    if not refs and not all_:
        err.print(Text("error: name the infrastructures to manage, or give --all", style="red"))
        raise typer.Exit(2)
    herd = _herd()

    def said(report: PassResult) -> None:
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
        await herd.aio.manage(refs or (), every_attached=all_, interval=interval, once=once, on_pass=said,
                              stop=stop)

    _guard(lambda: asyncio.run(run()))


@app.command()
def attach(ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name.")) -> None:
    """Keep an infrastructure alive under `manage --all`."""
    row = _guard(lambda: _herd().attach(ref))
    out.print(f"attached {row.id} ({row.name})")


@app.command()
def detach(ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name.")) -> None:
    """Stop keeping an infrastructure alive (its nodes stay as they are)."""
    row = _guard(lambda: _herd().detach(ref))
    out.print(f"detached {row.id} ({row.name})")


@app.command(context_settings={"ignore_unknown_options": True})
def scale(
    ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name."),
    group: str = typer.Argument(..., help="The group to scale."),
    change: str = typer.Argument(..., help="+N, -N or =N (or N)."),
    victim: list[str] = typer.Option([], "--victim", "-f", help="On a scale-down, remove this node first "
                                                                "(name, id or address; repeatable)."),
    wait: float = WAIT,
) -> None:
    """Grow or shrink a group; the manager's next pass does it, or this command when no manager runs."""
    from cloudherd.cli.progress import Progress

    herd = _herd()

    def work() -> ScaleResult:
        with Progress(err) as progress:
            return herd.scale(ref, group, change, victims=victim, wait=wait, on_event=progress)

    result = _guard(work)
    if result.note:
        err.print(Text(f"{group}: {result.before} → {result.target}{result.note}", style="yellow"))
    if result.applied:
        out.print(f"{group}: {result.before} → {result.target}")
    else:
        out.print(f"{group}: {result.before} → {result.target} (the running manager applies it at its next pass)")


@app.command()
def events(
    ref: str = typer.Argument(..., help="Infrastructure id, id prefix or name."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events until Ctrl-C."),
    passes: bool = typer.Option(False, "--passes", help="Also each manager pass (who held the lease, when)."),
    as_json: bool = AS_JSON,
) -> None:
    """The event log: health changes, replacements, scaling, journal, errors."""
    herd = _herd()
    last = 0

    def newer() -> list[Event]:
        return herd.events(ref, after=last)

    try:
        while True:
            rows = _guard(newer)
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


@app.command()
def sizes(
    provider: str = PROVIDER_TYPE,
    pattern: str | None = typer.Argument(None, help="Regular expression the size name must contain."),
    region: str | None = REGION,
    as_json: bool = AS_JSON,
) -> None:
    """Machine sizes a provider offers (the default one marked)."""
    rows = _guard(lambda: _herd().sizes(provider, pattern, region=region))
    _print_json(rows) if as_json else _table_of(rows, "sizes")


@app.command()
def images(
    provider: str = PROVIDER_TYPE,
    pattern: str | None = typer.Argument(None, help="Regular expression the image name must contain."),
    region: str | None = REGION,
    as_json: bool = AS_JSON,
) -> None:
    """Images a provider offers."""
    rows = _guard(lambda: _herd().images(provider, pattern, region=region))
    _print_json(rows) if as_json else _table_of(rows, "images")


@app.command()
def regions(
    provider: str = PROVIDER_TYPE,
    pattern: str | None = typer.Argument(None, help="Text the region name must contain."),
    as_json: bool = AS_JSON,
) -> None:
    """Regions a provider offers."""
    names = _guard(lambda: _herd().regions(provider, pattern))
    if as_json:
        _print_json(names)
    elif not names:
        err.print("no regions match")
    else:
        for name in names:
            out.print(name)


from cloudherd.cli import local_cmds, server_cmds  # noqa: E402,F401  (register local, serve, token and user)


def run() -> None:
    """Console-script entry point."""
    import signal

    # A shell starts background jobs with SIGINT ignored, and Python keeps it so: then `kill -INT` (or a
    # supervisor's interrupt) would not stop `up`, and nothing would be rolled back.  Interrupts always count.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    quiet_all()
    app()


if __name__ == "__main__":
    run()
