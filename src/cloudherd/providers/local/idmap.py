"""Mount this computer's root (or SOURCE), id-mapped into a node's user namespace:
``python -I -S idmap.py USERNS TARGET [SOURCE]``.

Why: a sandboxed node's root is not root outside — its user namespace maps the node's ids 0…65535 to a
range of unused ids on the host.  Seen from there, the host's files (owned by the host's root) would
belong to no one, and the node's root could change nothing in its own ``/etc``.  An id-mapped mount
shows them as the node's own: the host's uid 0 as the range's first id, which the node sees as its root.
The node's overlay then has this mount as its lower layer, and what the node writes lands in its upper
layer owned by the range's ids — never by the host's root.  A ``shared:`` folder is bound the same way:
the node's root owns what the host's root owns there, and what it writes there is the host root's, as
the share asked for.

util-linux 2.38 (Debian 12) has no ``X-mount.idmap``, so the three system calls are made here, by a script
that imports nothing of cloudherd (it runs in the node's set-up, once per node, ``-I -S``: a few ms).
"""

from __future__ import annotations

import ctypes
import os
import sys

SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442  # the same on x86_64 and aarch64
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
MOUNT_ATTR_IDMAP = 0x00100000
MOVE_MOUNT_F_EMPTY_PATH = 0x4


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _call(libc: ctypes.CDLL, number: int, *args: object) -> int:
    result: int = libc.syscall(number, *args)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def idmapped_root(userns: str, target: str, source: str = "/") -> None:
    """Attach at ``target`` a copy of ``source`` (its own file system alone) with ``userns``'s id mapping."""
    libc = ctypes.CDLL(None, use_errno=True)
    ns = os.open(userns, os.O_RDONLY | os.O_CLOEXEC)
    tree = _call(libc, SYS_OPEN_TREE, AT_FDCWD, os.fsencode(source), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
    attr = MountAttr(MOUNT_ATTR_IDMAP, 0, 0, ns)
    _call(libc, SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr))
    _call(libc, SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, os.fsencode(target), MOVE_MOUNT_F_EMPTY_PATH)


if __name__ == "__main__":
    try:
        idmapped_root(*sys.argv[1:4])
    except (OSError, IndexError) as exc:
        sys.exit(f"cloudherd: no id-mapped root for the node's user namespace: {exc}")
