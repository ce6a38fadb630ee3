"""Shared fixtures: every test gets its own cloudherd home (database, keys, local nodes) and leaves no
node running: whatever nodes a test's home still holds at the end are terminated by the provider
(which stops only the processes it started, by pid)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudherd.providers.local import LocalProvider

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "examples" / "hello" / "cloudherd.yml"
SERVERS = ["openssh", "builtin"]


def has_sshd() -> bool:
    return any(os.access(p, os.X_OK) for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "cloudherd-home"
    monkeypatch.setenv("CLOUDHERD_HOME", str(folder))
    monkeypatch.delenv("CLOUDHERD_DB", raising=False)
    monkeypatch.delenv("CLOUDHERD_LOCAL_ROOT", raising=False)
    yield folder
    root = folder / "local"
    if root.is_dir():
        provider = LocalProvider("local", {"root": str(root)})
        leftovers = asyncio.run(provider.list({}))
        asyncio.run(provider.terminate([i.id for i in leftovers]))


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each local-node test runs on OpenSSH's sshd and on the built-in asyncssh server."""
    kind: str = request.param
    if kind == "openssh" and not has_sshd():
        pytest.skip("openssh-server is not installed")
    monkeypatch.setenv("CLOUDHERD_LOCAL_SERVER", kind)
    return kind


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "cloudherd", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
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
