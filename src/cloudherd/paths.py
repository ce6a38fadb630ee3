"""Where cloudherd keeps its files: one data folder per user, ``CLOUDHERD_HOME`` to move it.

Everything in it is its owner's only: folders 0700, files 0600 (the state database holds the specs'
environments, the keys folder the private key).  Each is made so at creation (``mkdir``/``open``
with that mode, which a umask can only narrow), never loosened and then fixed.  A folder or file an
older version left readable by others is tightened the next time it is used, silently: it is ours,
and nothing else should depend on reading it.  Only what the current user owns is touched, and never
a sticky folder (such as ``/tmp``, given as ``CLOUDHERD_HOME`` by mistake).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import platformdirs

from cloudherd.settings import current

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def data_dir() -> Path:
    """The user's cloudherd folder (database, keys, local nodes), created on first use (0700)."""
    root = current().home or platformdirs.user_data_dir("cloudherd", appauthor=False)
    return private_dir(Path(root).expanduser())


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (made 0700, or tightened to it); its parents as usual."""
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process: tightened below
            path.mkdir(mode=PRIVATE_DIR)
            return path
    tighten(path, PRIVATE_DIR)
    return path


def tighten(path: Path, mode: int) -> None:
    """Drop group and other access from ``path`` when the current user owns it (no error otherwise)."""
    try:
        info = path.stat()
    except OSError:
        return
    if info.st_mode & 0o077 == 0 or info.st_uid != os.getuid() or info.st_mode & stat.S_ISVTX:
        return
    with contextlib.suppress(OSError):
        os.chmod(path, stat.S_IMODE(info.st_mode) & mode)


def create_private(path: Path) -> None:
    """Make ``path`` an empty 0600 file unless it exists (then tighten it): a file others never could read."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        tighten(path, PRIVATE_FILE)
    else:
        os.close(fd)
