"""``cloudherd``, the command line: the root command and its options, made of the command modules.

Each module (``spec_cmds``, ``life_cmds``…) holds the commands of one concern on a router of its own and
imports only :mod:`cloudherd.cli.common`; this module puts them together and is imported by none of them.
"""

from __future__ import annotations

import typer

from cloudherd import __version__
from cloudherd.cli import (
    catalog_cmds,
    change_cmds,
    choice_cmds,
    common,
    fleet_cmds,
    hook_cmds,
    life_cmds,
    local_cmds,
    notify_cmds,
    read_cmds,
    server_cmds,
    spec_cmds,
)
from cloudherd.observe import cause, tracing
from cloudherd.quiet import loud, quiet_all
from cloudherd.settings import current

app = typer.Typer(
    name="cloudherd", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Launch fleets of machines from one spec, deploy over SSH, tear them down.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        common.out.print(f"cloudherd {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    context: typer.Context,
    debug: bool = typer.Option(False, "--debug",
                               help="Show tracebacks on errors, and the warnings of the libraries cloudherd uses."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    common.run_options.debug = debug or current().debugging
    if common.run_options.debug:
        loud()
    if context.invoked_subcommand:  # what the command's events say they happened in (a pass says its own)
        cause.begin(f"cloudherd {context.invoked_subcommand} (by {_user()})")
    trouble = tracing.configure()  # spans exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT asks for it
    if trouble:
        common.err.print(f"warning: {trouble}")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's)
        import os

        return f"uid {os.getuid()}"


for _module in (spec_cmds, life_cmds, read_cmds, fleet_cmds, change_cmds, choice_cmds, hook_cmds, catalog_cmds,
                local_cmds, server_cmds, notify_cmds):
    app.add_typer(_module.router)


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
