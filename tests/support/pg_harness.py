"""A real PostgreSQL for the tests: a throw-away cluster made with the machine's own initdb and pg_ctl, in a
temporary folder, listening on 127.0.0.1 only (and on a socket in that folder), trusted for local users.

As root, the cluster is made and run as the ``postgres`` user (PostgreSQL refuses to run as root).  It is
stopped, by its own pg_ctl, when the test session ends.  Under ``CI=true`` a missing PostgreSQL is an
error, not a skip (`.ci/run` installs Debian's ``postgresql`` when it is missing).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

PG_ROOTS = ("/usr/lib/postgresql",)


def pg_bin() -> Path | None:
    """The folder of the newest installed PostgreSQL's binaries."""
    found = sorted((p for root in PG_ROOTS if Path(root).is_dir() for p in Path(root).iterdir()
                    if (p / "bin" / "initdb").exists()), key=lambda p: int(p.name) if p.name.isdigit() else 0)
    if found:
        return found[-1] / "bin"
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Postgres:
    folder: Path
    bin: Path
    port: int

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def fresh_database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def pause(self) -> None:
        """Stop the server, keeping its data: an outage (``resume`` ends it)."""
        done = subprocess.run(_as_owner([str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast",
                                         "-w", "stop"]), capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr

    def resume(self) -> None:
        done = subprocess.run(_as_owner([str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-o",
                                         _options(self.port, self.folder), "-l", str(self.folder / "log"), "-w",
                                         "start"]), capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr

    def stop(self) -> None:
        subprocess.run(_as_owner([str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast",
                                  "-w", "stop"]), capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


def _options(port: int, folder: Path) -> str:
    return f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder} -c fsync=off " \
           "-c max_connections=200"


def start_postgres() -> Postgres:
    binaries = pg_bin()
    if binaries is None:
        raise FileNotFoundError("no PostgreSQL binaries (initdb, pg_ctl): apt-get install postgresql")
    folder = Path(tempfile.mkdtemp(prefix="cloudherd-pg-"))
    folder.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()
    run = {"capture_output": True, "text": True, "timeout": 120}
    made = subprocess.run(_as_owner([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                     "--no-sync", "-E", "UTF8"]), **run)  # type: ignore[call-overload]
    if made.returncode != 0:
        raise RuntimeError(f"initdb failed: {made.stderr.strip()[-500:]}")
    options = _options(port, folder)
    started = subprocess.run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                                        str(folder / "log"), "-w", "start"]), **run)  # type: ignore[call-overload]
    if started.returncode != 0:
        log = (folder / "log").read_text(errors="replace")[-800:] if (folder / "log").exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()[-300:]} {log}")
    return Postgres(folder, binaries, port)
