"""cloudherd's built-in SSH server for ``local`` nodes where OpenSSH's ``sshd`` is not installed.

Run as ``python -m cloudherd.providers.local.local_server NODE_FOLDER``: it serves exec and shell sessions
(through the login user's shell, with ``HOME`` set to the node's home) and SFTP, accepts only the
node's authorized key for the node's user, and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncssh

from cloudherd.providers.local.meta import NODE_MARKER

CHUNK = 65536


class _NodeServer(asyncssh.SSHServer):
    def __init__(self, user: str, keys: Sequence[asyncssh.SSHKey]) -> None:
        self._user = user
        self._keys = {key.public_data for key in keys}

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self._user and key.public_data in self._keys

    def auth_completed(self) -> None:
        # the same words OpenSSH logs at INFO, so logins to either server can be counted alike
        print(f"Accepted publickey for {self._user} (built-in server)", file=sys.stderr, flush=True)


def _home(folder: Path, meta: dict[str, Any]) -> str:
    """The login user's home: in a sandbox the node's home folder is bound at the user's own home path."""
    return pwd.getpwnam(meta["user"]).pw_dir if meta.get("isolated") else str(folder / "home")


def _session_env(folder: Path, meta: dict[str, Any], extra: dict[str, str]) -> dict[str, str]:
    entry = pwd.getpwnam(meta["user"])
    env = {k: v for k, v in extra.items() if isinstance(k, str) and isinstance(v, str)}
    env.update({
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": _home(folder, meta),
        "USER": entry.pw_name,
        "LOGNAME": entry.pw_name,
        "SHELL": entry.pw_shell or "/bin/sh",
        "CLOUDHERD_WORK": str(folder / "work"),
        NODE_MARKER: str(folder),
    })
    return env


async def _pump(source: Any, sink: Any) -> None:
    while True:
        chunk = await source.read(CHUNK)
        if not chunk:
            return
        sink.write(chunk)


async def _feed(channel_in: asyncssh.SSHReader[bytes], proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    try:
        while True:
            chunk = await channel_in.read(CHUNK)
            if not chunk:
                break
            proc.stdin.write(chunk)
            await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError, asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
        pass
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()


def _handler(folder: Path, meta: dict[str, Any]) -> Any:
    shell = pwd.getpwnam(meta["user"]).pw_shell or "/bin/sh"

    async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
        argv = [shell, "-c", process.command] if process.command else [shell, "-i"]
        env = _session_env(folder, meta, dict(process.env))
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=_home(folder, meta), env=env, start_new_session=True,
        )
        feeder = asyncio.create_task(_feed(process.stdin, proc))
        try:
            await asyncio.gather(_pump(proc.stdout, process.stdout), _pump(proc.stderr, process.stderr))
            code = await proc.wait()
        finally:
            feeder.cancel()
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        process.exit(code if code >= 0 else 128 - code)

    return handle


async def serve(folder: Path, listen: str | None = None) -> None:
    """Serve the node in ``folder``: on its recorded address, or on ``listen`` (HOST:PORT) inside a rootless
    sandbox, where the pid written is the namespace's (the provider finds the host's)."""
    meta = json.loads((folder / "node.json").read_text())
    keys = asyncssh.read_public_key_list(str(folder / "authorized_keys"))
    host, port = listen.rsplit(":", 1) if listen else (meta["address"], meta["port"])
    server = await asyncssh.listen(
        host, int(port),
        server_host_keys=[str(folder / "ssh_host_ed25519_key")],
        server_factory=lambda: _NodeServer(meta["user"], keys),
        process_factory=_handler(folder, meta),
        sftp_factory=True,
        allow_scp=True,
        encoding=None,
        keepalive_interval=30,
    )
    # written whole or not at all (a reader never sees it half written); the provider records this process's
    # identity from it.  Unlike sshd, this server is the process the provider started (no supervisor) and
    # keeps its command line and environment, so it is found again as it is.
    pid_file = "ns/sshd.pid" if listen else "sshd.pid"
    tmp = folder / f"{pid_file}.tmp"
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, folder / pid_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m cloudherd.providers.local.local_server NODE_FOLDER [HOST:PORT]")
    asyncio.run(serve(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) == 3 else None))


if __name__ == "__main__":
    main()
