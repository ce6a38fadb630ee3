"""``cloudherd exec``, ``push``, ``pull`` and ``ssh``: working on the nodes themselves."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.text import Text

from cloudherd.cli.common import (
    ACCEPT_NEW,
    CONCURRENCY,
    GROUPS,
    NODES,
    REF,
    RESULTS_JSON,
    SSH_TIMEOUT,
    TAGS,
    duration,
    err,
    failure,
    guard,
    herd,
    local_herd,
    out,
    print_json,
)

if TYPE_CHECKING:
    from cloudherd.api.types import TransferResult

router = typer.Typer()


@router.command("exec")
def exec_(
    ref: str = REF,
    command: str = typer.Argument(..., help="Shell command to run on each node."),
    group: list[str] = GROUPS,
    node: list[str] = NODES,
    tag: list[str] = TAGS,
    as_json: bool = RESULTS_JSON,
    timeout: float = SSH_TIMEOUT,
    command_timeout: float | None = typer.Option(None, "--command-timeout", callback=duration,
                                                 help="Seconds the command may run."),
    concurrency: int | None = CONCURRENCY,
    accept_new_host_key: list[str] = ACCEPT_NEW,
) -> None:
    """Run a command on every node (or the selected ones), output streamed and prefixed by node."""
    width = 0

    def line(node_name: str, stream: str, text: str) -> None:
        prefix = Text(f"{node_name:<{width}} | ", style="cyan" if stream == "stdout" else "yellow")
        out.print(Text.assemble(prefix, text))

    client = herd()
    if not as_json:
        width = max((len(n.name) for n in guard(lambda: client.infrastructure(ref)).live), default=0)
    results = guard(lambda: client.exec(
        ref, command, group=group, node=node, tags=tag, on_line=None if as_json else line, timeout=timeout,
        command_timeout=command_timeout, concurrency=concurrency, accept_new_host_key=accept_new_host_key or (),
    ))
    if as_json:
        print_json(results)
    else:
        ok = sum(r.ok for r in results)
        unreachable = [r for r in results if r.error]
        failed = [r for r in results if not r.ok and not r.error]
        for r in failed:
            err.print(Text(f"{r.node}: exit {r.exit_code}", style="red"))
        for r in unreachable:
            err.print(Text(failure(r), style="red"))
        summary = f"{ok} ok, {len(failed)} failed, {len(unreachable)} unreachable"
        err.print(Text(summary, style="green" if ok == len(results) else "red"))
        if not results:
            err.print("no live nodes matched")
    if not results or any(not r.ok for r in results):
        raise typer.Exit(1)


@router.command()
def push(
    ref: str = REF,
    src: list[Path] = typer.Argument(..., help="Local files or folders (the last argument is DST)."),
    dst: str = typer.Argument(..., help="Where on each node (relative: the node's work folder)."),
    group: list[str] = GROUPS,
    node: list[str] = NODES,
    tag: list[str] = TAGS,
    as_json: bool = RESULTS_JSON,
    timeout: float = SSH_TIMEOUT,
    concurrency: int | None = CONCURRENCY,
    accept_new_host_key: list[str] = ACCEPT_NEW,
) -> None:
    """Copy local files or folders to every node (or the selected ones), over SFTP."""
    results = guard(lambda: local_herd("push").push(
        ref, list(src), dst, group=group, node=node, tags=tag, timeout=timeout, concurrency=concurrency,
        accept_new_host_key=accept_new_host_key or (),
    ))
    _transfer_summary(results, as_json, "pushed")


@router.command()
def pull(
    ref: str = REF,
    src: list[str] = typer.Argument(..., help="Remote paths or globs (relative: the node's work folder); "
                                              "the last argument is DST."),
    dst: Path = typer.Argument(..., help="Local folder; each node's files land in DST/<node>/."),
    group: list[str] = GROUPS,
    node: list[str] = NODES,
    tag: list[str] = TAGS,
    as_json: bool = RESULTS_JSON,
    timeout: float = SSH_TIMEOUT,
    concurrency: int | None = CONCURRENCY,
    accept_new_host_key: list[str] = ACCEPT_NEW,
) -> None:
    """Copy files from every node (or the selected ones) into DST/<node>/."""
    results = guard(lambda: local_herd("pull").pull(
        ref, src, dst, group=group, node=node, tags=tag, timeout=timeout, concurrency=concurrency,
        accept_new_host_key=accept_new_host_key or (),
    ))
    _transfer_summary(results, as_json, "pulled")


def _transfer_summary(results: Sequence[TransferResult], as_json: bool, verb: str) -> None:
    if as_json:
        print_json(results)
    else:
        for r in results:
            if r.ok:
                out.print(f"{r.node}: {verb} {len(r.files)} path(s) in {r.seconds:.2f}s")
            else:
                err.print(Text(failure(r), style="red"))
        ok = sum(r.ok for r in results)
        err.print(Text(f"{ok} ok, {len(results) - ok} failed", style="green" if ok == len(results) else "red"))
        if not results:
            err.print("no live nodes matched")
    if not results or any(not r.ok for r in results):
        raise typer.Exit(1)


@router.command()
def ssh(
    ref: str = REF,
    node: str = typer.Argument(..., help="Node name or id."),
    command: list[str] = typer.Argument(None, help="Command to run instead of a shell."),
    accept_new_host_key: bool = typer.Option(False, "--accept-new-host-key",
                                             help="Take the host key the node presents now as its new pin."),
) -> None:
    """Open an SSH session on a node (OpenSSH's ssh, with the node's pinned host key)."""
    client = local_herd("ssh")
    argv = guard(lambda: client.ssh_command(ref, node, command or (), accept_new_host_key=accept_new_host_key))
    sys.stdout.flush()
    os.execv(argv[0], argv)

