"""What starts a node's SSH server: its supervisor, sshd's configuration, the environment and folders it runs
with, a free loopback address, and the wait until it listens."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import pwd
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cloudherd.providers.base import ProviderError
from cloudherd.providers.local.meta import NODE_MARKER, NS_PID_FILE, read_meta

READY_TIMEOUT = 15.0  # seconds a node's SSH server has to listen

# sshd runs under a tiny shell supervisor that reaps it the moment it ends: a killed sshd then leaves no
# zombie behind, whatever the system's init does.  In a UTS namespace it also names the node's host.
SUPERVISOR = (
    '[ -n "$CLOUDHERD_SET_HOSTNAME" ] && hostname "$0" 2>/dev/null; '
    '"$@" & child=$!; '
    'trap \'kill -TERM $child 2>/dev/null; wait $child; exit 0\' TERM INT HUP; '
    'wait $child'
)


def own_home() -> Path:
    """This user's home folder, which a rootless node does not see (its root's home is its own)."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir).resolve()


def runtime_folders() -> list[Path]:
    """What runs cloudherd's SSH server (its interpreter's environment, its code, ``PYTHONPATH``), bound
    read-only into a rootless node where the node would not see it: in the user's home, or in the folders
    a node has of its own (``/tmp``, ``/run``)."""
    covered = [own_home(), Path("/tmp"), Path("/run")]
    wanted = {Path(sys.prefix), Path(sys.base_prefix), Path(__file__).parents[3],
              *(Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)}
    found = {path.resolve() for path in wanted if path.is_absolute()}
    return sorted(path for path in found if any(path.is_relative_to(c) and path != c for c in covered))


def base_env() -> dict[str, str]:
    # PYTHONPATH: the built-in server a rootless node runs imports cloudherd as this process does
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH")
    return {k: os.environ[k] for k in keep if k in os.environ}


def free_address(root: Path) -> tuple[str, int]:
    """A loopback address no node uses, with port 22 when we may bind it, else a free high port."""
    used = {m.get("address") for f in root.iterdir() if (m := read_meta(f)) is not None}
    for _ in range(200):
        address = f"127.{random.randint(16, 250)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        if address in used:
            continue
        if os.geteuid() == 0 and bindable(address, 22):
            return address, 22
        port = bindable(address, 0)
        if port:
            return address, port
    raise ProviderError("local provider: no free loopback address found")


def bindable(address: str, port: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                return 0
            raise
        bound: int = sock.getsockname()[1]
        return bound


def write_sshd_config(folder: Path, meta: dict[str, Any], listen: str | None = None) -> None:
    q = _quote
    lines = [
        f"ListenAddress {listen or str(meta['address']) + ':' + str(meta['port'])}",
        f"HostKey {q(folder / 'ssh_host_ed25519_key')}",
        f"AuthorizedKeysFile {q(folder / 'authorized_keys')}",
        # in a sandbox sshd's pid is the namespace's: it goes to a file of its own, and sshd.pid gets the
        # host's pid (written once it is known), so that whoever reads sshd.pid can act on it
        f"PidFile {q(folder / (NS_PID_FILE if meta.get('isolated') else 'sshd.pid'))}",
        f"AllowUsers {meta['user']}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "MaxStartups 1000",
        "MaxSessions 1000",
        "LogLevel INFO",  # one "Accepted publickey" line per login in server.log: logins can be counted
        "Subsystem sftp internal-sftp",
        # a sandboxed node's home is its own folder, bound at the user's home path: sshd sets HOME to it
        "SetEnv " + ("" if meta.get("isolated") else f"HOME={q(folder / 'home')} ")
        + f"CLOUDHERD_WORK={q(folder / 'work')} {NODE_MARKER}={q(folder)}",
    ]
    (folder / "sshd_config").write_text("\n".join(lines) + "\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder


def _quote(path: Path) -> str:
    return f'"{path}"' if " " in str(path) else str(path)


@functools.cache
def can_set_hostname() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "--uts", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


async def wait_listening(address: str, port: int, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            _reader, writer = await asyncio.open_connection(address, port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False
