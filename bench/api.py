#!/usr/bin/env python3
"""The AWS Auto Scaling face of ``cloudherd serve`` against moto's server, driven by boto3's stock
``autoscaling`` client, and cloudherd's native ``GET /v1/infrastructures/{id}``: calls/s and latency.

    .venv/bin/python bench/api.py             # 300 timed calls per row, after 20 warm-up calls
    .venv/bin/python bench/api.py --quick     # 50 timed calls per row

Both servers are subprocesses of this script on 127.0.0.1 (``cloudherd serve --config server.yml`` in a
throw-away HOME / CLOUDHERD_HOME / CLOUDHERD_DB, and ``python -m moto.server``), each stopped with SIGTERM
by its pid at the end.  The server file offers one cloud, ``here: {type: local}``, with a manager interval
of 3600 s, so that no timed reconcile pass competes with the measure (a change that pokes the manager
still starts a pass at once: see row 2).  Rows, each measured on cloudherd then on moto, sequentially from
one client (one call at a time, ``time.perf_counter`` around each call):

    describe-groups   DescribeAutoScalingGroups (MaxRecords=100) with 100 groups present (MinSize 0,
                      MaxSize 2, DesiredCapacity 0: no machine), every answer checked to hold 100 groups
    launch-config     CreateLaunchConfiguration + DeleteLaunchConfiguration of a new name: one pair is one op
    native-get        GET /v1/infrastructures/{id} (httpx, bearer token) of an infrastructure of 100 nodes
                      recorded in the state beforehand (no machines, no moto peer: its moto column is "-")
    set-desired       SetDesiredCapacity on a dedicated group (MinSize 0, MaxSize 2), alternating 1 and 0.
                      On cloudherd each change pokes the manager, which really makes (and then removes) a
                      local node in the background while the calls go on; on moto it is a fake instance.
                      It runs last; afterwards the group is force-deleted and the bench waits until it is
                      no longer listed, so that nothing is left running.

How to read the output: ``ops/s`` is timed calls / their total wall time; ``p50`` / ``p99`` are the
latency percentiles in ms.  The ratios compare cloudherd with moto: ``p50 ratio`` = cloudherd p50 / moto
p50 (above 1: cloudherd is slower), ``ops/s ratio`` = cloudherd ops/s / moto ops/s (below 1: cloudherd is
slower).  The goal "no slower than moto" holds on a row when p50 ratio ≤ 1 and ops/s ratio ≥ 1.  Client,
servers and whatever else runs share this computer: the footer prints the load average; compare rows of
one run, not runs of a busy machine.

The 100 nodes of ``native-get`` are rows written with cloudherd's Store before the server starts, state
``ready``, with no provider id: a node with a provider id would be looked up in the local provider's
listing by the first GET, found missing and marked dead, and every later GET would then answer for 100
dead nodes.  So the row times the route (token, state queries, the view of 100 nodes, JSON) without the
provider's listing, which for real local nodes adds a process check per node.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cloudherd_command, throwaway_env

GROUPS = 100
NODES = 100
CLOUD = "here"  # the one cloud the server offers
CH_LAUNCH = f"lc@{CLOUD}"
MOTO_LAUNCH = "bench-lc"
MOTO_ZONE = "us-east-1a"
MOTO_IMAGE = "ami-12c6146b"  # one of moto's own AMIs
DESIRED_GROUP = "bench-desired"


@dataclass
class Measured:
    row: str
    server: str
    samples: list[float]  # seconds per op
    total: float  # wall seconds of all timed ops

    @property
    def ops(self) -> float:
        return len(self.samples) / self.total if self.total > 0 else float("nan")

    @property
    def p50(self) -> float:
        return statistics.median(self.samples) * 1000

    @property
    def p99(self) -> float:
        if len(self.samples) < 2:
            return self.samples[0] * 1000
        return statistics.quantiles(self.samples, n=100, method="inclusive")[98] * 1000


def measure(row: str, server: str, op: Callable[[int], Any], calls: int, warmup: int) -> Measured:
    """``warmup`` untimed calls, then ``calls`` timed ones; ``op`` gets a running index (for names, values)."""
    for index in range(warmup):
        op(index)
    samples = []
    start = time.perf_counter()
    for index in range(warmup, warmup + calls):
        t0 = time.perf_counter()
        op(index)
        samples.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    print(f"  {row:<16} {server:<10} {len(samples) / total:8.1f} ops/s", file=sys.stderr, flush=True)
    return Measured(row, server, samples, total)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             process: subprocess.Popen[bytes] | None = None, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = condition()
            if value:
                return value
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def autoscaling_client(url: str, key: str, secret: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 1}, read_timeout=120, connect_timeout=10)
    return boto3.client("autoscaling", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret, config=config)


def record_fleet(env: dict[str, str], folder: Path) -> str:
    """An infrastructure of NODES ready node rows, without machines, written in-process before the server
    starts; returns its id.  It is not attached: no manager pass goes near it."""
    os.environ.update(CLOUDHERD_HOME=env["CLOUDHERD_HOME"], CLOUDHERD_DB=env["CLOUDHERD_DB"])
    from cloudherd.engine.context import ensure_identity
    from cloudherd.state.db import open_engine
    from cloudherd.state.repo import Store

    spec = folder / "fleet" / "cloudherd.yml"
    spec.parent.mkdir()
    text = f"name: bench-{NODES}\ngroups:\n  web:\n    provider: local\n    count: {NODES}\n"
    spec.write_text(text)
    engine = open_engine(env["CLOUDHERD_DB"])
    try:
        store = Store(engine)
        identity = ensure_identity(store)
        infra = store.create_infrastructure(name=f"bench-{NODES}", owner_id=identity.user_id, state="ready",
                                            spec_path=str(spec), spec_text=text, ssh_user=None,
                                            ssh_key_path=str(identity.key_path))
        store.add_group(infra.id, name="web", position=0, provider="local", provider_type="local", image=None,
                        size=None, count=NODES, config={})
        store.add_nodes(infra.id, [{"group_name": "web", "name": f"bench-{NODES}-web-{i}", "index": i,
                                    "provider": "local", "state": "ready", "address": "127.0.0.1", "port": 22,
                                    "provider_id": None} for i in range(1, NODES + 1)])
        return str(infra.id)
    finally:
        engine.dispose()


def cloudherd_json(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([*cloudherd_command(), *args], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"cloudherd {' '.join(args)} failed ({done.returncode}): {done.stderr[-1000:]}")
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def stop(process: subprocess.Popen[bytes] | None, name: str, timeout: float = 90) -> list[str]:
    """SIGTERM to ``process``'s pid (and SIGKILL to that pid alone if it does not end in time)."""
    if process is None or process.poll() is not None:
        return []
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return [f"{name} (pid {process.pid}) did not stop on SIGTERM in {timeout:.0f}s: killed"]
    return []


def leftover_nodes(env: dict[str, str]) -> list[str]:
    """Terminate any local node left in the throw-away home (the local provider stops only its own)."""
    from cloudherd.providers.local import LocalProvider

    root = Path(env["CLOUDHERD_HOME"]) / "local"
    if not root.is_dir():
        return []
    provider = LocalProvider(CLOUD, {"root": str(root)})
    found = asyncio.run(provider.list({}))
    if not found:
        return []
    asyncio.run(provider.terminate([i.id for i in found]))
    return [f"{len(found)} local node(s) left in the throw-away home: terminated"]


def settled(http: Any, still: int = 3) -> Callable[[], bool]:
    """A condition: every attached infrastructure is ready and passed over, and nothing changed in ``still``
    checks in a row."""
    last: list[Any] = [None, 0]  # what was seen, how many checks in a row saw it

    def check() -> bool:
        rows = http.get("/v1/infrastructures").raise_for_status().json()
        attached = [r for r in rows if r.get("attached")]
        seen = sorted((r["id"], r["state"], r.get("last_pass_at")) for r in attached)
        last[1] = last[1] + 1 if seen == last[0] else 0
        last[0] = seen
        return bool(last[1] >= still and all(state == "ready" and at for _, state, at in seen))

    return check


def table(results: list[Measured]) -> str:
    head = f"{'row':<16} {'server':<10} {'ops/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'n':>5}"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.row:<16} {r.server:<10} {r.ops:9.1f} {r.p50:9.2f} {r.p99:9.2f} {len(r.samples):5d}")
    for row in dict.fromkeys(r.row for r in results):
        if not any(r.row == row and r.server == "moto" for r in results):
            lines.append(f"{row:<16} {'moto':<10} {'-':>9} {'-':>9} {'-':>9} {'-':>5}")
    return "\n".join(lines)


def ratios(results: list[Measured]) -> str:
    head = f"{'row':<16} {'p50 ratio':>10} {'p99 ratio':>10} {'ops/s ratio':>12}  no slower than moto?"
    lines = [head, "-" * len(head)]
    by = {(r.row, r.server): r for r in results}
    for row in dict.fromkeys(r.row for r in results):
        ours, theirs = by.get((row, "cloudherd")), by.get((row, "moto"))
        if ours is None or theirs is None:
            lines.append(f"{row:<16} {'-':>10} {'-':>10} {'-':>12}  n/a (no moto peer)")
            continue
        p50, p99, ops = ours.p50 / theirs.p50, ours.p99 / theirs.p99, ours.ops / theirs.ops
        verdict = "yes" if p50 <= 1 and ops >= 1 else f"NO ({p50:.1f}x moto's p50)"
        lines.append(f"{row:<16} {p50:10.2f} {p99:10.2f} {ops:12.2f}  {verdict}")
    return "\n".join(lines)


def run(folder: Path, calls: int, warmup: int, order: list[str]) -> tuple[list[Measured], list[str]]:
    import httpx

    env = throwaway_env(folder)
    config = folder / "server.yml"
    config.write_text(f"providers:\n  {CLOUD}: {{type: local}}\ninterval: 3600\n")
    fleet_id = record_fleet(env, folder)
    keys = cloudherd_json(["token", "create", "--aws", "--json"], env)
    bearer = cloudherd_json(["token", "create", "--json"], env)["token"]
    ch_port, moto_port = free_port(), free_port()
    ch_url, moto_url = f"http://127.0.0.1:{ch_port}", f"http://127.0.0.1:{moto_port}"
    results: list[Measured] = []
    problems: list[str] = []
    served = moto = None
    http = None
    try:
        served = start([*cloudherd_command(), "serve", "--config", str(config), "--port", str(ch_port)], env,
                       folder / "serve.log")
        moto = start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)], env,
                     folder / "moto.log")
        print(f"started: cloudherd serve pid {served.pid} on {ch_url}, moto pid {moto.pid} on {moto_url}",
              file=sys.stderr, flush=True)
        http = httpx.Client(base_url=ch_url, headers={"Authorization": f"Bearer {bearer}"}, timeout=120)
        wait_for(lambda: httpx.get(f"{ch_url}/healthz", timeout=2).status_code == 200, 60, "cloudherd serve", served)
        wait_for(lambda: httpx.get(f"{moto_url}/moto-api/", timeout=2).status_code == 200, 60, "moto", moto)
        ours = autoscaling_client(f"{ch_url}/autoscaling", keys["access_key_id"], keys["secret_access_key"])
        theirs = autoscaling_client(moto_url, "testing", "testing")

        print(f"setup: {GROUPS} groups on each server …", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        ours.create_launch_configuration(LaunchConfigurationName=CH_LAUNCH, ImageId="host")
        theirs.create_launch_configuration(LaunchConfigurationName=MOTO_LAUNCH, ImageId=MOTO_IMAGE,
                                           InstanceType="t2.micro")
        for index in range(GROUPS):
            shape = {"MinSize": 0, "MaxSize": 2, "DesiredCapacity": 0}
            ours.create_auto_scaling_group(AutoScalingGroupName=f"bench-{index:03d}", LaunchConfigurationName=CH_LAUNCH,
                                           AvailabilityZones=[CLOUD], **shape)
            theirs.create_auto_scaling_group(AutoScalingGroupName=f"bench-{index:03d}",
                                             LaunchConfigurationName=MOTO_LAUNCH, AvailabilityZones=[MOTO_ZONE],
                                             **shape)
        print(f"  made in {time.monotonic() - t0:.1f}s; waiting for the manager to settle …", file=sys.stderr,
              flush=True)
        wait_for(settled(http), 600, "the manager's passes over the new groups", served, every=1.0)
        print(f"  settled {time.monotonic() - t0:.1f}s after the start of the setup", file=sys.stderr, flush=True)

        def describe(client: Any) -> Callable[[int], None]:
            def op(_index: int) -> None:
                found = client.describe_auto_scaling_groups(MaxRecords=100)["AutoScalingGroups"]
                if len(found) != GROUPS:
                    raise RuntimeError(f"DescribeAutoScalingGroups answered {len(found)} groups, not {GROUPS}")
            return op

        def launch_pair(client: Any, image: str) -> Callable[[int], None]:
            def op(index: int) -> None:
                name = f"bench-pair-{index}"
                client.create_launch_configuration(LaunchConfigurationName=name, ImageId=image,
                                                   InstanceType="t2.micro")
                client.delete_launch_configuration(LaunchConfigurationName=name)
            return op

        def native(_index: int) -> None:
            answer = http.get(f"/v1/infrastructures/{fleet_id}")
            answer.raise_for_status()
            nodes = answer.json()["nodes"]
            if len(nodes) != NODES or any(n["state"] != "ready" for n in nodes):
                raise RuntimeError(f"GET /v1/infrastructures/{fleet_id}: not {NODES} ready nodes")

        def desired(client: Any) -> Callable[[int], None]:
            def op(index: int) -> None:
                client.set_desired_capacity(AutoScalingGroupName=DESIRED_GROUP, DesiredCapacity=1 - index % 2)
            return op

        def set_desired_row() -> None:
            shape = {"AutoScalingGroupName": DESIRED_GROUP, "MinSize": 0, "MaxSize": 2, "DesiredCapacity": 0}
            ours.create_auto_scaling_group(LaunchConfigurationName=CH_LAUNCH, AvailabilityZones=[CLOUD], **shape)
            theirs.create_auto_scaling_group(LaunchConfigurationName=MOTO_LAUNCH, AvailabilityZones=[MOTO_ZONE],
                                             **shape)
            wait_for(settled(http), 300, "the manager's pass over the new group", served, every=1.0)
            try:
                results.append(measure("set-desired", "cloudherd", desired(ours), calls, warmup))
                results.append(measure("set-desired", "moto", desired(theirs), calls, warmup))
            finally:
                for client in (ours, theirs):
                    with contextlib.suppress(Exception):
                        client.delete_auto_scaling_group(AutoScalingGroupName=DESIRED_GROUP, ForceDelete=True)

                def gone() -> bool:
                    listed = ours.describe_auto_scaling_groups(AutoScalingGroupNames=[DESIRED_GROUP])
                    return not listed["AutoScalingGroups"]

                print(f"  waiting for {DESIRED_GROUP} to be deleted on cloudherd …", file=sys.stderr, flush=True)
                wait_for(gone, 300, f"{DESIRED_GROUP} deleted", served, every=0.5)

        rows: dict[str, Callable[[], None]] = {
            "describe-groups": lambda: results.extend([
                measure("describe-groups", "cloudherd", describe(ours), calls, warmup),
                measure("describe-groups", "moto", describe(theirs), calls, warmup)]),
            "launch-config": lambda: results.extend([
                measure("launch-config", "cloudherd", launch_pair(ours, "host"), calls, warmup),
                measure("launch-config", "moto", launch_pair(theirs, MOTO_IMAGE), calls, warmup)]),
            "native-get": lambda: results.append(measure("native-get", "cloudherd", native, calls, warmup)),
            "set-desired": set_desired_row,
        }
        print("measuring:", file=sys.stderr, flush=True)
        for name in order:
            rows[name]()
    except (KeyboardInterrupt, Exception) as exc:
        problems.append(f"interrupted: {exc!r}")
        traceback.print_exc()
        with contextlib.suppress(OSError):
            print(f"serve log (tail):\n{(folder / 'serve.log').read_text()[-3000:]}", file=sys.stderr)
    finally:
        if http is not None:
            http.close()
        problems += stop(served, "cloudherd serve") + stop(moto, "moto")
        with contextlib.suppress(Exception):
            problems += leftover_nodes(env)
    return results, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 timed calls per row instead of 300")
    parser.add_argument("--calls", type=int, default=None, help="timed calls per row (default 300; --quick 50)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls before each row (default 20)")
    options = parser.parse_args()
    calls = options.calls or (50 if options.quick else 300)

    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    order = ["describe-groups", "launch-config", "native-get", "set-desired"]  # set-desired last: it makes a node
    with tempfile.TemporaryDirectory(prefix="cloudherd-bench-api-") as folder:
        results, problems = run(Path(folder), calls, options.warmup, order)
    shown = sorted(results, key=lambda r: (["describe-groups", "set-desired", "launch-config", "native-get"]
                                           .index(r.row), r.server != "cloudherd"))
    load = os.getloadavg()
    print(f"\nboto3 autoscaling: cloudherd serve vs moto.server, {calls} sequential calls per row after "
          f"{options.warmup} warm-up ({os.cpu_count()} CPUs, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})\n")
    print(table(shown))
    print()
    print(ratios(shown))
    print("\np50 ratio = cloudherd p50 / moto p50 (>1: cloudherd slower); ops/s ratio = cloudherd / moto (<1: slower)")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 0 if not problems and results else 1


if __name__ == "__main__":
    sys.exit(main())
