#!/usr/bin/env python3
"""Team-mode scale: 10,000 recorded nodes in 100 infrastructures on a real PostgreSQL, and how long cloudherd's
state-bound work takes over them.

    .venv/bin/python bench/scale.py                       # 100 x 100 nodes, list latency 20 ms
    .venv/bin/python bench/scale.py --infras 20 --nodes 50 --latency 0.05 --db postgresql+psycopg://…

No machine is made: the nodes are rows, and the provider is synthetic — it stands in for ``local`` in this
process and its workers, and answers ``list`` from memory (the machines the bench recorded, all running) after
a configurable latency, as a cloud's list call would.  Health checks are off (``ssh: false``), so a pass is the
state work: read the spec as applied, list, compare, record.  Without ``--db`` a throw-away PostgreSQL cluster is
started with the machine's own initdb / pg_ctl (tests/support/pg_harness.py) and removed after.

Rows: ``plan`` of one 100-node infrastructure (API, in-process), ``status`` of one (API: includes the list call),
a reconcile round over every infrastructure by 1 manager and by 3 manager processes sharing them, and a manager's
peak memory (RSS).  A round is timed around ``Manager.round()`` in each manager process.  Its first round claims
its share (a lease each) and parses each spec once; the rounds after it are the steady state, which the goals
are read against: the median of three, each started once every node's check (every second) is due again, so
each round checks and records all of its nodes.  The first round's time is printed too.
Goals (issue #15): plan < 0.2 s, status < 0.3 s, a pass over 10,000 nodes < 5 s with one manager and < 2 s with
three, manager memory < 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MACHINES_ENV = "CLOUDHERD_BENCH_MACHINES"  # the JSON file of the synthetic machines, for the workers
LATENCY_ENV = "CLOUDHERD_BENCH_LATENCY"
STEADY_ROUNDS = 3  # after a manager's first round (it claims, parses each spec once): the median of these


def install_synthetic_provider() -> None:
    """``local`` becomes the synthetic provider in this process (before any provider is made)."""
    import cloudherd.providers as providers

    providers.DRIVERS["local"] = "scale:Synthetic"
    sys.modules.setdefault("scale", sys.modules[__name__])


def _provider_class() -> type:
    from cloudherd.providers.base import Instance, InstanceState, Provider

    class Synthetic(Provider):
        """Answers list calls from the bench's record of machines, after ``latency`` seconds."""

        type = "local"
        listing_lag = 0.0
        machines: dict[str, list[dict[str, Any]]] | None = None

        def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
            super().__init__(name, settings)
            self.latency = float(os.environ.get(LATENCY_ENV, "0.02"))
            if Synthetic.machines is None:
                Synthetic.machines = json.loads(Path(os.environ[MACHINES_ENV]).read_text())

        async def create(self, request: Any) -> list[Any]:
            raise RuntimeError("the synthetic provider makes nothing: the bench's fleet is at size")

        async def list(self, tags: Mapping[str, str]) -> list[Any]:
            from cloudherd.providers.base import TAG_INFRA

            await asyncio.sleep(self.latency)
            rows = (Synthetic.machines or {}).get(tags.get(TAG_INFRA, ""), [])
            return [Instance(id=m["id"], name=m["name"], state=InstanceState.RUNNING, address=m["address"],
                             tags={TAG_INFRA: m["infra"]}) for m in rows]

        async def terminate(self, ids: Sequence[str]) -> None:
            raise RuntimeError("the synthetic provider terminates nothing")

        async def close(self) -> None:
            return None

    return Synthetic


def __getattr__(name: str) -> Any:  # the class is made on first use, once cloudherd is importable
    if name == "Synthetic":
        globals()["Synthetic"] = _provider_class()
        return globals()["Synthetic"]
    raise AttributeError(name)


# checks every second: each steady round below finds every node due, and records all 10,000 results
SPEC = ("name: {name}\ngroups:\n  web:\n    count: {count}\n    health: {{ssh: false, interval: 1}}\n")


def record_fleet(url: str, infras: int, nodes: int, folder: Path) -> tuple[list[str], Path]:
    """Rows of ``infras`` attached, ready infrastructures of ``nodes`` ready nodes each; the machines' file."""
    from cloudherd.engine.context import ensure_identity
    from cloudherd.state.db import open_engine
    from cloudherd.state.models import utcnow
    from cloudherd.state.repo import Store

    store = Store(open_engine(url))
    identity = ensure_identity(store)
    machines: dict[str, list[dict[str, Any]]] = {}
    ids = []
    now = utcnow()
    for i in range(infras):
        name = f"scale-{i:03d}"
        spec = folder / f"{name}.yml"
        spec.write_text(SPEC.format(name=name, count=nodes))
        infra = store.create_infrastructure(name=name, owner_id=identity.user_id, state="ready",
                                            spec_path=str(spec), spec_text=spec.read_text(), ssh_user=None,
                                            ssh_key_path=str(identity.key_path), attached=True)
        store.add_group(infra.id, name="web", position=0, provider="local", provider_type="local", image=None,
                        size=None, count=nodes, config={"scripts": [], "teardown": None, "tags": {}, "env": {},
                                                         "artifacts": [], "ports": []})
        rows = [{"group_name": "web", "name": f"{name}-web-{n}", "index": n, "provider": "local", "state": "ready",
                 "provider_id": f"syn-{infra.id}-{n}", "address": f"10.{i // 250}.{i % 250}.{n % 250}",
                 "ready_at": now, "health": "healthy"} for n in range(1, nodes + 1)]
        store.add_nodes(infra.id, rows)
        machines[infra.id] = [{"id": r["provider_id"], "name": r["name"], "address": r["address"],
                               "infra": infra.id} for r in rows]
        ids.append(infra.id)
    path = folder / "machines.json"
    path.write_text(json.dumps(machines))
    store.engine.dispose()
    return ids, path


def worker(args: argparse.Namespace) -> None:
    """One manager process: register, wait until ``--peers`` managers are registered, then one round."""
    install_synthetic_provider()
    from cloudherd.engine.manager import MANAGERS, Manager
    from cloudherd.state.db import open_engine
    from cloudherd.state.repo import Store

    store = Store(open_engine(args.db))
    manager = Manager(store, every_attached=True, interval=3600)
    manager.register()
    deadline = time.monotonic() + 120
    while len(store.leases_under(MANAGERS)) < args.peers and time.monotonic() < deadline:
        time.sleep(0.05)
    rounds: list[float] = []
    reports: list[Any] = []
    started = seconds = 0.0
    for number in range(1 + STEADY_ROUNDS):
        if number:  # the next round once every node's check is due again (interval 1 s)
            time.sleep(max(0.0, 1.0 - (time.perf_counter() - started) + seconds))
        started = time.perf_counter()
        reports = asyncio.run(manager.round())
        seconds = time.perf_counter() - started
        rounds.append(seconds)
    errors = [r.error for r in reports if r.error]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    manager.release()
    print(json.dumps({"passes": len(reports), "first": rounds[0], "seconds": statistics.median(rounds[1:]),
                      "rss_mb": rss_mb, "errors": errors[:3]}))


def run_managers(db: str, count: int, env: dict[str, str]) -> list[dict[str, Any]]:
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--db", db, "--peers", str(count)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(count)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"manager worker failed: {err.strip()[-800:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def timed(samples: int, work: Any) -> float:
    times = []
    for _ in range(samples + 1):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--infras", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=100, help="nodes per infrastructure")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per synthetic list call")
    parser.add_argument("--db", help="a PostgreSQL URL (default: a throw-away cluster)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--peers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    sys.path.insert(0, str(REPO / "tests" / "support"))
    from pg_harness import start_postgres

    folder = Path(tempfile.mkdtemp(prefix="cloudherd-scale-"))
    server = None
    if args.db is None:
        server = start_postgres()
        args.db = server.fresh_database()
    env = {**os.environ, "CLOUDHERD_DB": args.db, "CLOUDHERD_HOME": str(folder / "home"),
           LATENCY_ENV: str(args.latency)}
    os.environ.update(env)
    try:
        print(f"recording {args.infras} x {args.nodes} nodes on PostgreSQL …", file=sys.stderr)
        started = time.perf_counter()
        ids, machines = record_fleet(args.db, args.infras, args.nodes, folder)
        env[MACHINES_ENV] = os.environ[MACHINES_ENV] = str(machines)
        print(f"recorded in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        install_synthetic_provider()
        from cloudherd.api.client import SyncClient

        with SyncClient(args.db) as herd:
            spec = folder / "scale-000.yml"
            plan_s = timed(5, lambda: herd.plan(spec))
            status_s = timed(5, lambda: herd.status(ids[0]))
        one = run_managers(args.db, 1, env)
        three = run_managers(args.db, 3, env)
    finally:
        if server is not None:
            server.stop()
    total = args.infras * args.nodes
    rows = [
        (f"plan of one {args.nodes}-node infrastructure (API)", f"{plan_s:.3f} s", "< 0.2 s", plan_s < 0.2),
        (f"status of one {args.nodes}-node infrastructure (API)", f"{status_s:.3f} s", "< 0.3 s", status_s < 0.3),
        (f"a round over {total} nodes, 1 manager", f"{one[0]['seconds']:.2f} s", "< 5 s", one[0]["seconds"] < 5),
        (f"a round over {total} nodes, 3 managers (slowest)", f"{max(r['seconds'] for r in three):.2f} s",
         "< 2 s", max(r["seconds"] for r in three) < 2),
        ("  a manager's first round, 1 manager", f"{one[0]['first']:.2f} s", "", None),
        ("  a manager's first round, 3 managers (slowest)", f"{max(r['first'] for r in three):.2f} s", "", None),
        ("manager peak memory (1 manager)", f"{one[0]['rss_mb']:.0f} MB", "< 200 MB", one[0]["rss_mb"] < 200),
    ]
    print(f"\nbench/scale.py: {args.infras} infrastructures x {args.nodes} nodes on PostgreSQL, synthetic list "
          f"latency {args.latency * 1000:.0f} ms, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'took':>10}  {'goal':>9}  met")
    for label, took, goal, met in rows:
        print(f"{label:<{width}}  {took:>10}  {goal:>9}  {'' if met is None else 'yes' if met else 'NO'}")
    shares = [r["passes"] for r in three]
    print(f"\n3 managers: passes per manager {shares} (of {args.infras}); errors: "
          f"{[e for r in one + three for e in r['errors']][:3] or 'none'}")


if __name__ == "__main__":
    main()
