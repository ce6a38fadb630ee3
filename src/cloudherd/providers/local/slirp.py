"""A rootless node's own network: slirp4netns in user mode, the node's SSH port forwarded from loopback.

Why: a user who is not root may make a network namespace (inside a user namespace of their own) but no
veth or route on the host.  slirp4netns gives such a namespace a TAP device whose traffic it carries
through ordinary sockets: the node reaches the outside (package mirrors) as this user's process would, and
with ``--disable-host-loopback`` none of the host's own services on 127.0.0.1.  The host reaches the node
through a port slirp4netns listens on (``add_hostfwd`` on its API socket): SSH and health checks go to
``127.x.y.z:PORT``, which slirp4netns forwards to the node's port 22.

slirp4netns is tied to the node's life by ``--exit-fd``: the node's processes hold the pipe's write end,
and when the last of them ends (the node's namespace gone), slirp4netns reads end-of-file and exits —
a killed cloudherd leaves no slirp4netns behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path

NODE_ADDRESS = "10.0.2.100"  # slirp4netns's default address for the namespace's end
DNS = "10.0.2.3"  # slirp4netns's resolver, which forwards to the host's
MTU = "65520"
TAP = "tap0"


class SlirpError(RuntimeError):
    """slirp4netns could not give the node its network."""


def _in_new_namespace(pid: int) -> bool:
    """Whether ``pid`` has left our network namespace and its user namespace is mapped (unshare does both
    right after it starts; slirp4netns must not join before)."""
    try:
        moved = os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
        return moved and bool(Path(f"/proc/{pid}/uid_map").read_text().strip())
    except OSError:
        return False


def start(pid: int, folder: Path, host: str, port: int, exit_fd: int, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Give the network namespace of ``pid`` its network and forward ``host:port`` to its port 22; returns
    the slirp4netns process (ready: the TAP is up and the forward in place)."""
    deadline = time.monotonic() + timeout
    while not _in_new_namespace(pid):
        if time.monotonic() > deadline or not Path(f"/proc/{pid}").exists():
            raise SlirpError("the node's namespace did not appear")
        time.sleep(0.005)
    api = folder / "slirp.sock"
    api.unlink(missing_ok=True)
    ready_read, ready_write = os.pipe()
    try:
        with open(folder / "slirp.log", "ab") as log:
            process = subprocess.Popen(
                ["slirp4netns", "--configure", f"--mtu={MTU}", "--disable-host-loopback", f"--api-socket={api}",
                 f"--exit-fd={exit_fd}", f"--ready-fd={ready_write}", str(pid), TAP],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(exit_fd, ready_write),
                start_new_session=True, close_fds=True,
            )
        os.close(ready_write)
        ready_write = -1
        _wait_ready(ready_read, process, deadline)
    finally:
        os.close(ready_read)
        if ready_write >= 0:
            os.close(ready_write)
    try:
        _forward(api, host, port)
    except SlirpError:
        process.kill()
        process.wait()
        raise
    return process


def _wait_ready(fd: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    """slirp4netns writes a byte to its ready pipe once the namespace's interface is configured."""
    os.set_blocking(fd, False)
    while True:
        with contextlib.suppress(BlockingIOError):
            if os.read(fd, 1):
                return
            raise SlirpError(f"slirp4netns ended before the network was up (exit {process.wait()})")
        if process.poll() is not None:
            raise SlirpError(f"slirp4netns ended before the network was up (exit {process.returncode})")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise SlirpError("slirp4netns did not bring the network up in time")
        time.sleep(0.005)


def _forward(api: Path, host: str, port: int) -> None:
    request = {"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": host, "host_port": port,
                                                       "guest_addr": NODE_ADDRESS, "guest_port": 22}}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(api))
        sock.sendall(json.dumps(request).encode())
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    try:
        reply = json.loads(answer or b"{}")
    except ValueError:
        reply = {"error": {"desc": answer.decode(errors="replace")}}
    if "error" in reply:
        raise SlirpError(f"slirp4netns refused the SSH port forward {host}:{port}: {reply['error'].get('desc')}")
