"""A local node is a machine boundary: what its root does stays inside it.  Each test is one known way out of
a chroot-style sandbox, tried from a real node's script as root inside it, and what the host would see
checked from the host."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import CHROOT_ESCAPE, require_sandbox, write_spec

from cloudherd.api import SyncClient
from cloudherd.paths import data_dir


@pytest.fixture
def node(home: Path, tmp_path: Path) -> Iterator[SyncClient]:
    require_sandbox()
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "box", "name: box\ngroups:\n  n:\n    count: 1\n"))
    try:
        yield herd
    finally:
        herd.down("box")


def _run(herd: SyncClient, command: str) -> str:
    """What a command run as the node's root printed (its exit code says little: most steps are meant to fail)."""
    [result] = herd.exec("box", command, node="box-n-1")
    return result.stdout + result.stderr


def test_a_chroot_escape_finds_no_way_out(node: SyncClient, tmp_path: Path) -> None:
    # not in the test's folder, which the tests share with their nodes: a host path only an escape reaches
    marker = Path("/var/tmp") / f"cloudherd-escaped-{uuid.uuid4().hex[:8]}"
    (tmp_path / "escape.py").write_text(CHROOT_ESCAPE)
    try:
        _run(node, f"python3 {tmp_path / 'escape.py'} {marker}")
        assert not marker.exists(), "a node's root wrote a file on the host"
    finally:
        marker.unlink(missing_ok=True)


def test_the_hiding_mounts_cannot_be_lifted(node: SyncClient) -> None:
    folder = data_dir()
    seen = _run(node, f"umount -l {folder} 2>&1; umount {folder} 2>&1; ls -A {folder}")
    assert "state.db" not in seen and "keys" not in seen, seen


def test_host_sysctls_are_read_only(node: SyncClient) -> None:
    knob = Path("/proc/sys/net/ipv4/ip_default_ttl")
    before = knob.read_text()
    changed = "65" if before.strip() != "65" else "66"
    try:
        seen = _run(node, f"echo {changed} > {knob} && echo wrote")
        assert "wrote" not in seen and knob.read_text() == before, seen
    finally:
        if knob.read_text() != before:
            knob.write_text(before)


def test_a_node_cannot_leave_its_cgroup(node: SyncClient) -> None:
    """The top of every hierarchy (v2's one, or each v1 controller's) is where a process leaves its limits."""
    candidates = [Path("/sys/fs/cgroup/cgroup.procs"), *Path("/sys/fs/cgroup").glob("*/cgroup.procs")]
    tops = " ".join(str(p) for p in candidates if p.exists())
    seen = _run(node, f"for f in {tops}; do echo $$ > $f && echo moved to $f; done; cat /proc/self/cgroup")
    assert "moved" not in seen, seen


def test_no_host_disks_devices_or_kernel_modules(node: SyncClient) -> None:
    """A node's /dev holds the harmless devices and its own terminals: none of the host's disks, loop
    devices, /dev/kvm, /dev/kmsg, /dev/mem; it cannot make one (mknod) nor load a module."""
    harmless = {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd", "stdin", "stdout",
                "stderr"}
    seen = _run(node, "ls -A /dev")
    assert set(seen.split()) <= harmless, seen
    loop = "mknod /tmp/loop b 7 0 && head -c 512 /tmp/loop | wc -c && echo made"
    seen = _run(node, f"{loop}; echo 1 > /proc/sys/kernel/modules_disabled && echo wrote; "
                          "head -c 16 /proc/kcore | wc -c")
    assert "made" not in seen and "wrote" not in seen and "16" not in seen.split(), seen


# what root inside a node must not hold (linux/capability.h): each one is a known way out
FORBIDDEN = {"CAP_DAC_READ_SEARCH": 2, "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_ADMIN": 12, "CAP_IPC_OWNER": 15,
             "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20,
             "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25,
             "CAP_MKNOD": 27, "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34,
             "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38,
             "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40}


def test_root_in_a_node_holds_no_capability_that_leads_out(node: SyncClient) -> None:
    seen = _run(node, "grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status")
    fields = dict(line.split(":", 1) for line in seen.splitlines() if ":" in line)
    for name in ("CapBnd", "CapEff"):
        held = int(fields[name].strip(), 16)
        assert not [cap for cap, bit in FORBIDDEN.items() if held >> bit & 1], (name, seen)
    assert fields["NoNewPrivs"].strip() == "1", seen


def test_root_in_a_node_is_not_root_outside(node: SyncClient, home: Path) -> None:
    """The node's user namespace: its root is an unused id of the host's, every process of the node runs as
    that id (or one of its range), and what the node writes in its own system is that id's on the disk."""
    from cloudherd.providers.local import sandbox as local_sandbox

    seen = _run(node, "id -u; echo mine > /etc/cloudherd-owner-check; ls -n /etc/cloudherd-owner-check")
    assert seen.split()[0] == "0", seen  # root as the node sees itself
    [live] = node.status("box").live
    folder = home / "local" / str(live.provider_id)
    written = folder / "upper" / "etc" / "cloudherd-owner-check"
    assert written.stat().st_uid == local_sandbox.NODE_ROOT_ID, written.stat()
    meta = json.loads((folder / "node.json").read_text())
    server = meta["server_identity"]["pid"]
    ids = [int(line.split()[1]) for line in Path(f"/proc/{server}/status").read_text().splitlines()
           if line.startswith(("Uid:", "Gid:"))]
    assert ids and all(local_sandbox.NODE_ROOT_ID <= i < local_sandbox.NODE_ROOT_ID + local_sandbox.ID_COUNT
                       for i in ids), ids
