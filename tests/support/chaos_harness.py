"""SIGKILL the cloudherd CLI at random points of up / scale / down, run the command again, and check
that nothing leaked, nothing was lost and nothing was made twice.  Used by tests/integration/engine/test_chaos.py (a
bounded run in CI) and bench/chaos.py (100 kill points).

Ground truth comes from outside cloudherd: the local provider's node folders and the processes on
this machine carrying a node marker, or moto's EC2 API over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto_catalog import an_image

REPO = Path(__file__).resolve().parents[2]
AMI = an_image()  # an al2023 x86_64 image from moto's own catalog
NAME = "chaos"
# one failed check fails a node, so that one pass heals a node EC2 still lists running (its stand-in died)
HEAL_HEALTH = "{interval: 1s, grace: 0s, timeout: 2s, unhealthy_after: 1}"
HEAL_STAGES = ("dead", "retiring", "creating", "deploying")  # of a heal pass, as the database shows them
ROLL_HEALTH = "{interval: 0.2s, grace: 0s, timeout: 2s, unhealthy_after: 2}"
ROLL_UPDATE = "{strategy: rolling, max_surge: 1, min_healthy_seconds: 0.3s, timeout: 60s}"


@dataclass
class Tally:
    provider: str
    seed: int
    kills: int = 0  # the CLI was killed while working
    finished_first: int = 0  # the command ended before its kill point: nothing to kill
    resumes: int = 0  # the same command run again after a kill, to completion
    checks: int = 0
    leaked: int = 0  # a machine (or node process) the database does not know
    lost: int = 0  # a node the database has whose machine is gone
    duplicated: int = 0  # a node with two machines, or more machines than asked for
    settled: int = 0  # open intents a later command resolved from the journal
    heal_kills: int = 0  # of the kills: `manage --once` killed while healing a dead node
    heals: int = 0  # heal cycles checked (a dead node, a killed pass, a resumed pass)
    heal_stages: dict[str, int] = field(default_factory=dict)  # heal kills by kill point
    rollouts: int = 0  # rolling releases checked (a killed up of a new release, resumed)
    fewest_serving: int | None = None  # the fewest deployed, reachable nodes seen during the rollouts
    problems: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "problems"}


class Chaos:
    """One isolated cloudherd home (and, for aws, one moto server) that commands are run and killed in."""

    def __init__(self, provider: str, workdir: Path, seed: int, nodes: int = 10,
                 log: Callable[[str], None] = lambda _m: None) -> None:
        self.provider = provider
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.nodes = nodes
        self.log = log
        self.tally = Tally(provider, seed)
        self.home = workdir / "home"
        self.spec = workdir / "spec" / "cloudherd.yml"
        self.env = {**os.environ, "CLOUDHERD_HOME": str(self.home), "PYTHONPATH": str(REPO)}
        self.env.pop("CLOUDHERD_DB", None)
        self.env.pop("CLOUDHERD_LOCAL_ROOT", None)
        self.moto: Any = None
        self.durations: dict[str, float] = {}
        self._db: Any = None  # a read-only engine on the state database, made on first use

    # -- set-up -----------------------------------------------------------------------------------

    def __enter__(self) -> Chaos:
        self.spec.parent.mkdir(parents=True, exist_ok=True)
        (self.spec.parent / "setup.sh").write_text("echo ready > ready.txt\n")
        if self.provider == "aws":
            from moto_faults import FaultyMotoServer, aws_environment

            self.moto = FaultyMotoServer().start()  # no faults: moto's EC2, quiet (no line per request)
            self.env.update(aws_environment(self.moto.url))
        return self

    def __exit__(self, *exc: object) -> None:
        # whatever happened, leave no node behind: down (unkilled), then the provider sweeps its folder
        self._cli("down", NAME, check=False)
        from cloudherd.providers.local import LocalProvider

        root = self.home / "local"
        if root.is_dir():
            provider = LocalProvider("local", {"root": str(root)})
            asyncio.run(provider.terminate([i.id for i in asyncio.run(provider.list({}))]))
        if self.moto is not None:
            self.moto.stop()
        if self._db is not None:
            self._db.dispose()

    def write_spec(self, count: int, health: str = "", update: str = "") -> None:
        if self.provider == "aws":
            reach = '"tests.support.moto_reach:LocalStandIns"'
            provider = f"providers:\n  cloud: {{type: aws, region: us-east-1, reach: {reach}}}\n"
            group = f"    provider: cloud\n    image: {AMI}\n    size: t3.micro\n"
        else:
            provider, group = "", ""
        self.spec.write_text(
            f"name: {NAME}\n{provider}groups:\n  n:\n{group}    count: {count}\n    scripts: [setup.sh]\n"
            + (f"    health: {health}\n" if health else "") + (f"    update: {update}\n" if update else "")
        )

    # -- running and killing ------------------------------------------------------------------------

    def _cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        run = subprocess.run([sys.executable, "-m", "cloudherd", *args], env=self.env, capture_output=True,
                             text=True, timeout=600, stdin=subprocess.DEVNULL)
        if check and run.returncode != 0:
            raise AssertionError(f"cloudherd {' '.join(args)} failed ({run.returncode}): {run.stderr[-2000:]}")
        return run

    def _killed(self, kind: str, args: tuple[str, ...]) -> bool:
        """Run ``cloudherd ARGS`` and SIGKILL it at a random point; False when it finished first."""
        expected = self.durations.get(kind, 2.5)
        delay = self.rng.uniform(0.6, 0.6 + expected)  # python start-up is ~0.6 s of each run
        process = subprocess.Popen([sys.executable, "-m", "cloudherd", *args], env=self.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            process.wait(timeout=delay)
            self.tally.finished_first += 1
            self.log(f"  {kind}: finished before its kill point ({delay:.2f}s)")
            return False
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            self.tally.kills += 1
            self.log(f"  {kind}: killed at {delay:.2f}s")
            return True

    def _resume(self, kind: str, args: tuple[str, ...]) -> None:
        started = time.monotonic()
        self._cli(*args)
        self.durations[kind] = time.monotonic() - started
        self.tally.resumes += 1

    def step(self, kind: str, count: int) -> None:
        """Run one command with a kill at a random point, then run it again to completion and check."""
        args = ("up", str(self.spec)) if kind != "down" else ("down", NAME)
        if kind != "down":
            self.write_spec(count)
        self.log(f"  {kind} {count}:")
        self._killed(kind, args)
        self._resume(kind, args)
        self.check(0 if kind == "down" else count)

    def rolling_step(self, count: int, release: int) -> None:
        """A new release (the setup script changed) rolled by ``up``, which is SIGKILLed at a random point and
        run again to completion; meanwhile the nodes that serve (reachable, deployed) are counted from
        outside and must never be fewer than ``count``; then the ground truth, and every node on the release."""
        (self.spec.parent / "setup.sh").write_text(f"echo release-{release} > ready.txt\n")
        args = ("up", str(self.spec))
        self.log(f"  rolling release {release}:")
        stop = threading.Event()
        seen: list[int] = []

        def sample() -> None:
            while not stop.is_set():
                seen.append(len(self._serving()))
                stop.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            self._killed("roll", args)
            self._resume("roll", args)
        finally:
            stop.set()
            sampler.join(timeout=10)
        self.tally.rollouts += 1
        fewest = min(seen) if seen else 0
        self.tally.fewest_serving = fewest if self.tally.fewest_serving is None else min(fewest,
                                                                                         self.tally.fewest_serving)
        if fewest < count:
            self.tally.problems.append(f"release {release}: only {fewest} node(s) served at one point (want {count})")
        self.check(count)
        releases = sorted(self._serving().values())
        if releases != [f"release-{release}"] * count:
            self.tally.problems.append(f"release {release}: the nodes run {releases}")

    def _serving(self) -> dict[str, str]:
        """Local machines (or AWS stand-ins) whose SSH port accepts and whose setup ran: folder -> release."""
        import socket

        found = {}
        root = self.home / "local"
        for folder in sorted(root.iterdir()) if root.is_dir() else []:
            try:
                meta = json.loads((folder / "node.json").read_text())
                release = (folder / "work" / "ready.txt").read_text().strip()
                with socket.create_connection((meta["address"], int(meta.get("port") or 22)), timeout=0.5):
                    pass
            except (OSError, ValueError, KeyError):
                continue
            found[folder.name] = release
        return found

    def heal_step(self, count: int) -> None:
        """A dead node (one ready node's sshd SIGKILLed), then ``manage NAME --once`` (one reconcile pass
        heals it) SIGKILLed at a seeded random point, then ``manage NAME --once`` again to completion; the
        same ground truth as every step, plus: ``count`` ready nodes and the dead node's name among none.

        The kill point is either a random time or the moment the pass is seen reaching one of its stages
        in the database (polled every few ms), so that every stage of a heal is hit, not only start-up."""
        before = ({r.name for r in self._rows()}, set(self._open_intents()))
        victim = self.kill_node()
        args = ("manage", NAME, "--once")
        stage = self.rng.choice(("time", *HEAL_STAGES))
        self.log(f"  heal: {victim}'s sshd killed; manage --once killed at {stage}")
        killed = self._killed("heal", args) if stage == "time" else self._killed_at(stage, args, victim, before)
        if killed:
            self.tally.heal_kills += 1
            self.tally.heal_stages[stage] = self.tally.heal_stages.get(stage, 0) + 1
            self.log(f"    left behind: {self._describe(victim, before)}")
        self._resume("heal", args)
        self.tally.heals += 1
        self.check(count, gone=victim)

    def _killed_at(self, stage: str, args: tuple[str, ...], victim: str, before: tuple[set[str], set[str]],
                   timeout: float = 120.0) -> bool:
        """Run ``cloudherd ARGS`` and SIGKILL it the moment the database shows ``stage`` (a bounded poll);
        False when the command ended first."""
        process = subprocess.Popen([sys.executable, "-m", "cloudherd", *args], env=self.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        try:
            while process.poll() is None:
                if self._reached(stage, victim, before):
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    self.tally.kills += 1
                    return True
                if time.monotonic() > deadline:
                    raise AssertionError(f"manage --once ran over {timeout:.0f}s")
                time.sleep(0.005)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.tally.finished_first += 1
        self.log(f"  heal: finished before reaching {stage}")
        return False

    def _open_intents(self) -> dict[str, str]:
        """Open journal intents of this run: id -> kind."""
        from sqlalchemy import select

        from cloudherd.state.models import Intent

        with self._engine().connect() as db:
            return {r.id: r.kind for r in db.execute(select(Intent.id, Intent.kind).where(Intent.state == "open"))}

    def _heal_view(self, victim: str, before: tuple[set[str], set[str]]) -> tuple[str | None, list[str], list[str]]:
        """(the victim's state, the new nodes' states, the kinds of intents opened since ``before``)."""
        names, intents = before
        rows = self._rows()
        state = next((r.state for r in rows if r.name == victim), None)
        opened = sorted(kind for intent_id, kind in self._open_intents().items() if intent_id not in intents)
        return state, sorted(r.state for r in rows if r.name not in names), opened

    def _reached(self, stage: str, victim: str, before: tuple[set[str], set[str]]) -> bool:
        state, new, intents = self._heal_view(victim, before)
        if stage == "dead":  # the pass's listing recorded the victim
            return state != "ready"
        if stage == "retiring":
            return state in ("terminating", "terminated") or "terminate" in intents
        if stage == "creating":
            return "create" in intents or any(s != "pending" for s in new)
        if stage == "deploying":
            return any(s in ("booting", "deploying") for s in new)
        raise ValueError(stage)

    def _describe(self, victim: str, before: tuple[set[str], set[str]]) -> str:
        state, new, intents = self._heal_view(victim, before)
        older = len(self._open_intents()) - len(intents)
        return (f"{victim} {state}, new nodes {new or 'none'}, intents opened and left open {intents or 'none'}"
                + (f" (+{older} older open)" if older else ""))

    def kill_node(self, timeout: float = 60.0) -> str:
        """SIGKILL the OpenSSH server of a random ready node (its pid from the node folder in this run's
        home) and wait until its provider lists it dead; returns the node's name."""
        ready = sorted(r for r in self._rows() if r.state == "ready")
        if not ready:
            raise AssertionError("no ready node to kill")
        victim = self.rng.choice(ready)
        folder = self._node_folder(victim.provider_id)
        meta = json.loads((folder / "node.json").read_text())
        pid = int((folder / "sshd.pid").read_text().split()[0])
        if (meta.get("server_identity") or {}).get("pid") not in (None, pid):
            raise AssertionError(f"{victim.name}: sshd.pid {pid} is not the server node.json records")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while self._listed_alive(folder):  # bounded: the server is gone once its listing says so
            if time.monotonic() > deadline:
                raise AssertionError(f"{victim.name}: still listed alive {timeout:.0f}s after its sshd was killed")
            time.sleep(0.05)
        return str(victim.name)

    def _node_folder(self, provider_id: str) -> Path:
        """The local node (for aws: the local stand-in of the instance) that serves ``provider_id``."""
        from cloudherd.providers.local import LocalProvider

        provider = LocalProvider("local", {"root": str(self.home / "local")})
        for instance in asyncio.run(provider.list({})):
            if instance.id == provider_id or instance.tags.get("stand-in-for") == provider_id:
                return Path(instance.extra["folder"])
        raise AssertionError(f"no local node serves {provider_id}")

    def _listed_alive(self, folder: Path) -> bool:
        from cloudherd.providers.local import LocalProvider

        provider = LocalProvider("local", {"root": str(folder.parent)})
        return any(i.id == folder.name and i.state == "running" for i in asyncio.run(provider.list({})))

    # -- ground truth ---------------------------------------------------------------------------------

    def _rows(self) -> list[Any]:
        """This run's node rows (every infrastructure called NAME, terminated nodes included)."""
        return self._read()[1]

    def _engine(self) -> Any:
        if self._db is None:
            from sqlalchemy import create_engine

            self._db = create_engine(f"sqlite:///{self.home / 'state.db'}")
        return self._db

    def _read(self) -> tuple[list[str], list[Any]]:
        from sqlalchemy import select

        from cloudherd.state.models import Event, Infrastructure, Node

        with self._engine().connect() as db:
            infra_ids = [r[0] for r in db.execute(select(Infrastructure.id).where(Infrastructure.name == NAME))]
            rows = list(db.execute(select(Node.name, Node.provider_id, Node.state)
                                   .where(Node.infrastructure_id.in_(infra_ids))))
            self.tally.settled = db.execute(
                select(Event.id).where(Event.kind == "journal")
            ).all().__len__()
        return infra_ids, rows

    def check(self, desired: int, gone: str | None = None) -> None:
        """Ground truth: the database, the provider and ``desired`` agree; ``gone`` (a dead node's name)
        is neither a live row nor a machine."""
        self.tally.checks += 1
        infra_ids, rows = self._read()
        live_rows = [r for r in rows if r.state != "terminated"]
        db_ids = {r.provider_id for r in live_rows if r.provider_id}
        machines = self._machines(set(infra_ids))  # provider id -> node name
        leaked = set(machines) - db_ids
        lost = db_ids - set(machines)
        names = list(machines.values())
        duplicated = sum(names.count(n) - 1 for n in set(names)) + max(0, len(machines) - desired - len(leaked))
        orphans = self._orphan_processes()
        problems = []
        if len(live_rows) != desired:
            problems.append(f"database has {len(live_rows)} live nodes, want {desired}: "
                            f"{sorted((r.name, r.state) for r in live_rows)}")
        if any(r.state not in ("ready", "terminated") for r in rows):
            problems.append(f"nodes not settled: {sorted((r.name, r.state) for r in rows if r.state != 'ready')}")
        if leaked or orphans:
            problems.append(f"leaked machines {sorted(leaked)}, orphan processes {orphans}")
        if lost:
            problems.append(f"lost machines {sorted(lost)}")
        if duplicated:
            problems.append(f"duplicated {duplicated}: {sorted(names)}")
        if gone is not None and (gone in {r.name for r in live_rows} or gone in names):
            problems.append(f"the dead node {gone} is still there: rows "
                            f"{sorted((r.name, r.state) for r in live_rows)}, machines {sorted(names)}")
        self.tally.leaked += len(leaked) + len(orphans)
        self.tally.lost += len(lost)
        self.tally.duplicated += duplicated
        self.tally.problems += problems
        for problem in problems:
            self.log(f"  PROBLEM: {problem}")

    def _machines(self, infra_ids: set[str]) -> dict[str, str]:
        """Machines this run made (moto's backend is shared by everything in the process: filter by tag;
        an infrastructure row is always committed before its first create, so none is missed)."""
        if self.provider == "aws":
            import boto3

            ec2 = boto3.client("ec2", endpoint_url=self.env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing")
            found = {}
            # every page: EC2 (and moto since 5.2) answers at most 100 reservations at a time, and a machine
            # on page two is no more lost than one on page one
            pages = ec2.get_paginator("describe_instances").paginate()
            for reservation in (r for page in pages for r in page["Reservations"]):
                for instance in reservation["Instances"]:
                    if instance["State"]["Name"] in ("terminated", "shutting-down"):
                        continue
                    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                    if tags.get("cloudherd:infra") not in infra_ids:
                        continue
                    found[instance["InstanceId"]] = tags.get("Name", instance["InstanceId"])
            return found
        from cloudherd.providers.local import LocalProvider

        provider = LocalProvider("local", {"root": str(self.home / "local")})
        return {i.id: i.name for i in asyncio.run(provider.list({})) if "stand-in-for" not in i.tags}

    def _orphan_processes(self) -> list[int]:
        """Node processes whose node folder is gone (nobody can find them any more)."""
        marker = f"CLOUDHERD_LOCAL_NODE={self.home / 'local'}/".encode()
        orphans = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            except OSError:
                continue
            if marker not in environ or state in ("Z", "X"):
                continue
            folder = next(v for v in environ.split(b"\0") if v.startswith(b"CLOUDHERD_LOCAL_NODE="))
            if not Path(folder.split(b"=", 1)[1].decode()).joinpath("node.json").exists():
                orphans.append(int(entry.name))
        return orphans


def run_chaos(provider: str, kills: int, seed: int, workdir: Path, nodes: int = 10,
              log: Callable[[str], None] = lambda _m: None) -> Tally:
    """Cycles of up (``nodes``) → scale up → scale down → down, each command killed once at a random
    point and then run to completion, until ``kills`` kills happened (bounded: at most 3x attempts)."""
    cycle = [("up", nodes), ("scale", nodes + 3), ("scale", max(1, nodes - 4)), ("down", 0)]
    with Chaos(provider, workdir, seed, nodes, log) as chaos:
        attempts = 0
        while chaos.tally.kills < kills and attempts < 3 * kills:
            for kind, count in cycle:
                attempts += 1
                chaos.step(kind, count)
        return chaos.tally


def run_heal_chaos(provider: str, kills: int, seed: int, workdir: Path, nodes: int = 6,
                   log: Callable[[str], None] = lambda _m: None) -> Tally:
    """``up`` (not killed), then heal cycles until ``kills`` of them were killed mid-pass (bounded: at
    most 3x attempts): a dead node, ``manage --once`` SIGKILLed at a random point, ``manage --once``
    again, ground truth checked; then ``down`` and a last check that nothing is left."""
    with Chaos(provider, workdir, seed, nodes, log) as chaos:
        chaos.write_spec(nodes, HEAL_HEALTH)
        chaos._cli("up", str(chaos.spec))
        chaos.check(nodes)
        attempts = 0
        while chaos.tally.heal_kills < kills and attempts < 3 * kills:
            attempts += 1
            chaos.heal_step(nodes)
        chaos._cli("down", NAME)
        chaos.check(0)
        return chaos.tally


def run_rolling_chaos(provider: str, kills: int, seed: int, workdir: Path, nodes: int = 6,
                      log: Callable[[str], None] = lambda _m: None) -> Tally:
    """``up`` of a rolling group (not killed), then new releases, each ``up`` SIGKILLed at a random point
    and resumed, until ``kills`` of them were killed (bounded: at most 3x attempts); then ``down``."""
    with Chaos(provider, workdir, seed, nodes, log) as chaos:
        chaos.write_spec(nodes, ROLL_HEALTH, ROLL_UPDATE)
        chaos._cli("up", str(chaos.spec))
        chaos.check(nodes)
        attempts = 0
        while chaos.tally.kills < kills and attempts < 3 * kills:
            attempts += 1
            chaos.rolling_step(nodes, attempts)
        chaos._cli("down", NAME)
        chaos.check(0)
        return chaos.tally
