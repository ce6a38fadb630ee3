#!/usr/bin/env python3
"""A target-tracking policy on ``cpu`` under ``cloudherd manage``: how fast the fleet decides and grows after a
load step, how fast it decides to shrink once the load is gone, and whether a sawtooth load makes it flap.

    .venv/bin/python bench/policy.py                        # 4 small nodes, min 4 max 8, cpu at 50%, ~15 min
    .venv/bin/python bench/policy.py --sawtooth 120         # a two-minute sawtooth (~6 min in all)
    .venv/bin/python bench/policy.py --size nano --json /tmp/policy.json

Everything happens in a throw-away HOME / CLOUDHERD_HOME / CLOUDHERD_DB.  The spec ``policy`` has one group
``web`` of sandboxed local nodes (``count: 4, min: 4, max: 8, size: small``: one cpu each) and one target-tracking
policy, ``{metric: cpu, target: 50}``, its times counted in samples of the manager's ``--interval`` (AWS's
one-minute datapoint): ``warmup`` and both cooldowns 5 samples (AWS's 300 s), ``scale_in_after`` 15 (AWS's
15 datapoints).  The real CLI ``cloudherd manage policy --interval 2`` runs as a subprocess of this script
(stopped with SIGINT by its pid at the end).  A node's ``cpu`` is its own: its cgroup's cpu time over the time
between two samples, of the cpus its size allows.

The load: each node's script starts a loop that burns its cpu while the file ``/srv/load/NODE`` exists (a host
folder of the throw-away home shared with the nodes, the bench's switch) and looks again once a second while it
does not.  A load step is the files of the first 4 nodes made at once: a fixed amount of work, 4 cpus' worth, that
the nodes added do not share (their average is then 4 x 100 / nodes, at the target with 8).

    plain create   ``cloudherd up`` of one node of the same group, alone, before anything else: its row made ->
                   ready (the floor of what a scale-out's nodes can take)
    scale-out      load step -> the policy's scale-out event (seconds, and the group's cpu samples kept in
                   between) -> every node it asked for ready
    scale-in       load off -> the first scale-in event; then back to min
    sawtooth       --sawtooth seconds of the load switched on and off every --tooth / 2 seconds: its edges
                   against the scale-out / scale-in events in that time (more events than edges: flapping)

The numbers come from what the manager recorded: events (the API), the nodes' rows and the group's samples
(read-only SQL: ``ready_at`` and the samples' times are not in the API's values).  Beside each, what AWS
documents for the same policy on EC2 Auto Scaling, and the goal.  When the run ends (normally, on an error, on
Ctrl-C or SIGTERM) the manager is stopped, ``cloudherd down`` runs, and any node still left in the throw-away
home is terminated by the local provider, which stops only the processes it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cloudherd_command, throwaway_env

NAME = "policy"
FLOOR = "policy-floor"
GROUP = "web"
SCALING = ("scale-out", "scale-in")
LOAD_SCRIPT = """#!/bin/sh
# the bench's load: burn this node's cpu while its switch file exists; look again once a second while it does not
setsid sh -c 'while :; do if [ -e "/srv/load/{{ node.name }}" ]; then :; else sleep 1; fi; done' \\
    </dev/null >/dev/null 2>&1 &
"""


def write_spec(folder: Path, name: str, options: argparse.Namespace, count: int, policy: bool) -> Path:
    spec = folder / name / "cloudherd.yml"
    spec.parent.mkdir(parents=True)
    (spec.parent / "load.sh").write_text(LOAD_SCRIPT)
    interval = options.interval
    scaling = ""
    if policy:
        scaling = ("    scaling:\n      policies:\n"
                   f"        - {{metric: cpu, target: {options.target:g}, warmup: {options.warmup * interval:g}s, "
                   f"scale_out_cooldown: {options.cooldown * interval:g}s, "
                   f"scale_in_cooldown: {options.cooldown * interval:g}s, scale_in_after: {options.scale_in_after}}}\n")
    spec.write_text(
        f"name: {name}\nproviders:\n  local: {{type: local, isolation: required, "
        f"shared: ['{folder / 'load'}:/srv/load']}}\n"
        f"groups:\n  {GROUP}:\n    count: {count}\n    min: {count}\n    max: {max(count, options.max)}\n"
        f"    size: {options.size}\n    scripts: [load.sh]\n{scaling}")
    return spec


def run(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cloudherd_command(), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def seconds(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


class Recorded:
    """Read-only views of the state: the API for nodes and events, SQL for what the API does not show."""

    def __init__(self, env: dict[str, str]) -> None:
        from sqlalchemy import create_engine

        from cloudherd.api.client import SyncClient

        self.client = SyncClient(env["CLOUDHERD_DB"])
        self.engine = create_engine(env["CLOUDHERD_DB"])

    def close(self) -> None:
        self.client.close()
        self.engine.dispose()

    def infra_id(self, name: str) -> str:
        return str(self.client.infrastructure(name).id)

    def nodes(self, name: str = NAME) -> list[Any]:
        return [n for n in self.client.infrastructure(name).nodes if n.state != "terminated"]

    def ready(self, name: str = NAME) -> list[Any]:
        return [n for n in self.nodes(name) if n.state == "ready"]

    def events(self, after: int = 0) -> list[Any]:
        return [e for e in self.client.events(NAME, after=after)]

    def last_event_id(self) -> int:
        rows = self.events()
        return rows[-1].id if rows else 0

    def rows(self, infra_id: str) -> dict[str, dict[str, Any]]:
        """Node rows by id: created_at and ready_at (ready_at is not in the API's Node)."""
        from sqlalchemy import select

        from cloudherd.state.models import Node

        with self.engine.connect() as db:
            found = db.execute(select(Node.id, Node.name, Node.created_at, Node.ready_at)
                               .where(Node.infrastructure_id == infra_id))
            return {r.id: {"name": r.name, "created_at": aware(r.created_at), "ready_at": aware(r.ready_at)}
                    for r in found}

    def samples(self, infra_id: str, since: datetime) -> list[tuple[datetime, float, int]]:
        """The group's cpu samples from ``since`` on: (at, value, nodes), oldest first."""
        from sqlalchemy import select

        from cloudherd.state.models import MetricSample

        with self.engine.connect() as db:
            found = db.execute(select(MetricSample.at, MetricSample.value, MetricSample.nodes)
                               .where(MetricSample.infrastructure_id == infra_id, MetricSample.group_name == GROUP,
                                      MetricSample.metric == "cpu").order_by(MetricSample.id))
            rows = [(aware(r.at), r.value, r.nodes) for r in found]
        return [(at, value, nodes) for at, value, nodes in rows if at is not None and at >= since]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, manager: subprocess.Popen[str] | None) -> Any:
    """Poll ``condition`` every 0.1 s until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if manager is not None and manager.poll() is not None:
            raise RuntimeError(f"the manager exited ({manager.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


class Load:
    """The switch files of the loaded nodes, in the host folder the nodes see as /srv/load."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()

    def on(self, names: list[str]) -> datetime:
        at = datetime.now(UTC)
        for name in names:
            (self.folder / name).touch()
        return at

    def off(self) -> datetime:
        at = datetime.now(UTC)
        for switch in self.folder.iterdir():
            switch.unlink()
        return at


def plain_create(state: Recorded, env: dict[str, str], folder: Path, options: argparse.Namespace) -> dict[str, Any]:
    """One node of the same group made by ``up`` on a quiet machine: its row made -> ready, and up's wall time."""
    spec = write_spec(folder, FLOOR, options, 1, policy=False)
    t0 = time.monotonic()
    up = run(["up", str(spec)], env)
    wall = time.monotonic() - t0
    if up.returncode != 0:
        raise RuntimeError(f"up of one node failed:\n{up.stderr[-2000:]}")
    [row] = state.rows(state.infra_id(FLOOR)).values()
    down = run(["down", FLOOR], env)
    if down.returncode != 0:
        raise RuntimeError(f"down of the one node failed:\n{down.stderr[-2000:]}")
    return {"create_s": seconds(row["created_at"], row["ready_at"]), "up_wall_s": wall}


def scaling_events(state: Recorded, after: int, kind: str | None = None) -> list[Any]:
    return [e for e in state.events(after) if e.kind in SCALING and (kind is None or e.kind == kind)]


def step_out(state: Recorded, load: Load, loaded: list[str], options: argparse.Namespace,
             manager: subprocess.Popen[str]) -> dict[str, Any]:
    infra_id = state.infra_id(NAME)
    before = {n.id for n in state.nodes()}
    mark = state.last_event_id()
    step_at = load.on(loaded)
    [event] = wait_for(lambda: scaling_events(state, mark, "scale-out")[:1], options.timeout, "a scale-out", manager)
    decided_at = aware(event.at)
    wanted = options.max
    wait_for(lambda: len(state.ready()) >= wanted, options.timeout, f"{wanted} ready nodes", manager)
    seen_at = datetime.now(UTC)
    rows = state.rows(infra_id)
    new = [r for node_id, r in rows.items() if node_id not in before]
    ready_at = max((r["ready_at"] for r in new if r["ready_at"]), default=None)
    samples = state.samples(infra_id, step_at)
    counted = [s for s in samples if decided_at is not None and s[0] <= decided_at]
    # each scale-out decision's own nodes (made by the pass that decided: rows from its event to the next one's)
    decisions = scaling_events(state, mark, "scale-out")
    times = [aware(e.at) for e in decisions]
    own: list[list[dict[str, Any]]] = [[] for _ in decisions]
    for row in new:
        made = row["created_at"]
        index = max((i for i, at in enumerate(times) if at is not None and made is not None and at <= made),
                    default=0)
        own[index].append(row)
    each = []
    for e, at, rows_of in zip(decisions, times, own, strict=True):
        done = [r["ready_at"] for r in rows_of]
        last = max(done) if done and all(done) else None
        each.append({"event": e.message, "nodes": len(rows_of), "to_ready_s": seconds(at, last)})
    return {"step_at": step_at.isoformat(), "decision_s": seconds(step_at, decided_at),
            "decision_samples": len(counted), "event": event.message, "ready_s": seconds(step_at, ready_at),
            "decisions": each, "observed_s": seconds(step_at, seen_at), "new_nodes": len(new),
            "samples": [(at.isoformat(), value, nodes) for at, value, nodes in samples]}


def step_in(state: Recorded, load: Load, options: argparse.Namespace, manager: subprocess.Popen[str]
            ) -> dict[str, Any]:
    infra_id = state.infra_id(NAME)
    mark = state.last_event_id()
    off_at = load.off()
    [event] = wait_for(lambda: scaling_events(state, mark, "scale-in")[:1], options.timeout, "a scale-in", manager)
    decided_at = aware(event.at)
    samples = state.samples(infra_id, off_at)
    counted = [s for s in samples if decided_at is not None and s[0] <= decided_at]
    floor = options.nodes
    # back to min: each step at most a tenth of the group, one per cooldown
    timeout = options.timeout + (options.max - floor) * options.cooldown * options.interval * 3
    wait_for(lambda: len(state.nodes()) <= floor and len(state.ready()) == floor, timeout, f"back to {floor} nodes",
             manager)
    back_at = datetime.now(UTC)
    events = scaling_events(state, mark)
    return {"off_at": off_at.isoformat(), "decision_s": seconds(off_at, decided_at), "decision_samples": len(counted),
            "event": event.message, "back_to_min_s": seconds(off_at, back_at),
            "events": [f"{e.at:%H:%M:%S} {e.kind} {e.message}" for e in events]}


def sawtooth(state: Recorded, load: Load, loaded: list[str], options: argparse.Namespace,
             manager: subprocess.Popen[str]) -> dict[str, Any]:
    mark = state.last_event_id()
    half = options.tooth / 2
    start = time.monotonic()
    edges = 0
    on = False
    sizes = []
    while time.monotonic() - start < options.sawtooth:
        if manager.poll() is not None:
            raise RuntimeError(f"the manager exited ({manager.returncode}) during the sawtooth")
        if on:
            load.off()
        else:
            load.on(loaded)
        on = not on
        edges += 1
        edge_end = start + edges * half
        while time.monotonic() < min(edge_end, start + options.sawtooth):
            time.sleep(0.2)
        sizes.append(len(state.nodes()))
    if on:  # the last edge: the load off (its scale-in, if any, falls after the count)
        load.off()
        edges += 1
    events = scaling_events(state, mark)
    return {"seconds": time.monotonic() - start, "edges": edges, "scale_events": len(events),
            "sizes_at_edges": sizes, "events": [f"{e.at:%H:%M:%S} {e.kind} {e.message}" for e in events]}


def cleanup(env: dict[str, str], manager: subprocess.Popen[str] | None) -> list[str]:
    """Stop our manager (SIGINT by pid, then SIGKILL), ``down`` both infrastructures, then stop any node left."""
    problems = []
    if manager is not None and manager.poll() is None:
        manager.send_signal(signal.SIGINT)
        try:
            manager.wait(timeout=60)
        except subprocess.TimeoutExpired:
            problems.append("the manager did not stop on SIGINT in 60 s: killed")
            manager.kill()
            manager.wait()
    for name in (NAME, FLOOR):
        down = run(["down", name], env)
        if down.returncode != 0 and "no infrastructure" not in (down.stderr + down.stdout).lower():
            problems.append(f"down {name}: {down.stderr.strip()[-500:]}")
    from cloudherd.providers.local import LocalProvider

    root = Path(env["CLOUDHERD_HOME"]) / "local"
    if root.is_dir():
        provider = LocalProvider("local", {"root": str(root)})
        leftovers = asyncio.run(provider.list({}))
        if leftovers:
            problems.append(f"{len(leftovers)} node(s) left after down: terminated")
            asyncio.run(provider.terminate([i.id for i in leftovers]))
    return problems


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _samples(count: int | None) -> str:
    return "n/a" if count is None else f"{count} sample{'' if count == 1 else 's'}"


def table(result: dict[str, Any], options: argparse.Namespace) -> tuple[str, list[str]]:
    """The table, and the goals missed."""
    interval = options.interval
    floor = result.get("plain") or {}
    out = result.get("out") or {}
    back = result.get("in") or {}
    saw = result.get("sawtooth") or {}
    missed: list[str] = []

    def verdict(ok: bool | None, goal: str) -> str:
        if ok is None:
            return "n/a"
        if not ok:
            missed.append(goal)
        return "met" if ok else "MISSED"

    plain = floor.get("create_s")
    spans = [d["to_ready_s"] for d in out.get("decisions", [])]
    ready = None if not spans or None in spans else max(spans)
    count = len(spans)
    rows = [
        ("plain create of 1 node (row -> ready)", _s(plain), "", "the floor", "",
         "launch + boot of an instance (not a policy number)"),
        ("load step -> scale-out decision", _s(out.get("decision_s")),
         _samples(out.get("decision_samples")), "<= 3 samples",
         verdict(None if not out else out["decision_samples"] <= 3, "decision within 3 samples of the step"),
         "3 one-minute datapoints above: >= 3 min (3 samples)"),
        (f"load step -> {options.max} nodes ready", _s(out.get("ready_s")), f"{count} decision(s)", "", "",
         "decision + launch + 300 s default instance warm-up"),
        ("  a decision -> its nodes ready (worst)", _s(ready),
         f"{ready / plain:.1f}x plain" if ready is not None and plain else "", "<= 2x plain create",
         verdict(None if ready is None or not plain else ready <= 2 * plain,
                 "ready nodes within 2x the plain create time"), ""),
        ("load off -> scale-in decision", _s(back.get("decision_s")),
         _samples(back.get("decision_samples")), "", "",
         "15 one-minute datapoints below: >= 15 min (15 samples)"),
        (f"load off -> back to {options.nodes} nodes", _s(back.get("back_to_min_s")), "", "", "",
         "a step at a time, 300 s default cooldown between"),
        (f"sawtooth {saw.get('seconds', 0):.0f} s, tooth {options.tooth:g} s: scale events",
         str(saw.get("scale_events", "n/a")), f"{saw.get('edges', 'n/a')} edges", "<= edges",
         verdict(None if not saw else saw["scale_events"] <= saw["edges"],
                 "no more scale events than the sawtooth has edges"),
         "300 s cooldown / warm-up, 15 datapoints to scale in: no flapping"),
    ]
    head = ("measure", "here", "", "goal", "", f"AWS documents (1 sample here = {interval:g} s, AWS's = 60 s)")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(head, widths, strict=True)).rstrip()]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(str(cell).ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines), missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=4, help="the group's size and min, all loaded (default 4)")
    parser.add_argument("--max", type=int, default=8, help="the group's max (default 8)")
    parser.add_argument("--size", default="small", help="the nodes' size (default small: 1 cpu, 1 GiB)")
    parser.add_argument("--target", type=float, default=50, help="the policy's cpu target, percent (default 50)")
    parser.add_argument("--interval", type=float, default=2, help="seconds between the manager's passes (samples)")
    parser.add_argument("--warmup", type=int, default=5, help="a new node's warm-up, in samples (default 5)")
    parser.add_argument("--cooldown", type=int, default=5, help="both cooldowns, in samples (default 5)")
    parser.add_argument("--scale-in-after", type=int, default=15, help="samples below to scale in (default 15)")
    parser.add_argument("--sawtooth", type=float, default=600, help="seconds of sawtooth load (default 600; 0: none)")
    parser.add_argument("--tooth", type=float, default=40, help="a tooth, on then off, in seconds (default 40)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for each decision / size")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here ('-': stdout)")
    options = parser.parse_args()
    from cloudherd.providers.local import sandbox as local_sandbox
    from cloudherd.providers.local.meta import SIZES

    reason = local_sandbox.unavailable()
    if reason:
        print(f"cannot sandbox nodes here: {reason}", file=sys.stderr)
        return 2
    if options.size not in SIZES or SIZES[options.size].cpus is None:
        parser.error(f"--size is one of {', '.join(s for s in SIZES if SIZES[s].cpus)}")
    cpus = SIZES[options.size].cpus or 0
    if options.nodes * cpus > (os.cpu_count() or 1):
        print(f"warning: {options.nodes} {options.size} nodes under load want {options.nodes * cpus:g} cpus, this "
              f"machine has {os.cpu_count()}: each gets a share, and their cpu may not pass the target (try --size "
              "nano)", file=sys.stderr)
    wanted = min(options.max, math.ceil(options.nodes * 100 / options.target))

    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    result: dict[str, Any] = {"options": vars(options)}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cloudherd-bench-policy-") as tmp:
        folder = Path(tmp)
        env = throwaway_env(folder)
        load = Load(folder / "load")
        manager = None
        state = None
        try:
            state = Recorded(env)
            print("plain create of one node …", file=sys.stderr, flush=True)
            result["plain"] = plain_create(state, env, folder, options)
            print(f"up {options.nodes} nodes …", file=sys.stderr, flush=True)
            up = run(["up", str(write_spec(folder, NAME, options, options.nodes, policy=True))], env)
            if up.returncode != 0:
                raise RuntimeError(f"up failed:\n{up.stderr[-2000:]}")
            loaded = sorted(n.name for n in state.ready())
            log = open(folder / "manage.log", "w")  # noqa: SIM115 - the manager's whole life
            manager = subprocess.Popen([*cloudherd_command(), "manage", NAME, "--interval", f"{options.interval:g}"],
                                       env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       text=True)
            infra_id = state.infra_id(NAME)
            quiet = datetime.now(UTC)  # two samples of the idle fleet first: the step is then the only change
            wait_for(lambda: len(state.samples(infra_id, quiet)) >= 2, options.timeout, "two samples", manager)
            print("load step …", file=sys.stderr, flush=True)
            result["out"] = step_out(state, load, loaded, options, manager)
            if wanted != options.max:
                problems.append(f"the load wants {wanted} nodes, not max {options.max}")
            print(f"scale-out in {_s(result['out']['decision_s'])}; load off …", file=sys.stderr, flush=True)
            result["in"] = step_in(state, load, options, manager)
            if options.sawtooth > 0:
                print(f"sawtooth for {options.sawtooth:g} s …", file=sys.stderr, flush=True)
                result["sawtooth"] = sawtooth(state, load, loaded, options, manager)
        except (KeyboardInterrupt, RuntimeError) as exc:
            problems.append(f"interrupted: {exc!r}")
            with contextlib.suppress(OSError):
                print(f"manage log (tail):\n{(folder / 'manage.log').read_text()[-3000:]}", file=sys.stderr)
        finally:
            with contextlib.suppress(OSError):
                load.off()
            if state is not None:
                state.close()
            problems += cleanup(env, manager)
            with contextlib.suppress(OSError):
                result["manager_log_tail"] = (folder / "manage.log").read_text()[-5000:]

    loadavg = os.getloadavg()
    print(f"cloudherd target tracking, cpu at {options.target:g}%: {options.nodes} {options.size} local nodes "
          f"(min {options.nodes}, max {options.max}), `manage --interval {options.interval:g}`; warm-up and cooldowns "
          f"{options.cooldown} samples, scale in after {options.scale_in_after} ({os.cpu_count()} CPUs, load "
          f"{loadavg[0]:.1f} {loadavg[1]:.1f})\n")
    text, missed = table(result, options)
    print(text + "\n")
    if result.get("out"):
        for decision in result["out"]["decisions"]:
            print(f"scale-out: {decision['event']}: its {decision['nodes']} node(s) ready in "
                  f"{_s(decision['to_ready_s'])}")
    if result.get("in"):
        print(f"scale-in:  {result['in']['event']}")
    if result.get("sawtooth"):
        print(f"sawtooth:  fleet size at each edge {result['sawtooth']['sizes_at_edges']}")
    for goal in missed:
        print(f"goal missed: {goal}")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    result["problems"], result["missed"] = problems, missed
    if options.json:
        text = json.dumps(result, indent=2, default=str, ensure_ascii=False)
        if options.json == "-":
            print(text)
        else:
            Path(options.json).write_text(text + "\n")
    return 0 if not problems and not missed else 1


if __name__ == "__main__":
    sys.exit(main())
