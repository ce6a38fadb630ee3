"""cloudherd run by a user who is not root, for the rootless sandbox tests.

A throw-away account is made for the session (and removed after it).  It runs this checkout's cloudherd
with Debian's own ``python3`` (the tests' virtual environment may link to an interpreter under root's
home, which the account cannot enter), the checkout's ``src`` and the environment's site-packages bound,
in a private mount namespace, into a folder it can read: nothing of the host's permissions changes.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cloudherd

SYSTEM_PYTHON = "/usr/bin/python3"
# binds this checkout's code where the account can read it, then becomes the account; arguments: the bind
# pairs' count, the pairs (source, target), the uid, the gid, the command
ENTER = r"""
set -eu
n=$1; shift
while [ "$n" -gt 0 ]; do mount --bind "$1" "$2"; shift 2; n=$((n - 1)); done
uid=$1; gid=$2; shift 2
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups "$@"
"""


def unavailable() -> str | None:
    """Why the tests cannot run cloudherd as another user here, or None."""
    if os.geteuid() != 0:
        return "making a test user needs root"
    if shutil.which("useradd") is None or shutil.which("setpriv") is None:
        return "useradd and setpriv are needed to run as a test user"
    try:
        version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return f"{SYSTEM_PYTHON} is needed to run as a test user"
    if version != str(sys.version_info[:2]):
        return f"{SYSTEM_PYTHON} is Python {version}, the tests' environment {sys.version_info[:2]}"
    return None


@dataclass
class User:
    """A user who is not root, and a folder of theirs (``base``) with this checkout's code bound into it."""

    name: str
    uid: int
    gid: int
    base: Path

    def folder(self, name: str) -> Path:
        """A new folder the user owns, for one test (its home and cloudherd's data)."""
        path = self.base / "homes" / f"{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True)
        os.chown(path, self.uid, self.gid)
        return path

    def write(self, path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        for made in (path, *path.parents):
            if made == self.base:
                break
            os.chown(made, self.uid, self.gid)
        return path

    def cloudherd(self, home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """``cloudherd ARGS`` as this user, with ``home`` as HOME and cloudherd's data folder inside it."""
        code = self.base / "code"
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(home), "LANG": "C.UTF-8",
            "CLOUDHERD_HOME": str(home / "cloudherd"), "PYTHONPATH": f"{code / 'src'}:{code / 'site'}",
            "PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1", "COLUMNS": "200",
        }
        binds = [(Path(cloudherd.__file__).resolve().parents[1], code / "src"),
                 (Path(sysconfig.get_paths()["purelib"]).resolve(), code / "site")]
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", ENTER, "enter", str(len(binds)),
                *(str(p) for pair in binds for p in pair), str(self.uid), str(self.gid),
                SYSTEM_PYTHON, "-m", "cloudherd", *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(home), timeout=timeout)

    def processes(self) -> list[str]:
        """The user's processes still running (command lines): none should outlive ``down``."""
        found = subprocess.run(["pgrep", "-a", "-u", str(self.uid)], capture_output=True, text=True)
        return found.stdout.splitlines()


@contextlib.contextmanager
def made_user(subordinate_ids: bool = False) -> Iterator[User]:
    """A new account (no home of its own on disk), with 65536 subordinate uids and gids if asked, removed with
    what it left running (and its subordinate ids)."""
    name = f"chtest{os.getpid()}{'s' if subordinate_ids else ''}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
    if subordinate_ids:  # a range of its own, below the ids cloudherd's root nodes use (0x70000000…)
        start = 1_000_000_000 + (os.getpid() % 10_000) * 65536
        ids = f"{start}-{start + 65535}"
        subprocess.run(["usermod", "--add-subuids", ids, "--add-subgids", ids, name], check=True,
                       capture_output=True)
    entry = pwd.getpwnam(name)
    base = Path(tempfile.mkdtemp(prefix="cloudherd-user-"))
    try:
        base.chmod(0o755)
        for mount_point in ("code/src", "code/site"):
            (base / mount_point).mkdir(parents=True)
        (base / "homes").mkdir(mode=0o755)
        yield User(name, entry.pw_uid, entry.pw_gid, base)
    finally:
        kill_all(entry.pw_uid)
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def kill_all(uid: int) -> None:
    """Kill, by pid, what the session's own account left running."""
    found = subprocess.run(["pgrep", "-u", str(uid)], capture_output=True, text=True).stdout.split()
    for pid in found:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid), 9)


def run_spec(user: User, home: Path, name: str, body: str, scripts: dict[str, str] | None = None) -> Path:
    """Write a spec (and its scripts) in the user's ``home``; returns its path."""
    for script, text in (scripts or {}).items():
        user.write(home / name / script, text)
    return user.write(home / name / "cloudherd.yml", body)


def ready_nodes(status_json: str) -> Sequence[dict[str, object]]:
    import json

    return [n for n in json.loads(status_json)["nodes"] if n["state"] == "ready"]
