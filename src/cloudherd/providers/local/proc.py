"""Processes on this computer, from ``/proc``: children and descendants, a process's identity for good (pid,
start time, boot: a pid is reused, the triple is not), signals sent only while a process still is itself."""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

_STARTTIME = 19  # /proc/PID/stat field 22 (start time, clock ticks after boot), counted from field 3


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on: the command name before it may hold spaces and ')'."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


@functools.cache
def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_identity(pid: int) -> dict[str, Any] | None:
    """What names process ``pid`` for good: pid, start time and boot (a pid is reused, the triple is not)."""
    fields = stat_fields(pid)
    if fields is None or len(fields) <= _STARTTIME or fields[0] in ("Z", "X"):
        return None
    return {"pid": pid, "started": int(fields[_STARTTIME]), "boot": boot_id()}


def is_process(identity: Mapping[str, Any]) -> bool:
    """Whether the process ``identity`` names still runs (not exited, not a zombie, not a reused pid)."""
    pid = identity.get("pid")
    if not isinstance(pid, int) or pid <= 0 or identity.get("boot") != boot_id():
        return False
    now = process_identity(pid)
    return now is not None and now["started"] == identity.get("started")


def ns_pid(pid: int) -> int | None:
    """Process ``pid``'s pid in its own (innermost) PID namespace."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def signal_identity(identity: Mapping[str, Any], sig: signal.Signals) -> bool:
    """Send ``sig`` to the process ``identity`` names, if it still is that process (through a pidfd)."""
    pid = identity.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if not is_process(identity):
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def signal_all(pids: Sequence[int], sig: signal.Signals) -> int:
    sent = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)
            sent += 1
    return sent


def kill_checked(pid: int, still_it: Callable[[], bool], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after ``grace``, to ``pid`` — only while ``still_it()`` holds.

    Through a pidfd where the kernel has them: once open it names that one process, so the check made
    after opening it cannot be outdated by the pid's reuse, and its exit is waited for by poll."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfds here (old kernel): check, then signal by pid
        if still_it():
            kill(pid, grace)
        return
    try:
        if not still_it():
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fd, sig)
            poller = select.poll()
            poller.register(fd, select.POLLIN)  # readable once the process has exited
            if poller.poll(int(grace * 1000)):
                break
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # reap when it is our child
    finally:
        os.close(fd)


def child_pids(pid: int) -> list[int]:
    """The children of ``pid``, from /proc/PID/task/*/children: a few reads, where a scan of /proc reads a
    file per process (costly when a hundred nodes start at once).  Falls back on the scan."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return [int(c) for task in tasks for c in (task / "children").read_text().split()]
    except FileNotFoundError:
        if not Path(f"/proc/{pid}").exists():
            return []
        return [p for p in descendant_pids(pid) if parent_pid(p) == pid]
    except (OSError, ValueError):
        return [p for p in descendant_pids(pid) if parent_pid(p) == pid]


def tree_pids(root: int) -> list[int]:
    """``root``'s descendants, walked through :func:`child_pids`."""
    found, todo = [], [root]
    while todo:
        for child in child_pids(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def descendant_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = parent_pid(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def kill(pid: int, grace: float = 3.0) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)  # reap when it is our child
            if waited:
                return
        except ChildProcessError:
            pass
        if not Path(f"/proc/{pid}").exists() or is_zombie(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0)


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True
