"""``cloudherd protect``, ``standby``, ``detach-nodes``, ``attach-machines``, ``suspend``, ``resume``, ``stop`` and
``start``: what a user sets on a running fleet for the manager to honour (a node kept from scale-in, a node out of
service but kept, a machine let go of or taken in, a group's processes held, a fleet stopped and started again)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.text import Text

from cloudherd.cli.common import AS_JSON, REF, WAIT, err, guard, herd, out, print_json

if TYPE_CHECKING:
    from cloudherd.api.types import Group, Node

router = typer.Typer()
NODES = typer.Argument(..., help="Nodes: names, ids or addresses.")
PROCESSES = typer.Argument(None, help="Processes (none: all): launch, terminate, health-check, replace-unhealthy, "
                                      "scheduled-actions, policies, rebalance, rollout, add-to-load-balancer; or "
                                      "AWS's names (Launch, AZRebalance…).")


def _say_nodes(nodes: list[Node], as_json: bool) -> None:
    if as_json:
        print_json(nodes)
        return
    for node in nodes:
        marks = [word for word, on in (("protected", node.protected), ("standby", node.standby)) if on]
        out.print(f"{node.name}: {node.state}" + (f" ({', '.join(marks)})" if marks else ""))


def _say_group(group: Group, as_json: bool) -> None:
    if as_json:
        print_json(group)
        return
    held = ", ".join(sorted(group.suspended)) or "none"
    out.print(f"{group.name}: suspended: {held}")


@router.command()
def protect(
    ref: str = REF,
    nodes: list[str] = NODES,
    off: bool = typer.Option(False, "--off", help="Give the nodes back to scale-in."),
    as_json: bool = AS_JSON,
) -> None:
    """Keep nodes from scale-in: a shrink passes over them (the group stays above its size until they are
    released); a failed node is still replaced."""
    client = herd()
    _say_nodes(guard(lambda: client.protect(ref, nodes, protected=not off)), as_json)


@router.command()
def standby(
    ref: str = REF,
    nodes: list[str] = NODES,
    exit_: bool = typer.Option(False, "--exit", help="Bring the nodes back into service (the size grows by as "
                                                     "many, within max)."),
    replace: bool = typer.Option(False, "--replace", help="Make new nodes in their place (the size is kept); "
                                                          "without it the size shrinks by as many (within min)."),
    wait: float = WAIT,
    as_json: bool = AS_JSON,
) -> None:
    """Put nodes in standby: out of service (not counted, checked, sampled, replaced or scaled in) but kept
    running, to look into or update by hand."""
    from cloudherd.cli.progress import Progress

    client = herd()

    def work() -> Any:
        with Progress(err) as progress:
            return client.standby(ref, nodes, enter=not exit_, replace=replace, wait=wait, on_event=progress)

    _say_nodes(guard(work), as_json)


@router.command("detach-nodes")
def detach_nodes(
    ref: str = REF,
    nodes: list[str] = NODES,
    replace: bool = typer.Option(False, "--replace", help="Make new nodes in their place (the size is kept); "
                                                          "without it the size shrinks by as many (within min)."),
    wait: float = WAIT,
    as_json: bool = AS_JSON,
) -> None:
    """Take nodes out of their group with their machines kept running: cloudherd no longer counts, checks or
    ends them (`attach-machines` takes a machine back, into any group)."""
    from cloudherd.cli.progress import Progress

    client = herd()

    def work() -> Any:
        with Progress(err) as progress:
            return client.detach_nodes(ref, nodes, replace=replace, wait=wait, on_event=progress)

    shown = guard(work)
    _say_nodes(shown, as_json)
    if not as_json:
        for node in shown:
            err.print(f"{node.name}: machine {node.provider_id} kept running, no longer cloudherd's")


@router.command("attach-machines")
def attach_machines(
    ref: str = REF,
    group: str = typer.Argument(..., help="The group."),
    machines: list[str] = typer.Argument(..., help="Machine ids of the group's provider, or detached nodes' "
                                                   "names or ids."),
    wait: float = WAIT,
    as_json: bool = AS_JSON,
) -> None:
    """Make running machines nodes of a group: retagged, deployed by the group's scripts, the size grown by as
    many (within max)."""
    from cloudherd.cli.progress import Progress

    client = herd()

    def work() -> Any:
        with Progress(err) as progress:
            return client.attach_machines(ref, group, machines, wait=wait, on_event=progress)

    shown = guard(work)
    _say_nodes(shown, as_json)
    if not shown and not as_json:
        err.print("asked: the manager attaches them at its next pass (`cloudherd events` says when)")


@router.command()
def suspend(
    ref: str = REF,
    group: str = typer.Argument(..., help="The group."),
    processes: list[str] | None = PROCESSES,
    reason: str | None = typer.Option(None, "--reason", help="Why, shown with the suspension."),
    as_json: bool = AS_JSON,
) -> None:
    """Suspend a group's processes: the manager does not run them (across restarts) until `cloudherd resume`."""
    client = herd()
    shown = guard(lambda: client.suspend(ref, group, processes or [], reason=reason))
    _say_group(shown, as_json)


@router.command()
def resume(
    ref: str = REF,
    group: str = typer.Argument(..., help="The group."),
    processes: list[str] | None = PROCESSES,
    as_json: bool = AS_JSON,
) -> None:
    """Resume a group's suspended processes (a paused rollout goes on with `cloudherd rollout ID resume`)."""
    client = herd()
    shown = guard(lambda: client.resume_processes(ref, group, processes or []))
    if not as_json and not shown.suspended:
        err.print(Text(f"{group}: every process runs", style="green"))
    _say_group(shown, as_json)


def _say_fleet(shown: Any, as_json: bool, done: str) -> None:
    if as_json:
        print_json(shown)
        return
    out.print(f"{shown.name}: {done}; {shown.live_nodes} live node(s), {shown.ready_nodes} ready")


@router.command()
def stop(ref: str = REF, wait: float = WAIT, as_json: bool = AS_JSON) -> None:
    """Stop an infrastructure's machines, kept with their disks (where the provider can stop them; the others are
    said and left running), and suspend its groups' launching processes until `cloudherd start`: what autostop
    and a total budget do.  A manager keeping it does it at its next pass; else it is done here."""
    client = herd()
    shown = guard(lambda: client.stop_machines(ref, wait=wait))
    _say_fleet(shown, as_json, "stopped (`cloudherd start` starts it again)")


@router.command()
def start(ref: str = REF, wait: float = WAIT, as_json: bool = AS_JSON) -> None:
    """Start a stopped infrastructure again (stopped by `cloudherd stop`, autostop or a total budget): its groups'
    launching processes resumed, its stopped nodes started and logged in to (their scripts ran before).  Idle time
    for autostop counts again from the start."""
    client = herd()
    shown = guard(lambda: client.start_machines(ref, wait=wait))
    _say_fleet(shown, as_json, "started")
