"""``cloudherd hook``: the lifecycle-hook holds a fleet's nodes wait on (``ls``), and completing them
(``complete``) or keeping them alive (``heartbeat``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from cloudherd.cli.common import AS_JSON, REF, WAIT, err, guard, herd, out, print_json

if TYPE_CHECKING:
    from cloudherd.api.types import HookHold

hook_app = typer.Typer(help="Lifecycle hooks: the nodes held after launch or before their end, and completing them.",
                       no_args_is_help=True)
router = typer.Typer()
router.add_typer(hook_app, name="hook")
NODE = typer.Argument(..., help="The held node: name, id or address.")
HOOK = typer.Option(None, "--hook", help="The hook (default: every hold of the node).")


def _say(holds: list[HookHold], as_json: bool) -> None:
    if as_json:
        print_json(holds)
        return
    for hold in holds:
        state = hold.result or f"open until {hold.deadline:%Y-%m-%d %H:%M:%S} UTC"
        out.print(f"{hold.node}  {hold.transition} hook {hold.hook}: {state}"
                  + (f" (by {hold.completed_by})" if hold.completed_by else ""))


@hook_app.command("ls")
def ls(ref: str = REF, done: bool = typer.Option(False, "--all", help="The completed holds too."),
       as_json: bool = AS_JSON) -> None:
    """The holds open now: which node waits on which hook, until when."""
    client = herd()
    holds = guard(lambda: client.hooks(ref, done=done))
    if not holds and not as_json:
        err.print("no node is held by a hook")
    _say(holds, as_json)


@hook_app.command()
def complete(
    ref: str = REF,
    node: str = NODE,
    hook: str | None = HOOK,
    abandon: bool = typer.Option(False, "--abandon", help="ABANDON: a launched node fails (and is replaced); "
                                                          "default CONTINUE: it goes into service."),
    wait: float = WAIT,
    as_json: bool = AS_JSON,
) -> None:
    """Complete a node's hold: a launched node then goes into service (or fails), a draining one ends."""
    from cloudherd.cli.progress import Progress

    client = herd()

    def work() -> Any:
        with Progress(err) as progress:
            return client.complete_hook(ref, node, hook, result="ABANDON" if abandon else "CONTINUE", wait=wait,
                                        on_event=progress)

    _say(guard(work), as_json)


@hook_app.command()
def heartbeat(ref: str = REF, node: str = NODE, hook: str | None = HOOK, as_json: bool = AS_JSON) -> None:
    """Keep a node's hold open: its deadline moves on by the hook's timeout, from now."""
    client = herd()
    _say(guard(lambda: client.heartbeat_hook(ref, node, hook)), as_json)
