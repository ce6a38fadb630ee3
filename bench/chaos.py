"""Chaos at scale: SIGKILL cloudherd at N random points (default 100) of up / scale / down of a
10-node infrastructure, on the local provider and on AWS (moto's EC2 over HTTP), resume after each
kill, and print the tallies: kills, resumes, leaked, lost, duplicated.

    python bench/chaos.py [--kills 100] [--seed S] [--providers local,aws] [--nodes 10]

Not a test: tests/test_chaos.py runs the same harness with 20 kills in CI.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

from tests.chaos_harness import run_chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--providers", default="local,aws")
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--quiet", action="store_true", help="Do not print each kill point.")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    console = Console(highlight=False)
    console.print(f"chaos: {args.kills} kill points per provider, {args.nodes} nodes, seed {seed}")
    table = Table("provider", "kills", "finished first", "resumes", "intents settled", "leaked", "lost",
                  "duplicated", "minutes")
    failed = False
    for provider in [p.strip() for p in args.providers.split(",") if p.strip()]:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"chaos-{provider}-") as workdir:
            tally = run_chaos(provider, args.kills, seed, Path(workdir), nodes=args.nodes,
                              log=(lambda _m: None) if args.quiet else console.print)
        minutes = (time.monotonic() - started) / 60
        table.add_row(provider, str(tally.kills), str(tally.finished_first), str(tally.resumes), str(tally.settled),
                      str(tally.leaked), str(tally.lost), str(tally.duplicated), f"{minutes:.1f}")
        for problem in tally.problems:
            console.print(f"[red]{provider}: {problem}[/red]")
        failed = failed or bool(tally.leaked or tally.lost or tally.duplicated or tally.problems)
    console.print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
