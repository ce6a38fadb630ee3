#!/usr/bin/env python3
"""What spot saves and what it costs in churn, over a simulated day on AWS (moto's EC2 over HTTP); and how soon an
idle fleet stops against its ``autostop`` setting, on local nodes.

    .venv/bin/python bench/cost.py                      # 20 nodes, 10 interruptions, a day in 15-minute passes
    .venv/bin/python bench/cost.py --nodes 10 --interruptions 6 --step 30 --seed 7 --json /tmp/cost.json
    .venv/bin/python bench/cost.py --skip-autostop

**Spot day.**  One group of ``--nodes`` t3.small spot nodes (``market: {type: spot, return_after: 15m,
interruptions: 3, window: 1h}``) on moto's EC2, each instance reached through a local stand-in node (real sshd:
the health checks are real).  The prices: the AWS price book's (the shipped snapshot, or what ``catalog refresh
aws`` wrote): its on-demand price, and its spot price where it has one, else ``--spot-fraction`` of on-demand,
said so in the output (moto's spot price history is a placeholder).  The day is simulated: one manager pass
(``reconcile`` with its clock set) every ``--step`` minutes of a day.  ``--interruptions`` spot interruptions
happen at seeded random moments, three of them within 40 minutes (a burst, which the group answers by falling
back); each takes a random spot instance back the way EC2 does (terminated with ``Server.SpotInstanceTermination``),
just before the pass that sees it.  After each pass the live nodes are counted by market for the step's length:
the node-hours on spot and on demand.

    replaced        nodes the passes made for interrupted ones, against the interruptions (only those: the
                    others keep their machines, checked by instance id)
    moved back      on-demand nodes replaced by spot ones after the group returned to spot
    node-hours      on spot, on demand; their cost at the book's prices, against the same node-hours on demand
    fall back       simulated time from the interruption that made the burst to the first on-demand node
    return          simulated time from the fallback to every node on spot again (return_after, then one node a pass)

**Autostop.**  One local node, ``autostop: {idle: --idle}``, under ``cloudherd manage --interval 2`` (a subprocess,
stopped by its pid): the time from the end of ``up`` to the node stopped, against the setting (the floor is the
setting: idle time counts from the last action, here the ``up``'s scripts).

Everything happens in a throw-away HOME / CLOUDHERD_HOME / CLOUDHERD_DB; the fleets are brought down at the end.
Not a test: tests/integration/manager/test_market.py and tests/integration/aws/test_aws_spot.py assert the same
behaviour at small sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from common import cloudherd_command, throwaway_env

SIZE, REGION = "t3.small", "us-east-1"
SPOT_SPEC = """\
name: spotday
providers:
  cloud: {{type: aws, region: {region}, reach: "tests.support.moto_reach:LocalStandIns"}}
groups:
  web:
    provider: cloud
    image: {image}
    size: {size}
    count: {nodes}
    market: {{type: spot, return_after: 15m, interruptions: 3, window: 1h}}
"""
IDLE_SPEC = """\
name: idler
autostop: {{idle: {idle}s}}
groups:
  web:
    count: 1
    size: nano    # a sandboxed node with its own cgroup: its cpu is its own, not this computer's
    scripts:
      - {{name: hello.sh, content: "echo hello"}}
"""


@dataclass
class SpotDay:
    nodes: int
    interruptions: int
    step_minutes: int
    on_demand_price: float
    spot_price: float
    replaced: int = 0
    others_ended: int = 0
    moved_back: int = 0
    missed: int = 0  # interruptions due when no spot instance was left to take
    spot_hours: float = 0.0
    on_demand_hours: float = 0.0
    fall_back_minutes: float | None = None
    return_minutes: float | None = None
    prices: str = ""
    pass_seconds: list[float] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    @property
    def cost(self) -> float:
        return self.spot_hours * self.spot_price + self.on_demand_hours * self.on_demand_price

    @property
    def all_on_demand(self) -> float:
        return (self.spot_hours + self.on_demand_hours) * self.on_demand_price


@contextlib.contextmanager
def throwaway() -> Iterator[Path]:
    """A throw-away home, this process's environment pointed at it while inside."""
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as folder:
        os.environ.clear()
        os.environ.update(throwaway_env(Path(folder)))
        try:
            yield Path(folder)
        finally:
            os.environ.clear()
            os.environ.update(saved)


def moments(count: int, rng: random.Random) -> tuple[list[float], float]:
    """``count`` moments of a day (hours), three of them a burst within 40 minutes; and the burst's last."""
    burst_at = rng.uniform(3.0, 9.0)
    burst = [burst_at, burst_at + rng.uniform(0.1, 0.3), burst_at + rng.uniform(0.4, 0.66)]
    rest = [rng.uniform(0.5, 23.5) for _ in range(max(0, count - 3))]
    return sorted(burst[:count] + rest), burst[min(count, 3) - 1]


def spot_book(fraction: float) -> tuple[float, float, str]:
    """On-demand from the AWS book in use; spot from it where it has one (a ``catalog refresh aws`` against AWS
    writes the lowest current one), else ``fraction`` of on-demand — an assumption, said so: moto's
    ``DescribeSpotPriceHistory`` answers a placeholder (0.00001 for every type), no price to reckon with."""
    from cloudherd.providers.prices import price_book

    book = price_book("aws")
    price = book.price(REGION, SIZE) if book else None
    if price is None:
        raise SystemExit(f"the AWS price book has no price of {SIZE} in {REGION}")
    if price.spot is not None:
        return price.hourly, price.spot, book.label() if book else ""
    assumed = f"spot assumed at {fraction:.0%} of on-demand (--spot-fraction)"
    return price.hourly, round(price.hourly * fraction, 6), assumed


def pass_clock(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def recorded(infra_id: str) -> list[Any]:
    """The live nodes as the state has them (no provider asked)."""
    from cloudherd.state.repo import Store

    return [n for n in Store().nodes(infra_id) if n.state != "terminated"]


def run_spot_day(options: argparse.Namespace) -> SpotDay:
    from moto_catalog import an_image
    from moto_faults import interrupt_spot, moto_aws

    with throwaway() as folder, moto_aws(seed=options.seed):
        from cloudherd.api import SyncClient
        from cloudherd.engine.reconcile import CheckTimes, reconcile
        from cloudherd.state.repo import Store
        from cloudherd.times import utcnow

        on_demand, spot, day_prices = spot_book(options.spot_fraction)
        spec = folder / "spotday.yml"
        spec.write_text(SPOT_SPEC.format(region=REGION, image=an_image(), size=SIZE, nodes=options.nodes))
        herd = SyncClient()
        infra_id = herd.up(spec)
        day = SpotDay(options.nodes, options.interruptions, options.step, on_demand, spot, prices=day_prices)
        rng = random.Random(options.seed)
        due, burst_end = moments(options.interruptions, rng)
        start = utcnow()
        times = CheckTimes()
        interrupted: set[str] = set()
        fell_back: datetime | None = None
        steps = 24 * 60 // options.step
        try:
            for step in range(1, steps + 1):
                now = start + timedelta(minutes=step * options.step)
                for moment in [m for m in due if m * 60 <= step * options.step]:
                    due.remove(moment)
                    live = [n for n in recorded(infra_id) if n.market == "spot" and n.provider_id
                            and n.provider_id not in interrupted]
                    if not live:
                        day.missed += 1
                        continue
                    victim = rng.choice(sorted(live, key=lambda n: n.name))
                    interrupt_spot([victim.provider_id or ""], REGION)
                    interrupted.add(victim.provider_id or "")
                times.clock = pass_clock(now)
                began = time.monotonic()
                report = asyncio.run(reconcile(Store(), infra_id, times=times, keeper=True))
                day.pass_seconds.append(time.monotonic() - began)
                if report.error:
                    raise SystemExit(f"pass at {now:%H:%M} failed: {report.error}")
                live = recorded(infra_id)  # as the pass left them: no status, which would notice what the
                hours = options.step / 60  # next pass must (and stamp it by the wall clock, not the day's)
                day.spot_hours += hours * sum(n.market == "spot" for n in live)
                day.on_demand_hours += hours * sum(n.market != "spot" for n in live)
                if fell_back is None and any(n.market == "on-demand" for n in live):
                    fell_back = now
                    day.fall_back_minutes = (now - (start + timedelta(hours=burst_end))).total_seconds() / 60
                if fell_back is not None and day.return_minutes is None and all(n.market == "spot" for n in live):
                    day.return_minutes = (now - fell_back).total_seconds() / 60
            view = herd.status(infra_id)
            ended = [n for n in view.nodes if n.state == "terminated"]
            day.replaced = sum(1 for n in ended if n.provider_id in interrupted)
            day.moved_back = sum(1 for n in ended if n.provider_id not in interrupted
                                 and "spot interruption" not in (n.reason or ""))
            day.others_ended = sum(1 for n in ended if n.provider_id not in interrupted) - day.moved_back
            day.events = [f"{e.at:%H:%M} {e.message}" for e in herd.events(infra_id) if e.kind == "market"]
        finally:
            herd.down(infra_id)
    return day


def run_autostop(options: argparse.Namespace) -> dict[str, Any]:
    with throwaway() as folder:
        from cloudherd.api import SyncClient

        spec = folder / "idler.yml"
        spec.write_text(IDLE_SPEC.format(idle=options.idle))
        herd = SyncClient()
        infra_id = herd.up(spec)
        made = time.monotonic()
        log = open(folder / "manage.log", "w")  # noqa: SIM115 - the manager's whole life
        manager = subprocess.Popen([*cloudherd_command(), "manage", "idler", "--interval", "2"], stdout=log,
                                   stderr=subprocess.STDOUT, env=dict(os.environ))
        try:
            deadline = made + options.idle * 4 + 120
            while time.monotonic() < deadline:
                if any(n.state == "stopped" for n in herd.status(infra_id).live):
                    break
                time.sleep(0.5)
            else:
                raise SystemExit(f"not stopped within {deadline - made:.0f} s; manage log:\n"
                                 f"{(folder / 'manage.log').read_text()[-2000:]}")
            stopped = time.monotonic() - made
        finally:
            manager.terminate()
            manager.wait(30)
            log.close()
            herd.down(infra_id)
    return {"idle_setting_s": options.idle, "stopped_after_s": round(stopped, 1),
            "ratio": round(stopped / options.idle, 2)}


def show(day: SpotDay | None, autostop: dict[str, Any] | None) -> None:
    if day is not None:
        saved = 1 - day.cost / day.all_on_demand if day.all_on_demand else 0.0
        rows = [
            ("nodes, interruptions", f"{day.nodes} nodes, {day.interruptions} interruptions "
                                     f"({day.missed} found no spot node)"),
            ("replaced (interrupted)", f"{day.replaced}; other nodes ended: {day.others_ended}"),
            ("moved back to spot", str(day.moved_back)),
            ("node-hours spot / on demand", f"{day.spot_hours:.1f} / {day.on_demand_hours:.1f}"),
            ("prices $/h spot / on demand", f"{day.spot_price:.4f} / {day.on_demand_price:.4f} ({day.prices})"),
            ("cost vs all on demand", f"${day.cost:.2f} vs ${day.all_on_demand:.2f} ({saved:.0%} saved)"),
            ("fall back after the burst", "-" if day.fall_back_minutes is None
             else f"{day.fall_back_minutes:.0f} min (simulated; passes every {day.step_minutes} min)"),
            ("back on spot after falling back", "-" if day.return_minutes is None
             else f"{day.return_minutes:.0f} min (simulated; return_after 15 min)"),
            ("a pass (real time)", f"median {statistics.median(day.pass_seconds):.2f} s, "
                                   f"max {max(day.pass_seconds):.2f} s over {len(day.pass_seconds)} passes"),
        ]
        width = max(len(r[0]) for r in rows)
        print("spot day on AWS (moto):")
        for name, value in rows:
            print(f"  {name:<{width}}  {value}")
        for event in day.events:
            print(f"    {event}")
    if autostop is not None:
        print(f"autostop on local: idle {autostop['idle_setting_s']} s → stopped after {autostop['stopped_after_s']} s "
              f"({autostop['ratio']} times the setting)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--interruptions", type=int, default=10)
    parser.add_argument("--step", type=int, default=15, help="simulated minutes between passes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--spot-fraction", type=float, default=0.3,
                        help="spot's price as a share of on-demand, where the price book has no spot price")
    parser.add_argument("--idle", type=int, default=20, help="autostop's idle setting, seconds")
    parser.add_argument("--skip-spot", action="store_true")
    parser.add_argument("--skip-autostop", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    options = parser.parse_args()
    day = None if options.skip_spot else run_spot_day(options)
    autostop = None if options.skip_autostop else run_autostop(options)
    show(day, autostop)
    if options.json is not None:
        found = {"spot_day": None if day is None else {**asdict(day), "cost": day.cost,
                                                        "all_on_demand": day.all_on_demand},
                 "autostop": autostop}
        options.json.write_text(json.dumps(found, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
