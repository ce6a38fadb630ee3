"""A ``local`` node as a machine of its own: namespaces, a copy-on-write root and resource limits.

Why: a local node's scripts are the scripts people write for clouds (``apt-get install -y nginx``,
``echo … > /etc/…``, ``rm -rf ~/x``).  Run on the host they would change the user's own computer.  In a
sandbox each node's SSH server runs in its own mount, PID, UTS, IPC and cgroup namespaces, in an overlay
whose lower layer is the host's ``/`` (read through, never written) and whose upper layer is the node's
folder: what a script writes lands in that node alone and goes with it.  ``/proc``, ``/tmp``, ``/run`` and
``/dev`` are the node's own (``/dev`` holds null, zero, random, tty and its own pseudo-terminals: no disk
of the host); cloudherd's data folder is hidden; the node's folder is bound in at the same path (its host
key, work folder and sshd's pid file are where the host expects them), its home folder at the login user's
home (a home of its own, with /etc/skel's files: the user's own files — credentials, shell start-up — are
neither seen nor changed), and so are the ``shared:`` folders of the spec (cloudherd's own folder stays
hidden inside them too).

A boundary, not a view: the node moves into its root with ``pivot_root`` and the host's root is unmounted
(a ``chroot`` can be left by a root that chroots again), ``/sys`` and ``/proc/sys`` are read-only, and
the supervisor runs with ``no_new_privs`` and a bounding set of only what a machine's root needs
(:data:`KEEP_CAPS`): without ``CAP_SYS_ADMIN`` the hiding mounts cannot be lifted, without
``CAP_SYS_MODULE`` / ``CAP_SYS_RAWIO`` / ``CAP_MKNOD`` / ``CAP_DAC_READ_SEARCH`` the kernel and the host's
disks are out of reach.

Root in a node is not root outside: as root, each node's root lives in a user namespace whose ids are a
range the host's accounts do not use (:data:`NODE_ROOT_ID`), and sees the host's files as their owners
through an id-mapped mount (``idmap.py``); rootless, the node's root is the user (fuse-overlayfs
shows the host's files as its own, slirp4netns gives it a network).

Built on util-linux's ``unshare`` (always there on Linux) and a set-up script of system calls
(``node_setup.py``, the namespace's pid 1 until the supervisor runs): Debian 12's bubblewrap (0.8) has no
overlay and no id-mapped mounts.  ``unshare`` keeps a parent process outside the namespaces that ignores
SIGTERM; the namespace's pid 1 is then the node's supervisor shell, and when it ends the kernel ends every
process of the node, daemons a script started included, and its mounts go with the namespace.

Limits come from the node's size, through cgroups (v2 ``cpu.max`` / ``memory.max``, or v1
``cpu.cfs_quota_us`` / ``memory.limit_in_bytes`` where that is what the host has): the sandbox's pid 1
joins the node's cgroup before anything else runs, so every process of the node is inside it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cloudherd.providers.local.rootless import ROOTLESS_TOOLS as ROOTLESS_TOOLS  # read here by the rootless tests
from cloudherd.providers.local.rootless import id_maps, refused, rootless, subordinate_ids, unavailable_reason

# The namespace's pid 1 until the supervisor runs (see node_setup.py): a script run with ``-I -S``.
SETUP_SCRIPT = Path(__file__).with_name("node_setup.py")

# What root inside a node keeps: enough to be a machine's root (own files, users, an SSH server that
# drops privileges into its chroot, ports below 1024, ping); none of what reaches the host — no mount,
# module, raw I/O, ptrace, file handles (DAC_READ_SEARCH), time, or network administration.
KEEP_CAPS = ("chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "net_bind_service",
             "net_raw", "sys_chroot", "audit_write", "setfcap", "ipc_lock", "sys_nice")

ISOLATION_MODES = ("auto", "required", "none")

# The host's uid (and gid) of a node's root, as root: the first of 65536 ids no account uses (above every
# range /etc/subuid hands out by default), which the node's user namespace maps to its 0…65535.
NODE_ROOT_ID = 0x70000000
ID_COUNT = 65536
USERNS_PIN = Path("/run/cloudherd/userns") / str(NODE_ROOT_ID)
IDMAP_SCRIPT = Path(__file__).with_name("idmap.py")


@dataclass(frozen=True)
class Share:
    """A host folder seen inside every node of the provider (``shared: [HOST[:NODE]]``), read-write."""

    host: Path
    node: Path

    @classmethod
    def parse(cls, text: str, hidden: Sequence[Path] = ()) -> Share:
        """``HOST[:NODE]``, links in HOST resolved; refused when HOST is one of the ``hidden`` folders
        (resolved: cloudherd's own) or inside one: nodes never see them, whatever the way in."""
        host, _, node = text.partition(":")
        host_path = Path(host).expanduser().resolve()
        node_path = Path(os.path.normpath(node)) if node else host_path  # no ".." out of the node's root
        if not node_path.is_absolute():
            raise ValueError(f"shared folder {text!r}: the path on the node must be absolute")
        if not host_path.is_dir():
            raise ValueError(f"shared folder {text!r}: {host_path} is not a folder on this computer")
        if "\n" in str(host_path) or "\t" in str(host_path) or "\n" in str(node_path) or "\t" in str(node_path):
            raise ValueError(f"shared folder {text!r}: a path may not hold tabs or newlines")
        for folder in hidden:
            if host_path.is_relative_to(folder):
                where = "is" if host_path == folder else "is inside"
                raise ValueError(f"shared folder {text!r}: {host_path} {where} cloudherd's own folder {folder} "
                                 "(its keys, database and nodes), which nodes never see: share a folder outside it")
        return cls(host_path, node_path)

    def shows(self, path: Path) -> Path | None:
        """Where the host's ``path`` (resolved) is seen inside a node through this share, or None (not in it)."""
        return self.node / path.relative_to(self.host) if path.is_relative_to(self.host) else None


def hidden_in_node(hidden: Sequence[Path], shares: Sequence[Share]) -> list[Path]:
    """The paths a node's set-up covers with an empty folder: each of the ``hidden`` host folders (resolved)
    at its own path, and wherever a share shows it — a share of ``/``, of ``/root``, of the folder's parent
    all hold it, under the share's path on the node (``/:/hostroot`` shows ``/root/x`` as ``/hostroot/root/x``)."""
    folders = [Path(folder).resolve() for folder in hidden]
    found = dict.fromkeys(folders)
    for folder in folders:
        for share in shares:
            seen = share.shows(folder)
            if seen is not None:
                found[seen] = None
    return sorted(found)


@functools.cache
def user_namespace() -> tuple[Path | None, str]:
    """The user namespace (pinned at :data:`USERNS_PIN`) that root's sandboxed nodes run in, or None and
    why there is none here: made once per boot, and tried once per process (an id-mapped mount of ``/``)."""
    if rootless():
        return None, "no user namespace of its own (rootless: the node's root is this user)"
    try:
        _pin_user_namespace()
        _try_idmapped_root()
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        return None, f"no user namespace of its own ({exc})"
    return USERNS_PIN, ""


def _pinned(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return os.stat(path).st_dev == os.stat("/proc/self/ns/user").st_dev  # a namespace file, not a plain one
    return False


def _pin_user_namespace() -> None:
    """Make the nodes' user namespace (uid and gid maps: 0…65535 → :data:`NODE_ROOT_ID`…) and keep it by a
    bind mount of its file, as ``ip netns`` keeps network namespaces; done once per boot."""
    if _pinned(USERNS_PIN):
        return
    USERNS_PIN.parent.mkdir(parents=True, exist_ok=True)
    USERNS_PIN.touch()
    holder = subprocess.Popen(["unshare", "--user", "sleep", "30"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{holder.pid}/ns/user") == os.readlink("/proc/self/ns/user"):
            if time.monotonic() > deadline or holder.poll() is not None:
                raise RuntimeError("unshare made no user namespace")
            time.sleep(0.002)
        for kind in ("uid_map", "gid_map"):
            Path(f"/proc/{holder.pid}/{kind}").write_text(f"0 {NODE_ROOT_ID} {ID_COUNT}\n")
        if not _pinned(USERNS_PIN):  # another process may have pinned one meanwhile: the same maps, kept
            subprocess.run(["mount", "--bind", f"/proc/{holder.pid}/ns/user", str(USERNS_PIN)], check=True,
                           capture_output=True, timeout=10)
    finally:
        holder.kill()
        holder.wait()


def _try_idmapped_root() -> None:
    """An id-mapped mount of ``/`` in a throw-away mount namespace: refused where the root file system does
    not support id mapping (then nodes run without a user namespace, as ``status`` says)."""
    target = Path(tempfile.mkdtemp(prefix="cloudherd-idmap-"))
    try:
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               '"$0" -I -S "$1" "$2" "$3" && test -d "$3/etc"', sys.executable, str(IDMAP_SCRIPT),
                               str(USERNS_PIN), str(target)], capture_output=True, text=True, timeout=30)
    finally:
        target.rmdir()
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "id mapping refused")


def give_to_node_root(paths: Sequence[Path]) -> None:
    """Make ``paths`` (and all that is inside the folders among them) the node root's, as the host sees it."""
    for path in paths:
        os.lchown(path, NODE_ROOT_ID, NODE_ROOT_ID)
        if path.is_dir() and not path.is_symlink():
            for folder, dirs, files in os.walk(path):
                for name in [*dirs, *files]:
                    os.lchown(os.path.join(folder, name), NODE_ROOT_ID, NODE_ROOT_ID)


@functools.cache
def unavailable() -> str | None:
    """Why nodes cannot be sandboxed on this computer, or None when they can (checked once, by trying)."""
    if shutil.which("unshare") is None:
        return "isolation needs util-linux's unshare"
    if rootless():
        return unavailable_reason()
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        filesystems = ""
    if "overlay" not in filesystems:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["modprobe", "overlay"], capture_output=True, timeout=10)
        with contextlib.suppress(OSError):
            filesystems = Path("/proc/filesystems").read_text()
        if "overlay" not in filesystems:
            return "isolation needs the kernel's overlay file system"
    return refused(["unshare", "--mount", "--uts", "--pid", "--fork", "--propagation", "private", "true"])


def remove_tree(path: Path) -> None:
    """Remove a node's folder.  Rootless, what the node made under its other ids (a package's own user, the
    ``nobody`` that owns a copied-up system folder) belongs to this user's subordinate ids: removed from
    inside the same mapping, where this user may."""
    if rootless() and subordinate_ids() is not None and path.exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["unshare", "--user", *id_maps(), "rm", "-rf", "--one-file-system", str(path)],
                           capture_output=True, timeout=120)
    shutil.rmtree(path, ignore_errors=True)


def command(folder: Path, name: str, supervisor: str, argv: Sequence[str]) -> list[str]:
    """The command line that runs ``argv`` (the SSH server) under ``supervisor`` inside the node's sandbox;
    rootless, in a user namespace (this user is the node's root, its subordinate ids the node's others)
    with a network namespace of its own."""
    own = ["--user", *id_maps(), "--net"] if rootless() else []
    return ["unshare", *own, "--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child=SIGTERM", "--propagation",
            "private", sys.executable, "-I", "-S", str(SETUP_SCRIPT), str(folder), name, supervisor, *argv]


def environment(hide: Sequence[Path], shares: Sequence[Share], cgroup_procs: Sequence[Path],
                home: str, runtime: Sequence[Path] = (), resolver: str | None = None,
                userns: Path | None = None, net: Sequence[str] = ()) -> dict[str, str]:
    """The plan :data:`SETUP_SCRIPT` follows, as JSON in one variable (``hide``: host folders no node sees,
    covered at their own path and inside every share that holds them; ``home``: the login user's home, where
    the node's own home folder is bound; ``runtime``: folders bound again read-only inside hidden ones —
    what runs the node's own server; ``resolver``: the name server a rootless node uses; ``userns``: the user
    namespace the node's root lives in, its root file system id-mapped into it; ``net``: ``ip -batch`` lines
    that set up the node's end of its link, inside its network namespace)."""
    plan = {
        "cgroups": [str(p) for p in cgroup_procs],
        "hide": [str(p) for p in hidden_in_node(hide, shares)],
        "shares": [[str(s.host), str(s.node)] for s in shares],
        "home": home,
        "runtime": [str(p) for p in runtime],
        "keep_caps": list(KEEP_CAPS),
        "fuse": rootless(),
        "resolver": resolver if rootless() else None,
        "userns": str(userns) if userns else "",
        "node_root": NODE_ROOT_ID if userns else None,
        "net": list(net),
    }
    return {"CLOUDHERD_SANDBOX": json.dumps(plan)}


# -- resource limits -----------------------------------------------------------------------------------

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    """What a node may use: cpus (fractions allowed) and memory in MiB; None is no limit."""

    cpus: float | None = None
    memory_mib: int | None = None

    def describe(self) -> str:
        if self.cpus is None and self.memory_mib is None:
            return "no limits"
        parts = []
        if self.cpus is not None:
            parts.append(f"{self.cpus:g} cpu")
        if self.memory_mib is not None:
            parts.append(f"{self.memory_mib} MiB" if self.memory_mib < 1024 or self.memory_mib % 1024
                         else f"{self.memory_mib // 1024} GiB")
        return ", ".join(parts)


@dataclass(frozen=True)
class Cgroups:
    """A node's cgroup folders (one per v1 hierarchy, or one v2 folder), made with its limits written."""

    folders: tuple[Path, ...]
    applied: str  # what status reports: "1 cpu, 1 GiB", or why nothing is applied

    @property
    def procs(self) -> list[Path]:
        return [f / "cgroup.procs" for f in self.folders]


def _own_cgroup(controller: str | None) -> str | None:
    """This process's cgroup path in the v1 hierarchy of ``controller`` (None: the v2 one)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        if (controller is None and controllers == "") or (controller and controller in controllers.split(",")):
            return path
    return None


def _v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def make_cgroups(node_id: str, limits: Limits) -> Cgroups:
    """The node's cgroups with ``limits`` written; never raises (a limit that cannot be set is reported)."""
    if limits.cpus is None and limits.memory_mib is None:
        return Cgroups((), "no limits")
    try:
        return _make_v2(node_id, limits) if _v2() else _make_v1(node_id, limits)
    except OSError as exc:
        return Cgroups((), f"not applied ({exc.strerror or exc})")


def _make_v2(node_id: str, limits: Limits) -> Cgroups:
    # Under a cgroup of our own beside the others at the top: the top may hold processes and delegate
    # controllers, where a cgroup with processes in it (ours, most likely) may not.
    parent = CGROUP_ROOT / "cloudherd"
    parent.mkdir(exist_ok=True)
    wanted = [c for c, v in (("cpu", limits.cpus), ("memory", limits.memory_mib)) if v is not None]
    for level in (CGROUP_ROOT, parent):
        enabled = (level / "cgroup.subtree_control").read_text().split()
        missing = [c for c in wanted if c not in enabled]
        if missing:
            (level / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))
    folder = parent / node_id
    folder.mkdir(exist_ok=True)
    if limits.cpus is not None:
        (folder / "cpu.max").write_text(f"{max(1000, int(limits.cpus * CPU_PERIOD_US))} {CPU_PERIOD_US}")
    if limits.memory_mib is not None:
        (folder / "memory.max").write_text(str(limits.memory_mib * 2**20))
        with contextlib.suppress(OSError):
            (folder / "memory.swap.max").write_text("0")  # else a hog swaps instead of being stopped
    return Cgroups((folder,), limits.describe())


def _make_v1(node_id: str, limits: Limits) -> Cgroups:
    folders = []
    for controller, value in (("cpu", limits.cpus), ("memory", limits.memory_mib)):
        if value is None:
            continue
        own = _own_cgroup(controller)
        mount = CGROUP_ROOT / controller
        if own is None or not mount.is_dir():
            return Cgroups((), f"not applied (no {controller} cgroup here)")
        folder = mount / own.lstrip("/") / "cloudherd" / node_id
        folder.mkdir(parents=True, exist_ok=True)
        if controller == "cpu":
            (folder / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (folder / "cpu.cfs_quota_us").write_text(str(max(1000, int(value * CPU_PERIOD_US))))
        else:
            limit = str(int(value * 2**20))
            (folder / "memory.limit_in_bytes").write_text(limit)
            with contextlib.suppress(OSError):  # present where swap accounting is on
                (folder / "memory.memsw.limit_in_bytes").write_text(limit)
        folders.append(folder)
    accounting = _accounting_v1(node_id) if limits.cpus is not None else None
    return Cgroups(tuple(folders) + ((accounting,) if accounting else ()), limits.describe())


def _accounting_v1(node_id: str) -> Path | None:
    """Where v1's ``cpuacct`` is a hierarchy apart from ``cpu`` (``cpu,cpuacct`` is one on most hosts), a
    cpuacct cgroup of the node's too, no limit in it: what the node's processes used, which its ``cpu``
    metric reads (``cpuacct.usage``).  None where there is none to make (the cpu cgroup counts it already)."""
    own, mount = _own_cgroup("cpuacct"), CGROUP_ROOT / "cpuacct"
    if own is None or not mount.is_dir() or mount.resolve() == (CGROUP_ROOT / "cpu").resolve():
        return None
    folder = mount / own.lstrip("/") / "cloudherd" / node_id
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return None


# How old an empty node cgroup must be before gc takes it for a leftover: a node's cgroup is made just before
# its first process joins it, and must not be taken in between.
CGROUP_GRACE = 60.0


def stale_cgroups(prefix: str) -> list[Path]:
    """Node cgroups named ``prefix``… with no process left and older than :data:`CGROUP_GRACE` (a live
    node's cgroup holds its processes; a just-made one gets its first in the moment after)."""
    if _v2():
        parents = [CGROUP_ROOT / "cloudherd"]
    else:
        parents = [CGROUP_ROOT / c / (_own_cgroup(c) or "/").lstrip("/") / "cloudherd"
                   for c in ("cpu", "memory", "cpuacct")]
        parents = list({parent.resolve(): parent for parent in parents}.values())  # cpu,cpuacct: one hierarchy
    found = []
    now = time.time()
    for parent in parents:
        with contextlib.suppress(OSError):
            for folder in sorted(parent.glob(f"{prefix}*")):
                with contextlib.suppress(OSError):
                    idle = not (folder / "cgroup.procs").read_text().strip()
                    if idle and now - folder.stat().st_ctime > CGROUP_GRACE:
                        found.append(folder)
    return found


def remove_cgroups(folders: Sequence[str | Path]) -> None:
    """Remove a node's cgroups once its processes are gone (a folder with processes in it stays)."""
    for folder in folders:
        with contextlib.suppress(OSError):
            Path(folder).rmdir()


def cgroup_usage(folders: Sequence[str | Path]) -> Mapping[str, int]:
    """Current memory use in bytes of a node's cgroup, where the host reports it."""
    for folder in map(Path, folders):
        for name in ("memory.current", "memory.usage_in_bytes"):
            with contextlib.suppress(OSError, ValueError):
                return {"memory_bytes": int((folder / name).read_text().strip())}
    return {}
