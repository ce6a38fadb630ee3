"""Start-up cost of cloudherd's read-only commands, side by side with ``cloudherd --version``.

    .venv/bin/python bench/cli.py                    # median of 7 runs each, after one warm-up run
    .venv/bin/python bench/cli.py --runs 15 --json /tmp/cli.json

Everything runs in a throw-away HOME / CLOUDHERD_HOME / CLOUDHERD_DB.  One small infrastructure
(``examples/hello``, local provider) is made first with ``cloudherd up`` so that ``status ID`` and
``plan SPEC`` have something to read; it is taken down with ``cloudherd down`` at the end (also on an
error or Ctrl-C), and any node that home still holds after that is terminated by the local provider,
which stops only the processes it started, by pid.

Each command is timed as a user runs it: the ``cloudherd`` console script next to this Python (or
``python -m cloudherd``), wall time of the whole process, plus the CPU time it used (steadier when the
machine is busy).  The commands run in turns (one run of each, then the next round), so that a change in the
machine's load touches them all alike.  Each read is held against the floor below (Python, SQLAlchemy, one
SELECT): ``ls`` within 1.3x of it, ``status`` and ``plan`` within 1.6x — what cloudherd adds over reading the
database at all.  For ``ls``, the 10 modules with the largest cumulative import time are listed, from
``python -X importtime -m cloudherd ls``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cloudherd.providers.local import LocalProvider

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cloudherd_command, throwaway_env

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "examples" / "hello" / "cloudherd.yml"
GOALS = {"ls": 1.3, "status": 1.6, "plan": 1.6}  # x the floor, by command


# Not a cloudherd command: the least any SQLAlchemy-based read of the state can cost here (Python, the
# ORM's import, one SELECT on the same SQLite file).  A read-only command's distance from this row is
# what cloudherd itself adds; its distance from --version is mostly this row.
FLOOR = ("import sys, sqlalchemy, sqlalchemy.orm; "
         "sqlalchemy.create_engine(sys.argv[1]).connect().exec_driver_sql('select 1')")


def run(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", FLOOR, env["CLOUDHERD_DB"]] if args == ["<floor>"] else [*cloudherd_command(), *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_commands(commands: list[tuple[str, list[str]]], env: dict[str, str], runs: int) -> list[dict[str, Any]]:
    """One untimed warm-up of each, then ``runs`` rounds of one timed run of each; a non-zero exit marks a row
    failed."""
    rows: list[dict[str, Any]] = []
    for label, args in commands:
        warm = run(args, env)
        failed = None if warm.returncode == 0 else (warm.stderr.strip().splitlines() or ["?"])[-1]
        rows.append({"label": label, "args": args, "walls": [], "cpus": [], "failed": failed})
    for turn in range(runs):
        print(f"round {turn + 1} of {runs} …", file=sys.stderr, flush=True)
        for row in rows:
            cpu0, t0 = children_cpu(), time.perf_counter()
            done = run(row["args"], env)
            row["walls"].append(time.perf_counter() - t0)
            row["cpus"].append(children_cpu() - cpu0)
            if done.returncode != 0 and row["failed"] is None:
                row["failed"] = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    for row in rows:
        walls, cpus = row.pop("walls"), row.pop("cpus")
        row.update(median_s=statistics.median(walls), min_s=min(walls), cpu_median_s=statistics.median(cpus),
                   runs=runs)
    return rows


def import_times(env: dict[str, str], top: int = 10) -> list[dict[str, Any]]:
    """The modules with the largest cumulative import time in ``cloudherd ls`` (microseconds)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "cloudherd", "ls"], env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line
        rows.append({"module": parts[2].strip(), "self_us": int(parts[0]), "cumulative_us": int(parts[1])})
    rows.sort(key=lambda r: r["cumulative_us"], reverse=True)
    return rows[:top]


def cleanup(env: dict[str, str], infra_id: str | None) -> list[str]:
    """``down`` what we made, then stop any node left in the throw-away home (by the pids it recorded)."""
    problems = []
    if infra_id:
        down = run(["down", infra_id], env)
        if down.returncode != 0:
            problems.append(f"down {infra_id}: {down.stderr.strip()[-500:]}")
    root = Path(env["CLOUDHERD_HOME"]) / "local"
    if root.is_dir():
        provider = LocalProvider("local", {"root": str(root)})
        leftovers = asyncio.run(provider.list({}))
        if leftovers:
            problems.append(f"{len(leftovers)} node(s) left after down: terminated")
            asyncio.run(provider.terminate([i.id for i in leftovers]))
    return problems


def table(rows: list[dict[str, Any]]) -> str:
    floor = next(row for row in rows if row["args"] == ["<floor>"])
    head = f"{'command':<26} {'median':>9} {'min':>9} {'cpu':>9} {'x floor':>8} {'cpu x floor':>12}  goal"
    lines = [head, "-" * len(head)]
    for row in rows:
        ratio, cpu_ratio = row["median_s"] / floor["median_s"], row["cpu_median_s"] / floor["cpu_median_s"]
        row["ratio"], row["cpu_ratio"] = round(ratio, 3), round(cpu_ratio, 3)
        goal = GOALS.get(row["args"][0])
        if row is floor:
            mark = "(not a command)"
        elif row["failed"]:
            mark = "✘ failed: " + row["failed"]
        elif goal is None:
            mark = ""
        else:
            row["goal_met"] = ratio <= goal
            mark = f"≤ {goal:g}x {'✔' if row['goal_met'] else '✘'}"
        lines.append(f"{row['label']:<26} {row['median_s'] * 1000:>7.0f}ms {row['min_s'] * 1000:>7.0f}ms "
                     f"{row['cpu_median_s'] * 1000:>7.0f}ms {ratio:>7.2f}x {cpu_ratio:>11.2f}x  {mark}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command (default 7)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here ('-': stdout)")
    parser.add_argument("--spec", default=str(HELLO), help="spec made for `status`/`plan` (default: examples/hello)")
    options = parser.parse_args()
    if options.runs < 1:
        parser.error("--runs must be ≥ 1")

    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # an installed wheel has its bytecode; a checkout under PYTHONDONTWRITEBYTECODE would compile every module of
    # ours at each start and measure that instead
    import compileall

    import cloudherd

    compileall.compile_dir(str(Path(cloudherd.__file__).parent), quiet=1)
    spec = str(Path(options.spec).resolve())
    with tempfile.TemporaryDirectory(prefix="cloudherd-bench-cli-") as folder:
        env = throwaway_env(Path(folder))
        infra_id = None
        try:
            up = run(["up", spec], env)
            if up.returncode != 0:
                print(f"up {spec} failed:\n{up.stderr[-2000:]}", file=sys.stderr)
                return 1
            infra_id = up.stdout.strip().splitlines()[-1]
            short = Path(spec).relative_to(REPO) if Path(spec).is_relative_to(REPO) else Path(spec)
            commands = [
                ("--version", ["--version"]), ("--help", ["--help"]), ("ls", ["ls"]),
                (f"status {infra_id}", ["status", infra_id]), (f"validate {short.name}", ["validate", spec]),
                (f"plan {short.name}", ["plan", spec]),
                ("(floor: SQLAlchemy + 1 SELECT)", ["<floor>"]),
            ]
            rows = time_commands(commands, env, options.runs)
            imports = import_times(env)
        finally:
            problems = cleanup(env, infra_id)
            for problem in problems:
                print(f"cleanup: {problem}", file=sys.stderr)

    print(f"cloudherd CLI start-up, median of {options.runs} rounds after a warm-up "
          f"({' '.join(cloudherd_command())}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)\n")
    print(table(rows))
    print("\n`cloudherd ls`: top 10 modules by cumulative import time (python -X importtime)")
    print(f"{'cumulative':>11} {'self':>9}  module")
    for row in imports:
        print(f"{row['cumulative_us'] / 1000:>9.1f}ms {row['self_us'] / 1000:>7.1f}ms  {row['module']}")
    verdict = all(r.get("goal_met") for r in rows if r["args"][0] in GOALS)
    goals = ", ".join(f"{name} ≤ {ratio:g}x" for name, ratio in GOALS.items())
    print(f"\ngoal (against the floor: {goals}): {'✔ met' if verdict else '✘ not met'}")
    if options.json:
        data = {"runs": options.runs, "goals": GOALS, "goal_met": verdict, "commands": rows,
                "ls_imports": imports, "python": sys.version.split()[0], "cpus": os.cpu_count()}
        text = json.dumps(data, indent=2, ensure_ascii=False)
        if options.json == "-":
            print(text)
        else:
            Path(options.json).write_text(text + "\n")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
