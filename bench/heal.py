#!/usr/bin/env python3
"""Self-healing and scaling under ``cloudherd manage``: how long from a node's death to its replacement
being ready, and from ``cloudherd scale web +50`` to 50 more ready nodes.

    .venv/bin/python bench/heal.py                         # 20 local nodes, median of 10 kills, one +50
    .venv/bin/python bench/heal.py --kills 3 --json /tmp/heal.json

Everything happens in a throw-away HOME / CLOUDHERD_HOME / CLOUDHERD_DB.  ``cloudherd up`` makes one
group ``web`` (count 20, max 100, one small script, ``health: {interval: 1s, grace: 0s, timeout: 2s,
unhealthy_after: 2}``), then ``cloudherd manage heal --interval 1`` runs in the background (the real CLI,
a subprocess of this script, stopped with SIGINT by its pid at the end).

Kills: one at a time, a ready node's OpenSSH server is SIGKILLed (its pid read from the node folder's
``sshd.pid`` in the throw-away home, checked against ``node.json``), and the clock runs until the fleet
is back at 20 ready nodes without the victim.  The next kill waits for that.  Each heal is split into
phases by timestamps the manager wrote itself:

    detect   kill -> the event that marks the victim dead / failed (``cloudherd events --json``); a
             killed sshd is seen by the pass's provider listing (dead), before any health check
    retire   that event -> the victim's terminate intent closed (journal); includes the pass's health
             checks of the other nodes and its plan, which run between the listing and the converge
    create   -> the replacement's create intent closed (the machine exists, its sshd started)
    deploy   -> the replacement's ready_at (SSH login + its scripts)
    observe  -> this script saw 20 ready (its poll of the recorded state, every 0.1 s)

Journal intents and ``ready_at`` are not in the API's values: they are read from the state database
(read-only SQL).  Scale: ``cloudherd scale heal web +50`` (which returns at once: the running manager
applies it), timed from the command's start to 70 ready nodes, split the same way (command, the
manager picking it up, create, deploy of the last node).  When the run ends (normally, on an error, on
Ctrl-C or SIGTERM) the manager is stopped, ``cloudherd down`` runs, and any node still left in the
throw-away home is terminated by the local provider, which stops only the processes it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cloudherd_command, throwaway_env

NAME = "heal"
GROUP = "web"
PHASES = ("detect", "retire", "create", "deploy", "observe")
SCALE_PHASES = ("command", "pickup", "create", "deploy", "observe")


def write_spec(folder: Path, count: int) -> Path:
    spec = folder / "spec" / "cloudherd.yml"
    (spec.parent / "scripts").mkdir(parents=True)
    (spec.parent / "scripts" / "10-setup.sh").write_text('#!/bin/sh\necho "{{ node.name }}" > me.txt\n')
    spec.write_text(
        f"name: {NAME}\ngroups:\n  {GROUP}:\n    count: {count}\n    max: 100\n    scripts: [scripts/]\n"
        "    health: {interval: 1s, grace: 0s, timeout: 2s, unhealthy_after: 2}\n"
    )
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

        self.env = env
        self.client = SyncClient(env["CLOUDHERD_DB"])
        self.engine = create_engine(env["CLOUDHERD_DB"])

    def close(self) -> None:
        self.client.close()
        self.engine.dispose()

    def nodes(self) -> list[Any]:
        return list(self.client.infrastructure(NAME).nodes)

    def ready(self) -> list[Any]:
        return [n for n in self.nodes() if n.state == "ready"]

    def events(self, after: int = 0) -> list[Any]:
        return self.client.events(NAME, after=after)

    def last_event_id(self) -> int:
        rows = self.events()
        return rows[-1].id if rows else 0

    def rows(self) -> dict[str, dict[str, Any]]:
        """Node rows by id: ready_at and created_at (ready_at is not in the API's Node)."""
        from sqlalchemy import select

        from cloudherd.state.models import Node

        with self.engine.connect() as db:
            return {r.id: {"name": r.name, "state": r.state, "created_at": aware(r.created_at),
                           "ready_at": aware(r.ready_at), "updated_at": aware(r.updated_at)}
                    for r in db.execute(select(Node.id, Node.name, Node.state, Node.created_at, Node.ready_at,
                                               Node.updated_at))}

    def intents(self, since: datetime) -> list[dict[str, Any]]:
        from sqlalchemy import select

        from cloudherd.state.models import Intent

        with self.engine.connect() as db:
            rows = db.execute(select(Intent.kind, Intent.state, Intent.node_ids, Intent.created_at, Intent.closed_at))
            found = [{"kind": r.kind, "state": r.state, "nodes": set((r.node_ids or {}).get("nodes") or []),
                      "created_at": aware(r.created_at), "closed_at": aware(r.closed_at)} for r in rows]
        return [i for i in found if i["created_at"] is not None and i["created_at"] >= since]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, manager: subprocess.Popen[str]) -> Any:
    """Poll ``condition`` every 0.1 s until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if manager.poll() is not None:
            raise RuntimeError(f"the manager exited ({manager.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def sshd_pid(local_root: Path, node: Any) -> int:
    """The victim's sshd pid from its folder in our throw-away home (pid file, checked against node.json)."""
    folder = local_root / str(node.provider_id)
    meta = json.loads((folder / "node.json").read_text())
    if meta.get("name") != node.name:
        raise RuntimeError(f"{folder} holds {meta.get('name')}, not {node.name}")
    pid = int((folder / "sshd.pid").read_text().split()[0])
    identity = meta.get("server_identity") or {}
    if identity.get("pid") not in (None, pid):
        raise RuntimeError(f"{node.name}: sshd.pid says {pid}, node.json's server identity {identity.get('pid')}")
    if "sshd" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
        raise RuntimeError(f"{node.name}: pid {pid} is not an sshd")
    return pid


def heal_once(state: Recorded, local_root: Path, count: int, rng: random.Random,
              manager: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    def settled() -> list[Any] | None:  # every live node ready, as many as asked for
        live = [n for n in state.nodes() if n.state != "terminated"]
        return live if len(live) == count and all(n.state == "ready" for n in live) else None

    before = wait_for(settled, timeout, f"{count} ready nodes", manager)
    victim = rng.choice(before)
    pid = sshd_pid(local_root, victim)
    mark = state.last_event_id()
    old_ids = {n.id for n in state.nodes()}
    killed_at = datetime.now(UTC)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)

    def healed() -> list[Any] | None:
        ready = state.ready()
        names = {n.name for n in ready}
        return ready if len(ready) == count and victim.name not in names else None

    ready = wait_for(healed, timeout, f"{victim.name}'s replacement", manager)
    total = time.monotonic() - t0
    seen_at = datetime.now(UTC)
    new = [n for n in ready if n.id not in old_ids]
    events = state.events(after=mark)
    rows = state.rows()
    intents = state.intents(killed_at)
    detect_event = next((e for e in events if e.kind == "health" and e.message.startswith(f"{victim.name}:")
                         and ("dead" in e.message or "failed" in e.message)), None)
    retire = next((i for i in intents if i["kind"] == "terminate" and victim.id in i["nodes"]), None)
    replacement = new[0] if len(new) == 1 else None
    create = next((i for i in intents if i["kind"] == "create" and replacement and replacement.id in i["nodes"]),
                  None)
    ready_at = rows.get(replacement.id, {}).get("ready_at") if replacement else None
    marks = [killed_at, aware(detect_event.at) if detect_event else None, retire and retire["closed_at"],
             create and create["closed_at"], ready_at, seen_at]
    phases: dict[str, float | None] = {}
    for name, (a, b) in zip(PHASES, itertools.pairwise(marks), strict=True):
        phases[name] = seconds(a, b)
    return {
        "victim": victim.name, "sshd_pid": pid, "replacement": replacement.name if replacement else None,
        "new_nodes": [n.name for n in new], "total_s": total, "phases_s": phases,
        "detected_by": detect_event.message if detect_event else None,
        "retire_intent_s": seconds(retire["created_at"], retire["closed_at"]) if retire else None,
        "create_intent_s": seconds(create["created_at"], create["closed_at"]) if create else None,
        "events": [f"{e.at:%H:%M:%S.%f} {e.kind} {e.message}" for e in events],
    }


def scale_once(state: Recorded, env: dict[str, str], count: int, amount: int, manager: subprocess.Popen[str],
               timeout: float) -> dict[str, Any]:
    old_ids = {n.id for n in state.nodes()}
    mark = state.last_event_id()
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    done = run(["scale", NAME, GROUP, f"+{amount}"], env)
    command_s = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"scale failed ({done.returncode}): {done.stderr[-1000:]}")
    target = count + amount
    wait_for(lambda: len(state.ready()) >= target, timeout, f"{target} ready nodes", manager)
    total = time.monotonic() - t0
    seen_at = datetime.now(UTC)
    command_end = started_at + timedelta(seconds=command_s)
    rows = state.rows()
    new = [r for node_id, r in rows.items() if node_id not in old_ids]
    intents = [i for i in state.intents(started_at) if i["kind"] == "create"]
    events = state.events(after=mark)
    pickup = next((e for e in events if e.kind == "scale"), None)
    last_create = max((i["closed_at"] for i in intents if i["closed_at"]), default=None)
    last_ready = max((r["ready_at"] for r in new if r["ready_at"]), default=None)
    marks = [started_at, command_end, aware(pickup.at) if pickup else None, last_create, last_ready, seen_at]
    phases = {name: seconds(a, b) for name, (a, b) in zip(SCALE_PHASES, itertools.pairwise(marks),
                                                           strict=True)}
    return {"amount": amount, "total_s": total, "phases_s": phases, "new_nodes": len(new),
            "create_intents": len(intents), "stdout": done.stdout.strip(),
            "events": [f"{e.at:%H:%M:%S.%f} {e.kind} {e.message}" for e in events]}


def cleanup(env: dict[str, str], manager: subprocess.Popen[str] | None) -> list[str]:
    """Stop our manager (SIGINT by pid, then SIGKILL), ``down``, then stop any node left in the home."""
    problems = []
    if manager is not None and manager.poll() is None:
        manager.send_signal(signal.SIGINT)
        try:
            manager.wait(timeout=60)
        except subprocess.TimeoutExpired:
            problems.append("the manager did not stop on SIGINT in 60 s: killed")
            manager.kill()
            manager.wait()
    down = run(["down", NAME], env)
    if down.returncode != 0 and "no infrastructure" not in down.stderr.lower():
        problems.append(f"down: {down.stderr.strip()[-500:]}")
    from cloudherd.providers.local import LocalProvider

    root = Path(env["CLOUDHERD_HOME"]) / "local"
    if root.is_dir():
        provider = LocalProvider("local", {"root": str(root)})
        leftovers = asyncio.run(provider.list({}))
        if leftovers:
            problems.append(f"{len(leftovers)} node(s) left after down: terminated")
            asyncio.run(provider.terminate([i.id for i in leftovers]))
    return problems


def stats(values: list[float | None]) -> tuple[str, str, str, int]:
    known = [v for v in values if v is not None]
    if not known:
        return "n/a", "n/a", "n/a", 0
    return (f"{statistics.median(known):.2f}s", f"{min(known):.2f}s", f"{max(known):.2f}s", len(known))


def table(heals: list[dict[str, Any]], scales: list[dict[str, Any]], nodes: int, amount: int) -> str:
    head = f"{'measure':<44} {'median':>8} {'min':>8} {'max':>8} {'n':>4}"
    lines = [head, "-" * len(head)]

    def row(label: str, values: list[float | None], total: int) -> None:
        median, low, high, n = stats(values)
        note = "" if n == total else f"  (measured in {n} of {total})"
        lines.append(f"{label:<44} {median:>8} {low:>8} {high:>8} {n:>4}{note}")

    if heals:
        row(f"heal: sshd SIGKILL -> {nodes} ready again", [h["total_s"] for h in heals], len(heals))
        labels = {
            "detect": "  detect  (kill -> dead/failed event)",
            "retire": "  retire  (-> terminate intent closed)*",
            "create": "  create  (-> create intent closed)",
            "deploy": "  deploy  (-> replacement ready_at)",
            "observe": "  observe (-> bench saw it, 0.1 s poll)",
        }
        for phase in PHASES:
            row(labels[phase], [h["phases_s"][phase] for h in heals], len(heals))
        row("  (terminate call alone, intent open->close)", [h["retire_intent_s"] for h in heals], len(heals))
        row("  (create call alone, intent open->close)", [h["create_intent_s"] for h in heals], len(heals))
    if scales:
        row(f"scale +{amount}: command -> {nodes + amount} ready", [s["total_s"] for s in scales], len(scales))
        labels = {
            "command": "  command (cloudherd scale exits)",
            "pickup": "  pickup  (-> manager's scale event)",
            "create": "  create  (-> last create intent closed)*",
            "deploy": "  deploy  (-> last new node ready_at)",
            "observe": "  observe (-> bench saw it, 0.1 s poll)",
        }
        for phase in SCALE_PHASES:
            row(labels[phase], [s["phases_s"][phase] for s in scales], len(scales))
    lines.append("* includes the rest of that pass before the cloud call: health checks of the other nodes, the plan")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="sshd kills, one at a time (default 10)")
    parser.add_argument("--nodes", type=int, default=20, help="fleet size (default 20)")
    parser.add_argument("--scale", type=int, default=50, help="scale +N after the kills (default 50; 0: skip)")
    parser.add_argument("--seed", type=int, default=None, help="which node each kill picks")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for each heal / scale")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here ('-': stdout)")
    options = parser.parse_args()
    if options.nodes + options.scale > 100:
        parser.error("--nodes + --scale must be ≤ 100 (the group's max)")
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(1_000_000)
    rng = random.Random(seed)

    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    heals: list[dict[str, Any]] = []
    scales: list[dict[str, Any]] = []
    problems: list[str] = []
    up_s = None
    with tempfile.TemporaryDirectory(prefix="cloudherd-bench-heal-") as folder:
        env = throwaway_env(Path(folder))
        spec = write_spec(Path(folder), options.nodes)
        manager = None
        state = None
        try:
            print(f"up {options.nodes} nodes …", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            up = run(["up", str(spec)], env)
            up_s = time.monotonic() - t0
            if up.returncode != 0:
                print(f"up failed:\n{up.stderr[-2000:]}", file=sys.stderr)
                return 1
            log = open(Path(folder) / "manage.log", "w")  # noqa: SIM115 - the manager's whole life
            manager = subprocess.Popen([*cloudherd_command(), "manage", NAME, "--interval", "1"], env=env,
                                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
            state = Recorded(env)
            local_root = Path(env["CLOUDHERD_HOME"]) / "local"
            for index in range(options.kills):
                result = heal_once(state, local_root, options.nodes, rng, manager, options.timeout)
                heals.append(result)
                print(f"kill {index + 1}/{options.kills}: {result['victim']} -> {result['replacement']} in "
                      f"{result['total_s']:.2f}s", file=sys.stderr, flush=True)
            if options.scale:
                wait_for(lambda: len(state.ready()) == options.nodes, options.timeout, "the fleet", manager)
                result = scale_once(state, env, options.nodes, options.scale, manager, options.timeout)
                scales.append(result)
                print(f"scale +{options.scale}: {result['total_s']:.2f}s", file=sys.stderr, flush=True)
        except (KeyboardInterrupt, RuntimeError) as exc:
            problems.append(f"interrupted: {exc!r}")
            with contextlib.suppress(OSError):
                tail = (Path(folder) / "manage.log").read_text()[-3000:]
                print(f"manage log (tail):\n{tail}", file=sys.stderr)
        finally:
            if state is not None:
                state.close()
            problems += cleanup(env, manager)
            manager_log = ""
            with contextlib.suppress(OSError):
                manager_log = (Path(folder) / "manage.log").read_text()

    load = os.getloadavg()
    print(f"cloudherd heal / scale under `manage --interval 1`: {options.nodes} local nodes, {len(heals)} kill(s), "
          f"seed {seed}, up took {up_s or 0:.1f}s ({os.cpu_count()} CPUs, load {load[0]:.1f} {load[1]:.1f})\n")
    print(table(heals, scales, options.nodes, options.scale))
    detectors = sorted({(h["detected_by"] or "no event").split(": ", 1)[-1] for h in heals})
    print(f"\nwhat marked each victim (its event): {'; '.join(detectors) or 'n/a'}")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if options.json:
        data = {"nodes": options.nodes, "seed": seed, "up_s": up_s, "heals": heals, "scales": scales,
                "problems": problems, "cpus": os.cpu_count(), "load": load,
                "manager_log_tail": manager_log[-5000:]}
        text = json.dumps(data, indent=2, default=str, ensure_ascii=False)
        if options.json == "-":
            print(text)
        else:
            Path(options.json).write_text(text + "\n")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
