"""Faults on demand (:data:`~cloudherd.providers.base.FAULTS`): a node crashed, hung or cut off (nftables),
and healed again."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cloudherd.providers.base import ProviderError
from cloudherd.providers.local import net
from cloudherd.providers.local.proc import signal_all
from cloudherd.providers.local.processes import end_sandbox, node_processes


def _crash(folder: Path, meta: dict[str, Any]) -> str:
    """Kill every process of the node at once, as a machine that loses power (no clean shutdown)."""
    if meta.get("isolated"):
        end_sandbox(folder, meta)
    else:
        for pid in node_processes(folder, meta):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(int(meta.get("pid") or 0), os.WNOHANG)
    meta["faults"] = sorted({*meta.get("faults", []), "crash"} - {"hang"})
    return "crashed: every process of the node killed"


def _hang(folder: Path, meta: dict[str, Any]) -> str:
    """SIGSTOP every process of the node: it keeps its address, accepts TCP, and answers nothing."""
    stopped = signal_all(node_processes(folder, meta), signal.SIGSTOP)
    if not stopped:
        raise ProviderError(f"local node {meta['name']}: no process to hang (is it running?)")
    meta["faults"] = sorted({*meta.get("faults", []), "hang"})
    return f"hung: {stopped} processes stopped"


def _partition(folder: Path, meta: dict[str, Any]) -> str:
    """Drop every packet to and from the node's address (an nftables table of its own, on loopback)."""
    address = meta.get("address")
    if not address:
        raise ProviderError(f"local node {meta['name']}: no address to cut off")
    table = _nft_table(meta)
    peer = meta.get("partition_peer")
    if peer is not None:
        if not meta.get("netns"):
            raise ProviderError(f"local node {meta['name']}: a partition from one node needs nodes with networks of "
                                "their own (sandboxed, as root)")
        if "partition" in meta.get("faults", []):
            unpartition(meta)  # one partition at a time: this one replaces the one before
        rules = (f"table inet {table} {{\n chain inbound {{\n  type filter hook input priority -10; policy accept;\n"
                 f"  ip saddr {peer} drop\n }}\n chain outbound {{\n  type filter hook output priority -10; "
                 f"policy accept;\n  ip daddr {peer} drop\n }}\n}}\n")
        _nft(["-f", "-"], rules, meta)
        meta["faults"] = sorted({*meta.get("faults", []), "partition"})
        return f"partitioned from {peer}: traffic between {address} and {peer} dropped, the rest flows"
    if meta.get("netns"):  # its own network: the link is cut inside the node, from the host and siblings alike
        rules = (f"table inet {table} {{\n chain inbound {{\n  type filter hook input priority -10; policy accept;\n"
                 "  iifname \"eth0\" drop\n }\n chain outbound {\n  type filter hook output priority -10; "
                 "policy accept;\n  oifname \"eth0\" drop\n }\n}\n")
    else:
        rules = (f"table inet {table} {{\n chain out {{\n  type filter hook output priority -10; policy accept;\n"
                 f"  ip daddr {address} drop\n  ip saddr {address} drop\n }}\n}}\n")
    _nft(["-f", "-"], rules, meta)
    meta["faults"] = sorted({*meta.get("faults", []), "partition"})
    return f"partitioned: traffic to and from {address} dropped"


def _heal(folder: Path, meta: dict[str, Any]) -> str:
    """Undo ``hang`` and ``partition`` (a crash cannot be undone: the node is replaced, or started again)."""
    faults = set(meta.get("faults", []))
    done = []
    if "hang" in faults:
        signal_all(node_processes(folder, meta), signal.SIGCONT)
        done.append("resumed")
    if "partition" in faults:
        unpartition(meta)
        done.append("reconnected")
    meta["faults"] = sorted(faults - {"hang", "partition"})
    if not done:
        return "nothing to heal" + (" (a crashed node does not come back: start it or let it be replaced)"
                                    if "crash" in faults else "")
    return "healed: " + " and ".join(done)


def _nft_table(meta: Mapping[str, Any]) -> str:
    return "cloudherd_" + str(meta["id"]).replace("-", "_")


def _nft(args: Sequence[str], stdin: str | None, meta: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("nft") or next((p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None)
    if binary is None:
        raise ProviderError("a partition needs nftables' nft (on Debian: apt-get install nftables)")
    if os.geteuid() != 0:
        raise ProviderError("a partition needs root (it adds an nftables rule)")
    inside = net.enter(meta["netns"]) if meta.get("netns") else []
    done = subprocess.run([*inside, binary, *args], input=stdin, capture_output=True, text=True, timeout=15)
    if done.returncode != 0 and stdin is not None:
        raise ProviderError(f"local node {meta['name']}: nft refused the partition: {done.stderr.strip()[:300]}")
    return done


def unpartition(meta: Mapping[str, Any]) -> None:
    if "partition" in meta.get("faults", []):
        _nft(["delete", "table", "inet", _nft_table(meta)], None, meta)


FAULT_ACTIONS: dict[str, Callable[[Path, dict[str, Any]], str]] = {
    "crash": _crash, "hang": _hang, "partition": _partition, "heal": _heal,
}
