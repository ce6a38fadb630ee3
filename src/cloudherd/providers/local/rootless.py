"""A node sandboxed by a user who is not root: a user namespace of this user's (the user is the node's root, its
subordinate ids the node's other users), the node's root files through fuse-overlayfs (with empty copies of the
host files this user cannot read), its network through slirp4netns (see :mod:`~cloudherd.providers.local.slirp`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path


def rootless() -> bool:
    """Whether nodes are sandboxed the rootless way: in a user namespace of this user's, their root files
    through fuse-overlayfs, their network through slirp4netns, their SSH server cloudherd's own."""
    return os.geteuid() != 0


# What a rootless sandbox needs beyond util-linux, with the Debian package that brings it.
ROOTLESS_TOOLS = {"fuse-overlayfs": "fuse-overlayfs", "slirp4netns": "slirp4netns"}


# Where a rootless node's system keeps what it writes: walked for what this user cannot read.
SEEDED_TOPS = ("/etc", "/var")


@functools.cache
def _unreadable() -> tuple[tuple[str, bool, int], ...]:
    """The host's files and folders under :data:`SEEDED_TOPS` this user cannot read: (path, is a folder,
    mode).  Walked once per process (a tenth of a second)."""
    found = []
    for top in SEEDED_TOPS:
        for folder, dirs, files in os.walk(top):
            for name, is_dir in [*((d, True) for d in dirs), *((f, False) for f in files)]:
                path = os.path.join(folder, name)
                with contextlib.suppress(OSError):
                    mode = os.lstat(path).st_mode
                    if not stat.S_ISLNK(mode) and not os.access(path, os.R_OK | (os.X_OK if is_dir else 0)):
                        found.append((path, is_dir, stat.S_IMODE(mode)))
    return tuple(found)


def _fresh(path: str) -> str:
    """What a fresh machine holds in ``path`` where it cannot be read here: the shadow files name every
    account with no password (``*``: OpenSSH takes an account missing from them for a locked one), the
    rest is empty."""
    source = {"/etc/shadow": "/etc/passwd", "/etc/shadow-": "/etc/passwd", "/etc/gshadow": "/etc/group",
              "/etc/gshadow-": "/etc/group"}.get(path)
    if source is None:
        return ""
    try:
        names = [line.split(":", 1)[0] for line in Path(source).read_text().splitlines() if ":" in line]
    except OSError:
        return ""
    entry = "{}:*:19000:0:99999:7:::" if source == "/etc/passwd" else "{}:*::"
    return "".join(entry.format(name) + "\n" for name in names)


def seed_upper(upper: Path) -> None:
    """Rootless: give the node its own empty copy of each host file it could not copy up.

    fuse-overlayfs copies a file up (to write it) with this user's rights, so a host file only root may read
    could never be written in the node: apt's and dpkg's lock files (``apt-get install`` fails), shadow,
    the host's SSH keys.  The node gets them empty (a folder: empty and opaque), as a fresh machine would
    have them (the shadow files with every account and no password), and none of the host's secrets."""
    for path, is_dir, mode in _unreadable():
        target = upper / path.lstrip("/")
        with contextlib.suppress(OSError):
            target.parent.mkdir(parents=True, exist_ok=True)
            if is_dir:
                target.mkdir(mode=0o700, exist_ok=True)
                (target / ".wh..wh..opq").touch()  # fuse-overlayfs's mark: the host's folder is not merged in
                target.chmod(mode)
            else:
                target.touch(mode=mode)
                target.write_text(_fresh(path))


def unavailable_reason() -> str | None:
    missing = sorted({package for tool, package in ROOTLESS_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        return (f"isolation for a user who is not root needs {' and '.join(missing)} "
                f"(Debian, Ubuntu: sudo apt-get install {' '.join(missing)})")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "isolation for a user who is not root needs /dev/fuse, readable and writable by this user"
    why = refused(["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "true"])
    if why:
        return (f"{why}: user namespaces are off for users who are not root "
                "(set the sysctl user.max_user_namespaces above 0, and kernel.unprivileged_userns_clone=1 where "
                "the kernel has it, or kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 24.04)")
    return None


def refused(probe: Sequence[str]) -> str | None:
    """Why the kernel refuses the namespaces ``probe`` asks for, or None."""
    try:
        done = subprocess.run(list(probe), capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"isolation: unshare failed ({exc})"
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        return f"isolation: the kernel refused new namespaces ({reason[-1] if reason else 'no reason given'})"
    return None


@functools.cache
def subordinate_ids() -> tuple[tuple[int, int], tuple[int, int]] | None:
    """This user's first ranges of subordinate uids and gids (``/etc/subuid``, ``/etc/subgid``: Debian's
    ``useradd`` gives every new account 65536), as (start, count) each, where ``newuidmap`` can map them;
    None otherwise.  Rootless, they become a node's ids 1…: OpenSSH's privilege separation (and any
    package's own user) then works in the node."""
    if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
        return None
    entry = pwd.getpwuid(os.getuid())
    found = []
    for table in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(table).read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            who, _, rest = line.partition(":")
            start, _, count = rest.partition(":")
            if who in (entry.pw_name, str(entry.pw_uid)) and start.isdigit() and count.isdigit() \
                    and int(count) >= 1000:
                found.append((int(start), min(int(count), 65535)))
                break
        else:
            return None
    return found[0], found[1]


def id_maps() -> list[str]:
    """unshare's options that map this user to root and its subordinate ids to 1…, rootless."""
    ranges = subordinate_ids()
    if ranges is None:
        return ["--map-root-user"]
    (uid, uids), (gid, gids) = ranges
    return ["--map-root-user", f"--map-users={uid},1,{uids}", f"--map-groups={gid},1,{gids}"]
