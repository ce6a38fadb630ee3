"""A local node's record (``node.json`` in its folder) and what it says in words: its size's limits, its
machine, its log."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cloudherd.providers.base import SizeNeed
from cloudherd.providers.local import sandbox

# where a sandboxed node's SSH server writes its pid (the namespace's): a folder of its own, which a node's
# root may write when it is no root of the host (the node's folder itself stays the host's)
NS_PID_FILE = "ns/sshd.pid"
NODE_MARKER = "CLOUDHERD_LOCAL_NODE"


# Sizes: what a node may use (cgroup limits; "host" is no limit, the default).  Cloud-like steps, so that a
# spec's ``size: small`` means about the same here as on a cloud.
SIZES: dict[str, sandbox.Limits] = {
    "host": sandbox.Limits(),
    "nano": sandbox.Limits(0.25, 256),
    "micro": sandbox.Limits(0.5, 512),
    "small": sandbox.Limits(1, 1024),
    "medium": sandbox.Limits(2, 2048),
    "large": sandbox.Limits(4, 4096),
    "xlarge": sandbox.Limits(8, 8192),
}


def read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((folder / "node.json").read_text())
        return data
    except (OSError, ValueError):
        return None


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    tmp = folder / "node.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / "node.json")


def safe_child(root: Path, folder: Path) -> bool:
    return folder.parent.resolve() == root.resolve() and folder.name.startswith("ln-")


def limits_of(size: str | None, need: SizeNeed | None) -> sandbox.Limits:
    """A node's limits from its size: a name of :data:`SIZES`, or exactly the cpus and memory asked for.

    Another name (a cloud's, from a spec placed across clouds or a Phantom launch configuration) is no
    limit, as the ``host`` size: refusing it would fail a spec that is right for its other places."""
    if size is not None:
        return SIZES.get(size, SIZES["host"])
    if need is not None:
        return sandbox.Limits(need.cpus, need.memory_mib)
    return SIZES["host"]


def machine_text(meta: Mapping[str, Any]) -> str:
    """A node's machine in a few words, for ``status``: isolated or not, its limits, faults made on it."""
    words = ["isolated" if meta.get("isolated") else "on the host", str(meta.get("limits_applied") or "no limits")]
    words += [f"fault: {fault}" for fault in meta.get("faults", [])]
    return ", ".join(words)


def need_text(need: SizeNeed | None) -> str | None:
    if need is None:
        return None
    parts = ([f"cpus={need.cpus:g}"] if need.cpus is not None else []) + (
        [f"memory={need.memory_mib}M"] if need.memory_mib is not None else [])
    return ",".join(parts) or None


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:]) or "no output"


def memory_mb() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)
    except (ValueError, OSError):
        return 0
