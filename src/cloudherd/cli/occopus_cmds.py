"""Occopus' commands, with Occopus' flags, as thin faces over the API: a user's shell scripts built on
``occopus-build``, ``occopus-destroy``, ``occopus-maintain`` (once ``occopus-manage``), ``occopus-scale``
and ``occopus-import`` keep working.

What each prints follows Occopus: progress and the node list on stderr (Occopus' log), the
infrastructure id alone on stdout's last line (``INFRA=$(occopus-build infra.yaml)``).  The auth-data
file is ``--auth_data_path``, else ``~/.occopus/auth_data.yaml`` when it exists, as Occopus looked for it.
``--cfg`` (Occopus' own configuration: its Redis, logging and plugins) has nothing cloudherd uses: it is
read to be sure it is the file meant, and a line says it is not applied.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from cloudherd.errors import CloudherdError

T = TypeVar("T")
DEFAULT_AUTH = Path("~/.occopus/auth_data.yaml")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _stop(message: str, code: int = 1) -> NoReturn:
    _say(f"ERROR: {message}")
    raise SystemExit(code)


def _guard(work: Callable[[], T]) -> T:
    try:
        return work()
    except CloudherdError as exc:
        _stop(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _stop("interrupted", 130)


def _parser(prog: str, description: str, *, auth: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--cfg", dest="cfg_path", help="Occopus' configuration file (read; nothing of it applies)")
    if auth:
        parser.add_argument("--auth_data_path", "--auth-data", dest="auth_data_path",
                            help="Occopus' auth-data file (default: ~/.occopus/auth_data.yaml when it exists)")
    return parser


def _setup(args: argparse.Namespace) -> Any:
    """The configuration and auth-data files read, and the API client."""
    from cloudherd.api import SyncClient
    from cloudherd.spec.compat import occopus_auth

    if args.cfg_path:
        from cloudherd.spec.files import Where, read_text
        from cloudherd.spec.yamlsafe import parse_yaml

        path = args.cfg_path
        _guard(lambda: parse_yaml(read_text(Path(path), Where(path), yaml=True), path))
        _say(f"--cfg {path}: Occopus' own configuration (its database, logging, plugins) is not applied: cloudherd "
             "keeps its state in its own database (CLOUDHERD_HOME / CLOUDHERD_DB)")
    auth = getattr(args, "auth_data_path", None)
    default = DEFAULT_AUTH.expanduser()
    if auth or default.is_file():
        chosen = Path(auth) if auth else default
        _guard(lambda: occopus_auth.use(chosen))
    return SyncClient()


def _list_nodes(herd: Any, infra_id: str, only: str | None = None) -> dict[str, dict[str, str]]:
    infra = herd.infrastructure(infra_id)
    listing: dict[str, dict[str, str]] = {}
    for node in infra.live:
        if only is None or only in node.group:
            listing.setdefault(node.group, {})[node.id] = node.address or ""
    return listing


def _log_nodes(listing: dict[str, dict[str, str]], title: str) -> None:
    _say(title)
    for group, nodes in listing.items():
        _say(f"{group}:")
        for node_id, address in nodes.items():
            _say(f"  {node_id}:")
            _say(f"    {address}")


def build(argv: Sequence[str] | None = None) -> None:
    parser = _parser("occopus-build", "Build an infrastructure from its description; prints its id.")
    parser.add_argument("infra_def", help="infrastructure description file")
    parser.add_argument("--parallelize", action="store_true", help="accepted: cloudherd makes independent nodes "
                                                                   "at once always")
    parser.add_argument("--listips", action="store_true", help="accepted: the node list is always logged")
    parser.add_argument("-i", "--infra_id", dest="infraid", help="update this infrastructure (the description "
                                                                 "must have its name)")
    args = parser.parse_args(argv)
    herd = _setup(args)
    if args.infraid:
        infra = _guard(lambda: herd.infrastructure(args.infraid))
        summary = _guard(lambda: herd.validate(args.infra_def, format="occopus"))
        if summary.name != infra.name:
            _stop(f"infrastructure {args.infraid} is named {infra.name}; {args.infra_def} describes {summary.name}")
        _say(f"Updating infrastructure: {infra.id!r}")

    def progress(event: Any) -> None:
        if event.kind in ("warning", "error", "info"):
            _say(("WARNING: " if event.kind == "warning" else "") + event.message)

    infra_id = _guard(lambda: herd.up(args.infra_def, format="occopus", on_event=progress))
    _say(f"Submitted infrastructure: {infra_id!r}")
    _log_nodes(_guard(lambda: _list_nodes(herd, infra_id)), "List of nodes/instances/addresses:")
    print(infra_id, flush=True)


def destroy(argv: Sequence[str] | None = None) -> None:
    parser = _parser("occopus-destroy", "Destroy an infrastructure and all of its nodes.")
    parser.add_argument("-i", dest="infraid", required=True, help="identifier of the infrastructure to destroy")
    args = parser.parse_args(argv)
    herd = _setup(args)
    _guard(lambda: herd.down(args.infraid))
    _say(f"Infrastructure {args.infraid!r} has been destroyed")


def maintain(argv: Sequence[str] | None = None, prog: str = "occopus-maintain") -> None:
    parser = _parser(prog, "Maintain an infrastructure (health, recovery, scaling), list or report them.")
    parser.add_argument("-i", "--infraid", dest="infraid", help="identifier of the infrastructure to maintain")
    parser.add_argument("-l", "--list", action="store_true", help="list the active infrastructures")
    parser.add_argument("-t", "--interval", type=float, default=10.0, help="seconds between passes (default 10)")
    parser.add_argument("-c", "--cyclic", action="store_true", help="maintain until interrupted")
    parser.add_argument("-r", "--report", action="store_true", help="report the nodes and their addresses")
    parser.add_argument("--parallelize", action="store_true", help="accepted: passes work on nodes at once")
    parser.add_argument("-o", "--output", help="with -r: write the addresses to this file, one node a line")
    parser.add_argument("-f", "--filter", help="with -r: only nodes whose name contains this")
    args = parser.parse_args(argv)
    from cloudherd.spec.durations import DurationError, positive_seconds

    try:
        positive_seconds(args.interval, "-t: the interval")
    except DurationError as exc:
        parser.error(str(exc))
    herd = _setup(args)
    if not args.infraid:
        if not args.list:
            print("ERROR: No infra_id (-i) specified! ")
            raise SystemExit(1)
        active = [i.id for i in _guard(herd.ls) if i.state not in ("destroyed",)]
        print("List of active infrastructure:" if active else "No active infrastructure!")
        for infra_id in active:
            print(infra_id)
        return
    if args.report:
        listing = _guard(lambda: _list_nodes(herd, args.infraid, args.filter))
        if args.output:
            _say(f'Saving list of node addresses to file "{args.output}"...')
            Path(args.output).write_text("".join(f"{a}\n" for nodes in listing.values() for a in nodes.values()))
            _say("Done.")
        else:
            _log_nodes(listing, "Report list of nodes/instances/addresses:")
        return
    while True:
        for result in _guard(lambda: herd.manage([args.infraid], once=True)):
            _say(f"{result.name}: {result.checked} checked, {len(result.made)} made, {len(result.retired)} retired"
                 + (", converged" if result.converged else ""))
        if not args.cyclic:
            return
        try:
            time.sleep(args.interval)
        except KeyboardInterrupt:
            _say("Ctrl+C - exiting.")
            return


def manage(argv: Sequence[str] | None = None) -> None:
    """``occopus-manage``: the name the first Occopus releases gave ``occopus-maintain``."""
    maintain(argv, prog="occopus-manage")


def scale(argv: Sequence[str] | None = None) -> None:
    parser = _parser("occopus-scale", "Scale a node of an infrastructure up or down.")
    parser.add_argument("-i", "--infraid", dest="infraid", required=True, help="the infrastructure")
    parser.add_argument("-n", "--node", dest="node", required=True, help="name of the node to scale")
    parser.add_argument("-c", "--changescale", "--count", dest="changescale", type=int,
                        help="positive/negative number: scale up / down by it")
    parser.add_argument("-s", "--setscale", dest="setscale", type=int, help="the number of instances to scale to")
    parser.add_argument("-f", "--filter", dest="filter", help="the instance to remove: its id or address")
    args = parser.parse_args(argv)
    given = [flag for flag, value in (("-c", args.changescale), ("-s", args.setscale), ("-f", args.filter))
             if value is not None]
    if len(given) != 1:
        _stop("give one of -c, -s and -f" if not given else f"{' and '.join(given)} must not be used at the same time")
    if args.changescale == 0:
        _stop("Incorrect argument: value for -c must be different from zero!")
    if args.setscale is not None and args.setscale <= 0:
        _stop("Incorrect argument: value for -s must be greater than zero!")
    herd = _setup(args)
    from cloudherd.spec.compat.occopus import native_name

    group = native_name(args.node)
    victims: list[str] = []
    if args.filter:
        infra = _guard(lambda: herd.infrastructure(args.infraid))
        found = [n for n in infra.live if n.group == group and args.filter in (n.id, n.name, n.address)]
        if not found:
            _stop(f"no instance of node {args.node} has the id or address {args.filter}")
        victims, change = [found[0].name], "-1"
        _say(f"Scaling down instance(s) of node {args.node!r} filtered by {args.filter!r}...")
    elif args.setscale is not None:
        change = str(args.setscale)
        _say(f"Scaling node {args.node!r} to {args.setscale} instances...")
    else:
        change = f"{args.changescale:+d}"
        _say(f"Scaling {'up' if args.changescale > 0 else 'down'} node {args.node!r} with "
             f"{abs(args.changescale)} instances...")
    result = _guard(lambda: herd.scale(args.infraid, group, change, victims=victims))
    _say(f"{result.group}: {result.before} → {result.target}{result.note}")


def import_(argv: Sequence[str] | None = None) -> None:
    parser = _parser("occopus-import", "Import node definitions.", auth=False)
    parser.add_argument("--redisconf", help="accepted: cloudherd keeps node definitions in its own database")
    parser.add_argument("datafile", help="file containing node definitions")
    args = parser.parse_args(argv)
    herd = _setup(args)
    types = _guard(lambda: herd.import_node_defs(args.datafile))
    print("Successfully imported nodes: " + ", ".join(types))

