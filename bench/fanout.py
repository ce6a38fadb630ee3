#!/usr/bin/env python3
"""Fan-out benchmark: ``uname -a`` on N local nodes, then a 1 MB upload to all of them, with cloudherd
and its peers (Ansible, parallel-ssh, an OpenSSH loop, bare asyncssh).

    .venv/bin/python bench/fanout.py                      # 100 nodes, median of 5 runs per tool
    .venv/bin/python bench/fanout.py --nodes 10 --runs 2 --skip ansible,scp --json /tmp/fanout.json

Everything happens in a temporary ``CLOUDHERD_HOME``: the nodes are made with ``Client().up`` and
always destroyed with ``Client().down`` at the end (also on Ctrl-C).  Every tool verifies host keys
against the keys cloudherd pinned for the nodes, through one ``known_hosts`` file (parallel-ssh has no
known_hosts support: its keys are compared after each run, see the table's notes).  Each figure is
the median of R timed runs after one untimed warm-up run; every run is checked (every node answered,
exit 0, for uploads the file's SHA-256 on every node) or the row is marked failed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import hashlib
import importlib.util
import io
import json
import os
import platform
import pstats
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXEC_COMMAND = "uname -a"
UPLOAD_NAME = "fanout-upload.bin"
UPLOAD_BYTES = 1024 * 1024

# key: (kind, label) — in table order; the first row of each kind is the reference of its ratios
TOOLS: dict[str, tuple[str, str]] = {
    "api": ("exec", "cloudherd API  Client.exec"),
    "cli": ("exec", "cloudherd CLI  exec --json"),
    "serve": ("exec", "cloudherd serve POST exec (warm)"),
    "ansible": ("exec", "ansible ad-hoc (command)"),
    "pssh": ("exec", "parallel-ssh (native)"),
    "ssh": ("exec", "OpenSSH ssh loop (sequential)"),
    "asyncssh": ("exec", "asyncssh gather (floor)"),
    "push": ("upload", "cloudherd API  Client.push"),
    "push-cli": ("upload", "cloudherd CLI  push"),
    "pssh-copy": ("upload", "parallel-ssh copy_file"),
    "scp": ("upload", "OpenSSH scp loop (sequential)"),
}
ALIASES = {
    "exec": [k for k, (kind, _) in TOOLS.items() if kind == "exec"],
    "upload": [k for k, (kind, _) in TOOLS.items() if kind == "upload"],
    "cloudherd": ["api", "cli", "serve", "push", "push-cli"],
    "parallel-ssh": ["pssh", "pssh-copy"],
    "openssh": ["ssh", "scp"],
}
REFERENCE = {"exec": "api", "upload": "push"}


class Failed(Exception):
    """A run's result was wrong (a node missing, a non-zero exit, a bad checksum) or a tool broke."""


@dataclass
class Node:
    name: str
    address: str
    port: int
    user: str
    host_key: str
    work: str = ""

    @property
    def known_hosts_name(self) -> str:
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


@dataclass
class Fleet:
    infra_id: str
    nodes: list[Node]
    key: Path
    known_hosts: Path
    tmp: Path
    upload: Path
    upload_sha256: str
    timeout: float
    env: dict[str, str]
    client: Any  # cloudherd.api.Client
    cli: list[str] | None


@dataclass
class Row:
    key: str
    kind: str
    label: str
    status: str = "pending"  # ok | failed | skipped
    note: str = ""
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # client-side CPU seconds of each timed run

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu) if self.status == "ok" and self.cpu else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.status == "ok" and self.times else None

    @property
    def best(self) -> float | None:
        return min(self.times) if self.status == "ok" and self.times else None


# -- small helpers ----------------------------------------------------------------------------------


def say(message: str) -> None:
    """Progress on stderr; a closed stderr (e.g. piped into `head`) must never stop the teardown."""
    with contextlib.suppress(OSError, ValueError):
        print(message, file=sys.stderr, flush=True)


def first_line(text: str, limit: int = 160) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    line = lines[0] if lines else str(text).strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def venv_tool(name: str) -> str | None:
    """A console script of this interpreter's environment first (the venv), then from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


async def run_process(argv: list[str], *, env: dict[str, str], timeout: float, cwd: Path | None = None
                      ) -> tuple[int, str, str]:
    """Run a command in its own process group; on timeout or cancellation stop that group (ours)."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        cwd=str(cwd) if cwd else None, start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except BaseException as exc:
        await stop_group(process)
        if isinstance(exc, TimeoutError):
            raise Failed(f"{Path(argv[0]).name}: no answer within {timeout:g}s") from None
        raise
    return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def stop_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL, to the process group we created for ``process`` (its pgid is its pid)."""
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)


def client_cpu() -> float:
    """CPU seconds used so far by this process and its reaped children (ssh, scp, ansible and its workers,
    the cloudherd CLI). Local nodes' servers are children too, but are reaped only at the end."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def ssh_options(fleet: Fleet) -> list[str]:
    return ["-i", str(fleet.key), "-o", f"UserKnownHostsFile={fleet.known_hosts}", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=30"]


def openssh_version() -> str:
    try:
        done = subprocess.run(["ssh", "-V"], capture_output=True, text=True, timeout=10)
        return (done.stderr or done.stdout).strip().split(",")[0]
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def result_ok(result: Any) -> bool:
    """Whether one per-node result of cloudherd (ExecResult, or whatever push returns) is a success."""
    if isinstance(result, dict):
        if result.get("error"):
            return False
        if "ok" in result:
            return bool(result["ok"])
        return result.get("exit", result.get("exit_code")) == 0
    ok = getattr(result, "ok", None)
    if ok is not None:
        return bool(ok)
    return getattr(result, "error", None) is None and getattr(result, "exit_code", None) == 0


def result_text(result: Any) -> str:
    if isinstance(result, dict):
        return f"{result.get('node')}: {result.get('error') or result.get('stderr') or result}"
    return f"{getattr(result, 'node', '?')}: {getattr(result, 'error', None) or getattr(result, 'stderr', '')}"


def check_results(results: list[Any], n: int, *, stdout_prefix: str | None = None) -> None:
    if len(results) != n:
        raise Failed(f"{len(results)} results for {n} nodes")
    bad = [r for r in results if not result_ok(r)]
    if bad:
        raise Failed(f"{len(bad)}/{n} nodes failed, e.g. {first_line(result_text(bad[0]))}")
    if stdout_prefix is not None:
        wrong = [r for r in results if not str(getattr(r, "stdout", "")).startswith(stdout_prefix)]
        if wrong:
            raise Failed(f"{len(wrong)}/{n} nodes printed something else, e.g. {getattr(wrong[0], 'stdout', '')!r}")


# -- the floor: bare asyncssh (also used, untimed, to prepare and check uploads) ---------------------


class Floor:
    """Fresh asyncssh connections to every node at once, host keys from the known_hosts file."""

    def __init__(self, fleet: Fleet) -> None:
        import asyncssh

        self.asyncssh = asyncssh
        self.fleet = fleet
        self.known_hosts = asyncssh.import_known_hosts(fleet.known_hosts.read_text())
        self.key = asyncssh.read_private_key(str(fleet.key))

    async def run_all(self, command: Callable[[Node], str]) -> dict[str, tuple[int | None, str]]:
        async def one(node: Node) -> tuple[str, tuple[int | None, str]]:
            async with self.asyncssh.connect(
                node.address, node.port, username=node.user, known_hosts=self.known_hosts,
                client_keys=[self.key], agent_path=None, config=[],
            ) as conn:
                result = await conn.run(command(node), check=False)
            out = result.stdout if isinstance(result.stdout, str) else (result.stdout or b"").decode()
            return node.name, (result.exit_status, out)

        pairs = await asyncio.wait_for(asyncio.gather(*(one(n) for n in self.fleet.nodes)), self.fleet.timeout)
        return dict(pairs)


# -- exec: one function per tool, each raising Failed when the run's result is wrong ----------------


async def exec_api(fleet: Fleet) -> None:
    results = await asyncio.wait_for(fleet.client.exec(fleet.infra_id, EXEC_COMMAND), fleet.timeout)
    check_results(results, len(fleet.nodes), stdout_prefix="Linux")


async def exec_cli(fleet: Fleet) -> None:
    assert fleet.cli is not None
    code, out, err = await run_process([*fleet.cli, "exec", fleet.infra_id, EXEC_COMMAND, "--json"],
                                       env=fleet.env, timeout=fleet.timeout)
    try:
        rows = json.loads(out)
    except ValueError:
        raise Failed(f"cloudherd exec exit {code}: {first_line(err or out)}") from None
    if code != 0 or len(rows) != len(fleet.nodes):
        raise Failed(f"cloudherd exec exit {code}, {len(rows)} results: {first_line(err)}")
    bad = [r for r in rows if r.get("exit_code", r.get("exit")) != 0 or r.get("error")
           or not str(r.get("stdout")).startswith("Linux")]
    if bad:
        raise Failed(f"{len(bad)} nodes failed, e.g. {first_line(result_text(bad[0]))}")


class Serve:
    """A `cloudherd serve` on the bench's home, started on first use: exec through it runs over the server's
    warm SSH connections (the warm-up run opens them; the timed runs reuse them)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""

    async def start(self, fleet: Fleet) -> None:
        import httpx

        if self.process is not None:
            return
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = fleet.tmp / "server.yml"
        config.write_text("providers:\n  local: {type: local}\ninterval: 3600\n")
        code, out, err = await run_process([sys.executable, "-m", "cloudherd", "token", "create", "--json"],
                                           env=fleet.env, timeout=120)
        if code != 0:
            raise Failed(f"token create: {first_line(err)}")
        self.token = json.loads(out)["token"]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, "-m", "cloudherd", "serve", "--config", str(config),
                                         "--port", str(port)], env=fleet.env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise Failed("cloudherd serve did not answer in 60 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None


SERVE = Serve()


async def exec_serve(fleet: Fleet) -> None:
    """POST the exec (202 and a job id), then poll the job until it is done: what a REST client does."""
    import httpx

    await SERVE.start(fleet)
    async with httpx.AsyncClient(base_url=SERVE.url, headers={"Authorization": f"Bearer {SERVE.token}"},
                                 timeout=fleet.timeout) as http:
        answer = await http.post(f"/v1/infrastructures/{fleet.infra_id}/exec", json={"command": EXEC_COMMAND})
        if answer.status_code != 202:
            raise Failed(f"POST exec: HTTP {answer.status_code} {first_line(answer.text)}")
        deadline = time.monotonic() + fleet.timeout
        while time.monotonic() < deadline:
            job = (await http.get(f"/v1/jobs/{answer.json()['id']}")).json()
            if job["state"] != "running":
                break
            await asyncio.sleep(0.005)
        else:
            raise Failed("the exec job did not end in time")
    if job["state"] != "done":
        raise Failed(f"exec job {job['state']}: {job.get('error')}")
    rows = job["results"]
    bad = [r for r in rows if r.get("exit_code") != 0 or r.get("error") or not str(r.get("stdout")).startswith("Linux")]
    if len(rows) != len(fleet.nodes) or bad:
        raise Failed(f"{len(rows)} results, {len(bad)} bad")


def ansible_files(fleet: Fleet) -> tuple[Path, dict[str, str]]:
    """The inventory and the environment Ansible runs in: only locations are set (see FOOTNOTES)."""
    hosts = {
        n.name: {"ansible_host": n.address, "ansible_port": n.port, "ansible_user": n.user,
                 "ansible_ssh_private_key_file": str(fleet.key),
                 # a location only: each node's temporary files in its own folder, as on separate machines
                 "ansible_remote_tmp": f"{n.work}/.ansible/tmp"}
        for n in fleet.nodes
    }
    inventory = {"all": {"hosts": hosts, "vars": {
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={shlex.quote(str(fleet.known_hosts))}",
    }}}
    path = fleet.tmp / "inventory.yml"
    path.write_text(json.dumps(inventory, indent=1))  # JSON is YAML
    home = fleet.tmp / "ansible"
    env = {k: v for k, v in fleet.env.items() if not k.startswith("ANSIBLE_")}
    env.update({"ANSIBLE_HOME": str(home), "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"),
                "ANSIBLE_NOCOLOR": "1"})
    if "UTF-8" not in (env.get("LC_ALL") or env.get("LANG") or "").upper().replace("UTF8", "UTF-8"):
        env["LC_ALL"] = "C.UTF-8"  # ansible refuses to start under a non-UTF-8 locale
    return path, env


async def ansible_close_masters(fleet: Fleet) -> None:
    """Ask the ControlPersist masters Ansible left behind (its default) to exit: ``ssh -O exit``."""
    folder = fleet.tmp / "ansible" / "cp"
    sockets = [p for p in folder.iterdir() if p.is_socket()] if folder.is_dir() else []
    for sock in sockets:
        with contextlib.suppress(Failed, OSError):
            await run_process(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "ansible-master"],
                              env=fleet.env, timeout=30)


async def exec_ansible(fleet: Fleet) -> None:
    binary = venv_tool("ansible")
    assert binary is not None
    inventory, env = ansible_files(fleet)
    n = len(fleet.nodes)
    code, out, err = await run_process(
        [binary, "all", "-i", str(inventory), "-m", "command", "-a", EXEC_COMMAND, "-f", str(n), "-o"],
        env=env, timeout=fleet.timeout, cwd=fleet.tmp,  # cwd: no stray ansible.cfg is read
    )
    good = [line for line in out.splitlines() if "| CHANGED | rc=0 |" in line and "Linux" in line]
    if code != 0 or len(good) != n:
        bad = [line for line in out.splitlines() if "rc=0" not in line and line.strip()]
        raise Failed(f"ansible exit {code}, {len(good)}/{n} ok: {first_line((bad or [err])[0])}")


def pssh_client(fleet: Fleet) -> Any:
    from pssh.clients.native import ParallelSSHClient
    from pssh.config import HostConfig

    n = len(fleet.nodes)
    configs = [HostConfig(user=node.user, port=node.port, private_key=str(fleet.key)) for node in fleet.nodes]
    return ParallelSSHClient([node.address for node in fleet.nodes], host_config=configs, pool_size=n,
                             allow_agent=False, identity_auth=False, num_retries=1, timeout=fleet.timeout)


def pssh_check_host_keys(fleet: Fleet, client: Any) -> None:
    """parallel-ssh does not verify host keys: compare what each session saw with the pinned key."""
    pinned = {n.address: base64.b64decode(n.host_key.split()[1]) for n in fleet.nodes}
    seen = 0
    for (_index, host), host_client in list(client._host_clients.items()):
        session = getattr(host_client, "session", None)
        if session is None:
            continue
        blob, _kind = session.hostkey()
        if bytes(blob) != pinned[host]:
            raise Failed(f"{host} presented another host key than the pinned one")
        seen += 1
    if seen != len(fleet.nodes):
        raise Failed(f"host keys of only {seen}/{len(fleet.nodes)} sessions could be checked")


def pssh_close(client: Any) -> None:
    for host_client in list(client._host_clients.values()):
        with contextlib.suppress(Exception):
            host_client.disconnect()


def _pssh_exec_sync(fleet: Fleet) -> None:
    client = pssh_client(fleet)
    try:
        output = client.run_command(EXEC_COMMAND, stop_on_errors=False)
        client.join(output, timeout=fleet.timeout)
        failures = []
        for host_output in output:
            text = "".join(host_output.stdout or []) if host_output.exception is None else ""
            if host_output.exception is not None or host_output.exit_code != 0 or not text.startswith("Linux"):
                failures.append(f"{host_output.host}: exit {host_output.exit_code} {host_output.exception or ''}")
        if len(output) != len(fleet.nodes) or failures:
            raise Failed(f"{len(failures)} failed of {len(output)}: {first_line(failures[0] if failures else '')}")
        pssh_check_host_keys(fleet, client)
    finally:
        pssh_close(client)


async def exec_pssh(fleet: Fleet) -> None:
    _pssh_exec_sync(fleet)  # blocking on purpose: gevent runs its own loop, nothing else runs meanwhile


async def exec_ssh_loop(fleet: Fleet) -> None:
    for node in fleet.nodes:
        code, out, err = await run_process(
            ["ssh", *ssh_options(fleet), "-p", str(node.port), f"{node.user}@{node.address}", EXEC_COMMAND],
            env=fleet.env, timeout=fleet.timeout,
        )
        if code != 0 or not out.startswith("Linux"):
            raise Failed(f"{node.name}: ssh exit {code}: {first_line(err or out)}")


async def exec_floor(fleet: Fleet, floor: Floor) -> None:
    results = await floor.run_all(lambda _node: EXEC_COMMAND)
    bad = [name for name, (code, out) in results.items() if code != 0 or not out.startswith("Linux")]
    if len(results) != len(fleet.nodes) or bad:
        raise Failed(f"{len(bad)} nodes failed, e.g. {bad[:1]}")


# -- uploads -----------------------------------------------------------------------------------------


def remote_upload(node: Node) -> str:
    """Where the upload goes on a node: its work folder (local nodes share one file system)."""
    return f"{node.work}/{UPLOAD_NAME}"


async def upload_prepare(fleet: Fleet, floor: Floor) -> None:
    results = await floor.run_all(lambda node: f"rm -f {shlex.quote(remote_upload(node))}")
    bad = [name for name, (code, _out) in results.items() if code != 0]
    if bad:
        raise Failed(f"could not remove the previous upload on {len(bad)} nodes")


async def upload_verify(fleet: Fleet, floor: Floor) -> None:
    results = await floor.run_all(lambda node: f"sha256sum {shlex.quote(remote_upload(node))}")
    bad = [name for name, (code, out) in results.items()
           if code != 0 or out.split()[:1] != [fleet.upload_sha256]]
    if bad:
        raise Failed(f"{len(bad)}/{len(fleet.nodes)} nodes lack the file in their work folder (e.g. {bad[0]})")


async def upload_push_api(fleet: Fleet) -> None:
    results = await asyncio.wait_for(
        fleet.client.push(fleet.infra_id, str(fleet.upload), UPLOAD_NAME), fleet.timeout)
    check_results(list(results), len(fleet.nodes))


async def upload_push_cli(fleet: Fleet) -> None:
    assert fleet.cli is not None
    code, out, err = await run_process([*fleet.cli, "push", fleet.infra_id, str(fleet.upload), UPLOAD_NAME],
                                       env=fleet.env, timeout=fleet.timeout)
    if code != 0:
        raise Failed(f"cloudherd push exit {code}: {first_line(err or out)}")


def _pssh_copy_sync(fleet: Fleet) -> None:
    from gevent import joinall

    client = pssh_client(fleet)
    try:
        greenlets = client.copy_file(str(fleet.upload), "%(work)s/" + UPLOAD_NAME,
                                     copy_args=[{"work": node.work} for node in fleet.nodes])
        joinall(greenlets, raise_error=True, timeout=fleet.timeout)
        unfinished = [g for g in greenlets if not g.successful()]
        if unfinished:
            raise Failed(f"{len(unfinished)} copies did not finish: {unfinished[0].exception}")
        pssh_check_host_keys(fleet, client)
    finally:
        pssh_close(client)


async def upload_pssh(fleet: Fleet) -> None:
    _pssh_copy_sync(fleet)


async def upload_scp_loop(fleet: Fleet) -> None:
    for node in fleet.nodes:
        code, out, err = await run_process(
            ["scp", "-q", *ssh_options(fleet), "-P", str(node.port), str(fleet.upload),
             f"{node.user}@{node.address}:{remote_upload(node)}"],
            env=fleet.env, timeout=fleet.timeout,
        )
        if code != 0:
            raise Failed(f"{node.name}: scp exit {code}: {first_line(err or out)}")


# -- availability ------------------------------------------------------------------------------------


async def availability(key: str, fleet: Fleet) -> tuple[str | None, str]:
    """(why the tool cannot run here, or None; a short note for the table)."""
    if key == "api":
        return None, "fresh connections each run"
    if key == "asyncssh":
        return None, "fresh connections, key read once, no DB"
    if key in ("cli", "push-cli") and fleet.cli is None:
        return "cloudherd CLI not found", ""
    if key == "cli":
        return None, "incl. Python start-up"
    if key == "serve":
        if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
            return "the server extra is not installed (pip install 'cloudherd[server]')", ""
        return None, "warm connections: 2nd and later runs; incl. HTTP + job poll"
    if key == "push":
        return (None, "dst relative → work folder") if hasattr(fleet.client, "push") else ("push not available", "")
    if key == "push-cli":
        assert fleet.cli is not None
        code, _out, _err = await run_process([*fleet.cli, "push", "--help"], env=fleet.env, timeout=120)
        return (None, "incl. Python start-up") if code == 0 else ("push not available", "")
    if key == "ansible":
        if venv_tool("ansible") is None:
            return "ansible not installed (pip install ansible-core)", ""
        return None, "set only -f N ¹"
    if key in ("pssh", "pssh-copy"):
        if importlib.util.find_spec("pssh") is None:
            return "parallel-ssh not installed (pip install parallel-ssh)", ""
        return None, "pool_size=N; host keys compared after the run ²"
    if key in ("ssh", "scp"):
        return (None, "one process per node ³") if shutil.which(key) else (f"{key} not installed", "")
    return f"unknown tool {key}", ""


# -- the run -----------------------------------------------------------------------------------------


async def measure(row: Row, runs: int, work: Callable[[], Awaitable[None]],
                  before: Callable[[], Awaitable[None]] | None = None,
                  after: Callable[[], Awaitable[None]] | None = None) -> None:
    say(f"… {row.label}: warm-up + {runs} run(s)")
    try:
        for index in range(runs + 1):
            if before:
                await before()
            cpu_before = client_cpu()
            started = time.perf_counter()
            await work()
            seconds = time.perf_counter() - started
            cpu = client_cpu() - cpu_before
            if after:
                await after()
            if index > 0:
                row.times.append(seconds)
                row.cpu.append(cpu)
            say(f"    {'warm-up' if index == 0 else f'run {index}'}: {seconds:.2f}s (client CPU {cpu:.2f}s)")
        row.status = "ok"
    except Failed as exc:
        row.status, row.note = "failed", f"failed: {exc}"
    except Exception as exc:
        row.status, row.note = "failed", f"failed: {exc.__class__.__name__}: {first_line(str(exc))}"
    if row.status == "failed":
        say(f"    {row.note}")


def make_spec(folder: Path, nodes: int) -> Path:
    path = folder / "fanout.yml"
    path.write_text(f"name: fanout\ngroups:\n  n:\n    count: {nodes}\n")
    return path


async def build_fleet(client: Any, infra_id: str, tmp: Path, timeout: float, env: dict[str, str]) -> Fleet:
    status = await client.status(infra_id)
    key = Path((await client.init()).key)
    nodes = []
    for view in status.live:
        if not view.host_key:  # the API gives the pinned key
            raise SystemExit(f"node {view.name} has no pinned host key")
        nodes.append(Node(view.name, view.address, int(view.port), view.user, view.host_key.strip()))
    known_hosts = tmp / "known_hosts"
    known_hosts.write_text("".join(f"{n.known_hosts_name} {n.host_key}\n" for n in nodes))
    # each node's work folder, through cloudherd itself (exec runs there); uploads go there
    found = {r.node: r.stdout.strip() for r in await client.exec(infra_id, "pwd") if r.ok}
    for node in nodes:
        if not found.get(node.name):
            raise SystemExit(f"could not learn the work folder of {node.name}")
        node.work = found[node.name]
    upload = tmp / UPLOAD_NAME
    data = os.urandom(UPLOAD_BYTES)
    upload.write_bytes(data)
    cli = venv_tool("cloudherd")
    return Fleet(infra_id, nodes, key, known_hosts, tmp, upload, hashlib.sha256(data).hexdigest(), timeout, env,
                 client, [cli] if cli else None)


async def bench(args: argparse.Namespace, rows: list[Row], tmp: Path, info: dict[str, Any]) -> None:
    from cloudherd.api import Client

    client = Client()
    infra_id: str | None = None
    fleet: Fleet | None = None
    task = asyncio.current_task()
    if task is not None:  # SIGTERM (e.g. from `timeout`) ends the run like Ctrl-C: nodes are taken down
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        spec = make_spec(tmp, args.nodes)
        say(f"starting {args.nodes} local nodes (OpenSSH sshd each) in {tmp} …")
        started = time.perf_counter()
        infra_id = await client.up(spec, connect_timeout=max(120.0, args.nodes * 1.0))
        info["up_seconds"] = round(time.perf_counter() - started, 2)
        say(f"up: {infra_id} in {info['up_seconds']}s")
        fleet = await build_fleet(client, infra_id, tmp, args.timeout, dict(os.environ))
        if len(fleet.nodes) != args.nodes:
            raise SystemExit(f"asked for {args.nodes} nodes, got {len(fleet.nodes)}")
        floor = Floor(fleet)
        works: dict[str, Callable[[], Awaitable[None]]] = {
            "api": lambda: exec_api(fleet),
            "cli": lambda: exec_cli(fleet),
            "serve": lambda: exec_serve(fleet),
            "ansible": lambda: exec_ansible(fleet),
            "pssh": lambda: exec_pssh(fleet),
            "ssh": lambda: exec_ssh_loop(fleet),
            "asyncssh": lambda: exec_floor(fleet, floor),
            "push": lambda: upload_push_api(fleet),
            "push-cli": lambda: upload_push_cli(fleet),
            "pssh-copy": lambda: upload_pssh(fleet),
            "scp": lambda: upload_scp_loop(fleet),
        }
        for row in rows:
            if row.status == "skipped":
                continue
            why, note = await availability(row.key, fleet)
            if why:
                row.status, row.note = "skipped", f"n/a ({why})"
                say(f"… {row.label}: {row.note}")
                continue
            row.note = note
            if row.kind == "upload":
                await measure(row, args.runs, works[row.key], before=lambda: upload_prepare(fleet, floor),
                              after=lambda: upload_verify(fleet, floor))
            else:
                await measure(row, args.runs, works[row.key])
            if row.key == "ansible":
                await ansible_close_masters(fleet)
        if args.profile:
            await profile(fleet, floor, args.profile)
    finally:
        SERVE.stop()
        if fleet is not None:
            await ansible_close_masters(fleet)
        await teardown(client, infra_id, tmp)


async def teardown(client: Any, infra_id: str | None, tmp: Path) -> None:
    """Down what we made, then make sure no node of our temporary home is left running."""
    ids = [infra_id] if infra_id else []
    with contextlib.suppress(Exception):
        ids += [i.id for i in await client.ls() if i.id not in ids and i.state != "destroyed"]
    for ref in ids:
        say(f"down {ref} …")
        try:
            await client.down(ref)
        except Exception as exc:
            say(f"down {ref} failed: {exc}")
    root = tmp / "home" / "local"
    if root.is_dir():
        from cloudherd.providers.local import LocalProvider

        provider = LocalProvider("local", {"root": str(root)})
        leftovers = await provider.list({})
        if leftovers:
            say(f"terminating {len(leftovers)} leftover node(s)")
            await provider.terminate([i.id for i in leftovers])


async def profile(fleet: Fleet, floor: Floor, prefix: str) -> None:
    """Profile (CPU time) one cloudherd API exec and one floor run: the top functions, then cloudherd's own;
    full stats in PREFIX.api.prof / PREFIX.asyncssh.prof (``python -m pstats``)."""
    for name, work in (("api", lambda: exec_api(fleet)), ("asyncssh", lambda: exec_floor(fleet, floor))):
        profiler = cProfile.Profile(time.process_time)
        cpu, started = time.process_time(), time.perf_counter()
        profiler.enable()
        await work()
        profiler.disable()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        target = f"{prefix}.{name}.prof"
        profiler.dump_stats(target)
        print(f"\n=== {name}: {wall:.2f}s wall, {cpu:.2f}s CPU in this process (under the profiler); {target} ===")
        for order, pattern, count in (("tottime", None, 15), ("cumulative", "cloudherd", 15)):
            if pattern and name != "api":
                continue
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text).sort_stats(order)
            stats.print_stats(*([pattern] if pattern else []), count)
            lines = text.getvalue().splitlines()
            head = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
            print(f"-- by {order}{f' ({pattern} only)' if pattern else ''}")
            print("\n".join(line for line in lines[head:] if line.strip()))


FOOTNOTES = [
    "¹ Ansible: set only forks (-f N), -o (one-line output) and locations (ANSIBLE_HOME and the ControlPath "
    "folder in the temporary folder, ansible_remote_tmp in each node's folder). Defaults kept: ssh_args -C "
    "-o ControlMaster=auto -o ControlPersist=60s (so timed runs reuse the master connections the warm-up "
    "opened; they are closed with ssh -O exit afterwards), no pipelining, Python interpreter discovery.",
    "² parallel-ssh's native client (libssh2) has no known_hosts support: each session's host key is compared "
    "with the pinned one after the run (inside the timing; a microsecond check).",
    "³ ssh/scp: -i KEY -o UserKnownHostsFile=FILE -o BatchMode=yes -o IdentitiesOnly=yes, one node after the "
    "other. OpenSSH client and sshd 9.2 agree on sntrup761x25519 key exchange (post-quantum; one `ssh … true` "
    "took ~0.27 s here against ~0.15 s with curve25519); asyncssh (cloudherd, floor) and libssh2 (parallel-ssh) "
    "use curve25519.",
]


def ratio(value: float | None, reference: float | None) -> float | None:
    return value / reference if value is not None and reference else None


def ratio_reference(rows: list[Row]) -> dict[str, float | None]:
    return {kind: next((r.median for r in rows if r.key == key), None) for kind, key in REFERENCE.items()}


def render(rows: list[Row], args: argparse.Namespace, info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=150)
    reference = ratio_reference(rows)
    table = Table(title=f"fan-out to {args.nodes} local nodes: median of {args.runs} run(s) after 1 warm-up run")
    table.add_column("tool", no_wrap=True)
    table.add_column("median s", justify="right")
    table.add_column("min s", justify="right")
    table.add_column("ratio vs cloudherd", justify="right")
    table.add_column("client CPU s", justify="right")
    table.add_column("note")
    current = None
    for row in rows:
        if row.kind != current:
            if current is not None:
                table.add_section()
            title = EXEC_COMMAND if row.kind == "exec" else f"upload {UPLOAD_BYTES // 1024 // 1024} MB (random)"
            table.add_row(f"[bold]{title}[/]", "", "", "", "", "")
            current = row.kind
        ref = reference[row.kind]
        if row.median is not None and row.best is not None:
            median, best = f"{row.median:.2f}", f"{row.best:.2f}"
            ratio = f"{row.median / ref:.2f}" if ref else "—"
            cpu = f"{row.cpu_median:.2f}" if row.cpu_median is not None else "—"
        else:
            median = best = ratio = cpu = "—"
        note = f"[red]{row.note}[/]" if row.status == "failed" else row.note
        table.add_row("  " + row.label, median, best, ratio, cpu, note)
    console.print(table)
    lines = [
        f"N = {args.nodes} nodes (each its own OpenSSH sshd on its own 127.x.y.z), {args.runs} timed run(s) per tool; "
        f"{info['cores']} cores; client {info['openssh']}; Python {info['python']}; load average "
        f"{info['load_before']} before, {info['load_after']} after; `up` took {info.get('up_seconds', '?')} s.",
        "ratio = tool's median / cloudherd API exec median (uploads: / cloudherd API push). client CPU = median CPU "
        "seconds of this process and the processes it started and reaped (not the nodes' sshd; not Ansible's "
        "persistent ssh masters). Every tool verifies host keys against cloudherd's pinned keys (one known_hosts "
        "file), except as noted.",
        *FOOTNOTES,
    ]
    for line in lines:
        console.print(line, style="dim", highlight=False)


def write_json(path: str, rows: list[Row], args: argparse.Namespace, info: dict[str, Any]) -> None:
    reference = ratio_reference(rows)
    data = {
        "nodes": args.nodes, "runs": args.runs, **info,
        "rows": [{
            "tool": r.key, "label": r.label, "kind": r.kind, "status": r.status, "note": r.note,
            "times": [round(t, 4) for t in r.times], "median": r.median, "min": r.best,
            "client_cpu": [round(c, 4) for c in r.cpu], "client_cpu_median": r.cpu_median,
            "ratio": ratio(r.median, reference[r.kind]),
        } for r in rows],
    }
    Path(path).write_text(json.dumps(data, indent=1) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100, help="local nodes to start (default 100)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tool, after 1 warm-up (default 5)")
    parser.add_argument("--skip", default="", help=f"comma-separated tools to leave out: {', '.join(TOOLS)}; "
                                                   f"or groups: {', '.join(ALIASES)}")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per run (default 600)")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="afterwards, profile (CPU time) one cloudherd API exec and one floor run; "
                             "stats in PREFIX.api.prof and PREFIX.asyncssh.prof")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.runs < 1:
        parser.error("--nodes and --runs must be ≥ 1")
    skip: set[str] = set()
    for name in filter(None, (s.strip() for s in args.skip.split(","))):
        if name in ALIASES:
            skip.update(ALIASES[name])
        elif name in TOOLS:
            skip.add(name)
        else:
            parser.error(f"--skip: unknown tool {name!r} (tools: {', '.join(TOOLS)}; groups: {', '.join(ALIASES)})")
    args.skip = skip
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not any(os.access(p, os.X_OK) for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd")) and not shutil.which("sshd"):
        say("this benchmark needs OpenSSH's sshd (apt-get install openssh-server)")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="cloudherd-fanout-"))
    os.environ["CLOUDHERD_HOME"] = str(tmp / "home")
    os.environ["CLOUDHERD_LOCAL_SERVER"] = "openssh"
    for name in ("CLOUDHERD_DB", "CLOUDHERD_LOCAL_ROOT"):
        os.environ.pop(name, None)
    rows = [Row(key, kind, label) for key, (kind, label) in TOOLS.items()]
    for row in rows:
        if row.key in args.skip:
            row.status, row.note = "skipped", "skipped (--skip)"
    info: dict[str, Any] = {
        "cores": os.cpu_count(), "openssh": openssh_version(), "python": platform.python_version(),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()), "footnotes": FOOTNOTES,
    }
    code = 0
    try:
        asyncio.run(bench(args, rows, tmp, info))
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        say("interrupted: the nodes were taken down")
        code = 130 if isinstance(exc, KeyboardInterrupt) else 143
        for row in rows:
            if row.status == "pending":
                row.status, row.note = "skipped", "not run (interrupted)"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if any(row.times or row.status == "ok" for row in rows):
        if args.json:
            write_json(args.json, rows, args, info)
        render(rows, args, info)
    if code == 0 and any(r.status == "failed" for r in rows):
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
