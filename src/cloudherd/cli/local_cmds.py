"""``cloudherd local``: what only the embedded ``local`` provider can do — faults on demand."""

from __future__ import annotations

import typer

from cloudherd.cli.common import AS_JSON, guard, out, print_json

local_app = typer.Typer(help="The local provider's own commands (nodes on this computer).", no_args_is_help=True)
router = typer.Typer()
router.add_typer(local_app, name="local")


@local_app.command()
def fault(
    node: str = typer.Argument(..., help="Node name or id (in any live infrastructure)."),
    kind: str = typer.Argument(..., help="crash | hang | partition | heal | interrupt"),
    infra: str | None = typer.Option(None, "--infra", "-i", help="Only look in this infrastructure."),
    peer: str | None = typer.Option(None, "--from", help="partition: cut the node from this sibling only."),
    as_json: bool = AS_JSON,
) -> None:
    """Make a local node misbehave on purpose, or heal it: crash (kill it), hang (SIGSTOP its processes),
    partition (drop its traffic; with --from, only between it and one sibling), heal (undo hang and partition),
    interrupt (a spot node taken back by the market: ended, with the spot reason the manager then reads).
    Recorded in the event log.

    Acts on this computer's nodes and state, even when CLOUDHERD_SERVER names a server."""
    from cloudherd.api.client import SyncClient

    with SyncClient() as herd:
        done = guard(lambda: herd.fault(node, kind, ref=infra, peer=peer))
    if as_json:
        print_json(done)
    else:
        out.print(f"{done.node} ({done.infrastructure}): {done.done}")
