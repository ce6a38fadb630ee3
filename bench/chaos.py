"""Chaos at scale: SIGKILL cloudherd at N random points (default 100) of up / scale / down of a
10-node infrastructure, on the local provider and on AWS (moto's EC2 over HTTP), resume after each
kill, and print the tallies: kills, resumes, leaked, lost, duplicated.  Then the heal cycle, N times
(default 20): a node's sshd SIGKILLed, ``manage --once`` SIGKILLed at a random time or stage of its
heal (dead recorded, retiring, creating, deploying), ``manage --once`` again, the same checks plus
``count`` ready nodes without the dead one.  Then the rolling cycle (default 20): a new release of a 6-node
rolling group, its ``up`` SIGKILLed at a random point and resumed, the same checks plus every node on the
release and never fewer than 6 serving (sampled from outside).

    python bench/chaos.py [--kills 100] [--heal-kills 20] [--roll-kills 20] [--seed S] [--providers local,aws]

Not a test: tests/integration/engine/test_chaos.py runs the same harness with 6 kills (2 heal kills, 3 rolling
kills) in CI.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from chaos_harness import run_chaos, run_heal_chaos, run_rolling_chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--providers", default="local,aws")
    parser.add_argument("--heal-kills", type=int, default=20, help="killed heal passes per provider (0: none)")
    parser.add_argument("--roll-kills", type=int, default=20, help="killed rolling ups per provider (0: none)")
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--quiet", action="store_true", help="Do not print each kill point.")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    console.print(f"chaos: {args.kills} kill points per provider, {args.nodes} nodes, then {args.heal_kills} killed "
                  f"heal passes, seed {seed}")
    table = Table("provider", "cycle", "kills", "finished first", "resumes", "intents settled", "leaked", "lost",
                  "duplicated", "fewest serving", "kill points", "minutes")
    failed = False
    log = (lambda _m: None) if args.quiet else console.print
    runs = [("up/scale/down", run_chaos, args.kills, args.nodes),
            ("heal", run_heal_chaos, args.heal_kills, min(args.nodes, 6)),
            ("rolling", run_rolling_chaos, args.roll_kills, 6)]
    for provider in [p.strip() for p in args.providers.split(",") if p.strip()]:
        for cycle, runner, kills, nodes in runs:
            if not kills:
                continue
            started = time.monotonic()
            with tempfile.TemporaryDirectory(prefix=f"chaos-{provider}-") as workdir:
                tally = runner(provider, kills, seed, Path(workdir), nodes=nodes, log=log)
            minutes = (time.monotonic() - started) / 60
            points = ", ".join(f"{k} {v}" for k, v in sorted(tally.heal_stages.items())) or "random time"
            table.add_row(provider, cycle, str(tally.kills), str(tally.finished_first), str(tally.resumes),
                          str(tally.settled), str(tally.leaked), str(tally.lost), str(tally.duplicated),
                          "-" if tally.fewest_serving is None else f"{tally.fewest_serving} of {nodes}", points,
                          f"{minutes:.1f}")
            for problem in tally.problems:
                console.print(f"[red]{provider} {cycle}: {problem}[/red]")
            failed = failed or bool(tally.leaked or tally.lost or tally.duplicated or tally.problems)
    console.print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
