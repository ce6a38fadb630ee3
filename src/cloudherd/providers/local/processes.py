"""A node's processes: its supervisor and SSH server found again by pid and checked to still be what they were
(see the package notes), every process of the node, and how a node is stopped (a sandboxed one as a whole)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from cloudherd.providers.local.meta import NODE_MARKER, NS_PID_FILE
from cloudherd.providers.local.proc import (
    child_pids,
    descendant_pids,
    is_process,
    is_zombie,
    kill,
    kill_checked,
    ns_pid,
    parent_pid,
    process_identity,
    signal_identity,
    stat_fields,
    tree_pids,
)


def process_alive(pid: int | None, folder: Path) -> bool:
    """True when ``pid`` runs and is this node's server (not a reused pid, not a zombie)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return False
    return str(folder) in cmdline


def server_pid(folder: Path, meta: dict[str, Any]) -> int | None:
    """The pid of the SSH server itself, as recorded (its identity when it started, else the pid file; the
    built-in server is the process we started).  Not checked: see :func:`live_server`."""
    identity = meta.get("server_identity")
    if isinstance(identity, dict) and isinstance(identity.get("pid"), int):
        return int(identity["pid"])
    if meta.get("server") != "openssh":
        return meta.get("pid")
    return pid_file(folder)


def pid_file(folder: Path, name: str = "sshd.pid") -> int | None:
    try:
        return int((folder / name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def live_server(folder: Path, meta: dict[str, Any]) -> int | None:
    """The pid of the node's SSH server when that process still runs and really is it, else None.

    With the identity recorded at start (pid, start time, boot): that very process, never a reused pid.
    A node from before identities were recorded falls back on the pid file and the command line."""
    identity = meta.get("server_identity")
    if isinstance(identity, dict):
        return int(identity["pid"]) if is_process(identity) else None
    if meta.get("server") != "openssh":
        pid = meta.get("pid")
        return pid if process_alive(pid, folder) else None
    pid = pid_file(folder)
    return pid if pid and names_node_sshd(pid, folder) else None


def stop_processes(folder: Path, meta: dict[str, Any]) -> None:
    """Stop the node: its server, then every process started on it (they carry the node's marker).

    A sandboxed node ends at once with its namespace: its pid 1 is killed (the kernel then kills the rest,
    stopped ones too) and so is the ``unshare`` parent, which ignores SIGTERM.

    Connections that just closed get a moment to end, so that sshd reaps their processes itself.  The
    supervisor normally ends sshd; when it is gone (killed on its own), sshd is ended here, by the
    identity checked in :func:`live_server` — a pid file naming some other process is never acted on.
    """
    if meta.get("isolated"):
        end_sandbox(folder, meta)
        return
    server = live_server(folder, meta)
    deadline = time.monotonic() + 1.0
    while server and time.monotonic() < deadline and any(parent_pid(p) == server for p in marked_processes(folder)):
        time.sleep(0.02)
    # sshd's per-connection processes re-exec without the marker: find them as the server's descendants
    connections = descendant_pids(server) if server else []
    pid = meta.get("pid")
    if pid and process_alive(pid, folder):
        kill(pid)
    if server:
        kill_checked(server, lambda: live_server(folder, meta) == server)
    for other in [*connections, *marked_processes(folder)]:
        with contextlib.suppress(OSError):
            os.kill(other, signal.SIGKILL)


def names_node_sshd(pid: int, folder: Path) -> bool:
    """Whether ``pid`` is an sshd started with ``-f <folder>/sshd_config`` (for nodes without a recorded
    identity).  sshd's process title rewrites its command line and may cut it short: a title cut inside
    the path still matches if it names at least the whole node folder."""
    fields = stat_fields(pid)
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").rstrip()
    except OSError:
        return False
    if fields is None or fields[0] in ("Z", "X") or comm != "sshd":
        return False
    _, found, rest = cmdline.partition(" -f ")
    expected = f"{folder}/sshd_config"
    if not found:
        return False
    return rest.startswith(expected) or (expected.startswith(rest) and len(rest) > len(str(folder)))


async def wait_server_identity(folder: Path, process: subprocess.Popen[bytes], *, openssh: bool,
                                isolated: bool = False, timeout: float = 5.0) -> dict[str, Any] | None:
    """The identity of the node's SSH server, once its pid file names it (sshd writes the file just after it
    starts listening).  The pid must be the supervisor's child (sshd) or the process itself (the built-in
    server); in a sandbox the file holds the namespace's pid, found on the host among the sandbox's processes.
    None when that does not happen in time: the node then falls back on pid file checks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        pid = pid_file(folder, NS_PID_FILE if isolated else "sshd.pid")
        if pid and isolated:
            host_pid = next((p for p in tree_pids(process.pid) if ns_pid(p) == pid), None)
            if host_pid is not None:
                tmp = folder / "sshd.pid.tmp"
                tmp.write_text(f"{host_pid}\n")
                os.replace(tmp, folder / "sshd.pid")
                return process_identity(host_pid)
        elif pid and (parent_pid(pid) == process.pid if openssh else pid == process.pid):
            return process_identity(pid)
        await asyncio.sleep(0.01)
    return None


def sandbox_init(unshare_pid: int) -> dict[str, Any] | None:
    """The identity of a sandbox's pid 1 (the one child of its ``unshare``)."""
    child = next(iter(child_pids(unshare_pid)), None)
    return process_identity(child) if child is not None else None


def node_processes(folder: Path, meta: dict[str, Any]) -> builtins.list[int]:
    """Every process of the node (not its ``unshare`` parent): the supervisor and what runs below it, and
    whatever carries the node's marker (daemons a script started, which left the tree)."""
    found: set[int] = set()
    init = meta.get("init_identity")
    pid = meta.get("pid")
    if meta.get("isolated") and isinstance(init, dict) and is_process(init):
        found |= {int(init["pid"]), *descendant_pids(int(init["pid"]))}
    elif pid and process_alive(pid, folder) and not meta.get("isolated"):
        found |= {int(pid), *descendant_pids(int(pid))}
    server = live_server(folder, meta)
    if server:
        found |= {server, *descendant_pids(server)}
    found |= set(marked_processes(folder))
    found.discard(os.getpid())
    return sorted(found)


def end_sandbox(folder: Path, meta: dict[str, Any], timeout: float = 10.0) -> None:
    """Kill a sandboxed node: its pid 1 (which takes the namespace down), its ``unshare`` parent, then any
    process of it still seen, until none is left or ``timeout``."""
    init = meta.get("init_identity")
    if isinstance(init, dict):
        signal_identity(init, signal.SIGKILL)
    pid = meta.get("pid")
    if pid and process_alive(pid, folder):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ChildProcessError, OSError):
            if pid:
                os.waitpid(pid, os.WNOHANG)  # reap when it is our child
        left = [p for p in node_processes(folder, meta) if not is_zombie(p)]
        parent_left = bool(pid) and process_alive(pid, folder)  # reaped above once it has ended
        if (not left and not parent_left) or time.monotonic() > deadline:
            break
        for other in left:
            with contextlib.suppress(OSError):
                os.kill(other, signal.SIGKILL)
        time.sleep(0.02)
    network = meta.get("net_identity")  # a rootless node's slirp4netns (it also ends on its own, by its exit pipe)
    if isinstance(network, dict):
        signal_identity(network, signal.SIGKILL)


def marked_processes(folder: Path) -> list[int]:
    marker = f"{NODE_MARKER}={folder}\0".encode()
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ + b"\0":
            found.append(int(entry.name))
    return found
