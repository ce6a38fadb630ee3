"""A group's ``upload``: a folder beside the spec copied to each node before its scripts run.

OGC's ``remote-path`` rsynced the folder OGC ran in to the node, passing ``include`` / ``exclude`` to rsync;
here the same patterns choose the files (rsync's reading of them, see :func:`chosen`) and SFTP copies them
over the node's pooled connection.  The folder is read at deploy time, as OGC did: a manager replacing a
node later copies what is there then, and a folder gone is the node's failure, said in those words.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path

import asyncssh

from cloudherd.errors import DeployError
from cloudherd.remote.pool import ConnectionPool, remote_path
from cloudherd.remote.ssh import Target
from cloudherd.spec.model import Upload

MAX_FILES = 20_000
MAX_BYTES = 512 * 1024 * 1024


def _matches(pattern: str, relative: str, is_dir: bool) -> bool:
    """rsync's match of one pattern: a trailing ``/`` only matches folders; a pattern with a ``/`` (other than
    the trailing one) matches the path from the folder (anchored with a leading ``/``) or its tail, one without
    matches the last name."""
    if pattern.endswith("/"):
        if not is_dir:
            return False
        pattern = pattern.rstrip("/")
    if pattern.startswith("/"):
        return fnmatch.fnmatchcase(relative, pattern.lstrip("/"))
    if "/" in pattern:
        parts = relative.split("/")
        return any(fnmatch.fnmatchcase("/".join(parts[i:]), pattern) for i in range(len(parts)))
    return fnmatch.fnmatchcase(relative.rsplit("/", 1)[-1], pattern)


def _kept(relative: str, is_dir: bool, spec: Upload) -> bool:
    """Includes are read before excludes (OGC gave them to rsync in that order): the first match decides."""
    if any(_matches(p, relative, is_dir) for p in spec.include):
        return True
    return not any(_matches(p, relative, is_dir) for p in spec.exclude)


def chosen(root: Path, spec: Upload) -> list[str]:
    """The files under ``root`` the patterns keep (relative, ``/``-separated, in name order); an excluded
    folder is not entered, as rsync does not.  Links are copied as the files they point to when those are
    inside ``root``, and skipped otherwise."""
    out: list[str] = []
    total = 0
    real_root = os.path.realpath(root)
    for folder, dirs, files in os.walk(root):
        base = os.path.relpath(folder, root)
        prefix = "" if base == "." else base.replace(os.sep, "/") + "/"
        dirs[:] = sorted(d for d in dirs if _kept(prefix + d, True, spec)
                         and not os.path.islink(os.path.join(folder, d)))
        for name in sorted(files):
            relative = prefix + name
            full = os.path.join(folder, name)
            if not _kept(relative, False, spec):
                continue
            real = os.path.realpath(full)
            if os.path.commonpath([real, real_root]) != real_root or not os.path.isfile(real):
                continue
            out.append(relative)
            total += os.path.getsize(real)
            if len(out) > MAX_FILES or total > MAX_BYTES:
                raise DeployError(f"upload of {spec.source}: more than {MAX_FILES} files or "
                                  f"{MAX_BYTES // 2**20} MiB: narrow it with exclude")
    return out


async def upload(pool: ConnectionPool, target: Target, base: Path, uploads: Sequence[Upload]) -> int:
    """Copy each upload's chosen files to its path on the node; the number of files copied."""
    copied = 0
    for spec in uploads:
        root = (base / os.path.expanduser(spec.source)).resolve()
        if not root.is_dir():
            raise DeployError(f"upload: {root} is not a folder (the spec's folder moved?)")
        files = chosen(root, spec)
        conn = await pool.connection(target)
        destination = remote_path(target, spec.path)
        try:
            async with conn.start_sftp_client() as sftp:
                await sftp.makedirs(destination, exist_ok=True)
                made = {destination}
                for relative in files:
                    parent = posixpath.join(destination, posixpath.dirname(relative))
                    if parent not in made:
                        await sftp.makedirs(parent, exist_ok=True)
                        made.add(parent)
                    await sftp.put(str(root / relative), posixpath.join(destination, relative), preserve=True)
        except (OSError, asyncssh.Error) as exc:
            raise DeployError(f"upload of {spec.source} to {spec.path} failed: {exc}") from None
        copied += len(files)
    return copied
