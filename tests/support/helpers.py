"""Helpers the tests share (functions and constants; the fixtures are in the conftest.py files): running
the CLI, waiting on a condition, finding local nodes' processes and folders, writing specs, skipping
what this computer lacks (and failing instead under CI=true)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import asyncssh
import pytest

from cloudherd.spec.loader import LoadedSpec, load_spec_text
from cloudherd.state.models import Infrastructure
from cloudherd.state.repo import Store

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello" / "cloudherd.yml"
SERVERS = ["openssh", "builtin"]
T = TypeVar("T")


def has_sshd() -> bool:
    return any(os.access(p, os.X_OK) for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd"))


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a user would (in ``cwd``: where the user is)."""
    return subprocess.run(
        [sys.executable, "-m", "cloudherd", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, cwd=cwd,
    )


def node_processes(folder: Path) -> list[int]:
    """Live (non-zombie) processes that belong to local nodes under ``folder``."""
    marker = f"CLOUDHERD_LOCAL_NODE={folder}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if marker in environ and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, what: str = "the condition",
               interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); AssertionError naming ``what`` once
    ``timeout`` seconds pass.  For synchronising on a condition instead of sleeping a guessed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout:g}s waiting for {what}")
        time.sleep(interval)


async def async_wait_until(predicate: Callable[[], T], timeout: float = 30.0, what: str = "the condition",
                           interval: float = 0.02) -> T:
    """:func:`wait_until` inside an event loop (the loop keeps running between polls)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


def process_gone(pid: int) -> bool:
    """The process has exited (no /proc entry, or a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def spec_of(tmp_path: Path, text: str, scripts: dict[str, str] | None = None) -> LoadedSpec:
    """A loaded spec from ``text`` (its scripts written beside it first), as ``up`` would read it."""
    for name, body in (scripts or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "cloudherd.yml"
    path.write_text(text)
    return load_spec_text(text, path, environ={})


def recorded_infrastructure(store: Store, loaded: LoadedSpec, state: str = "ready") -> Infrastructure:
    """An infrastructure row for ``loaded`` (owner, spec snapshot), as ``up`` records one; no groups or nodes."""
    user = store.ensure_user("tester", "ssh-ed25519 AAAA tester", "/nonexistent/id_ed25519")
    return store.create_infrastructure(name=loaded.spec.name, owner_id=user.id, state=state,
                                       spec_path=str(loaded.path), spec_text=loaded.raw_text,
                                       ssh_key_path="/nonexistent/id_ed25519")


def require(missing: str | None, what: str) -> None:
    """Skip a test whose part this computer lacks (``missing`` says which); under CI=true, which has them all
    (root, sshd, PostgreSQL), fail instead: a skipped test there would be a test that never runs."""
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {what} must run here: {missing}")
        pytest.skip(missing)


def require_sandbox(network: bool = False) -> None:
    """Local nodes as sandboxes (root, OpenSSH's sshd), and with ``network`` their networks of their own."""
    from cloudherd.providers.local import net as local_net
    from cloudherd.providers.local import sandbox as local_sandbox

    require(local_sandbox.unavailable() or (local_net.unavailable() if network else None)
            or (None if has_sshd() else "no OpenSSH sshd"), "the sandbox tests")


def require_postgres() -> None:
    from pg_harness import pg_bin

    require("PostgreSQL binaries (initdb, pg_ctl) or psycopg not installed"
            if pg_bin() is None or importlib.util.find_spec("psycopg") is None else None, "the PostgreSQL tests")


def write_spec(folder: Path, text: str, scripts: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in (scripts or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    spec = folder / "cloudherd.yml"
    spec.write_text(text)
    return spec


def node_folders(home: Path) -> dict[str, Path]:
    """Node name -> its local folder."""
    found = {}
    for meta in (home / "local").glob("*/node.json"):
        found[json.loads(meta.read_text())["name"]] = meta.parent
    return found


def logins(folder: Path) -> int:
    """Logins the node's SSH server accepted, from its own log."""
    log = folder / "server.log"
    return log.read_text(errors="replace").count("Accepted publickey") if log.exists() else 0


def replace_host_key(folder: Path, server: str) -> str:
    """Give a stopped node a new host key (as a rebuilt machine would have); return its fingerprint."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(folder / "ssh_host_ed25519_key"))
    os.chmod(folder / "ssh_host_ed25519_key", 0o600)
    key.write_public_key(str(folder / "ssh_host_ed25519_key.pub"))
    return key.get_fingerprint()


CHROOT_ESCAPE = """\
import os, sys
os.makedirs("/tmp/jail", exist_ok=True)
os.chroot("/tmp/jail")            # a root of our own, with the cwd left outside it
for _ in range(64):
    os.chdir("..")                # up past the sandbox's root, if it is only a chroot
os.chroot(".")
with open(sys.argv[1], "w") as out:
    out.write("escaped")
print(len([p for p in os.listdir("/proc") if p.isdigit()]))
"""
