"""A sandboxed node's pid 1 until its supervisor runs: ``python -I -S node_setup.py FOLDER NAME SUPERVISOR ARGV…``.

Run by ``unshare`` inside the node's new namespaces, with its plan as JSON in ``CLOUDHERD_SANDBOX`` (see
:func:`cloudherd.providers.local.sandbox.environment`): it joins the node's cgroups, builds the node's root
(an overlay over this computer's ``/``, id-mapped when the node has a user namespace of its own), gives
it its own ``/proc``, ``/dev``, ``/sys``, ``/tmp`` and ``/run``, binds its shares, hides cloudherd's folder,
names the host, moves into the root for good (``pivot_root``, the old root unmounted), enters the node's
user namespace, drops every capability a machine's root does not need, sets ``no_new_privs`` and
executes the supervisor shell.

Why system calls from one process, not a shell script of ``mount`` commands: a node's set-up took ~55
processes, and each ``mount`` parses the host's whole mount table (which grows by a namespace per
node): about 0.1 s of CPU per node, most of the time a hundred nodes took to start.  The same steps as
system calls take a few milliseconds.  The script imports nothing of cloudherd (``-I -S``: no site, no
user paths) and only the standard library.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_RELATIME = 0x20, 0x400, 0x800, 0x1000, 0x200000
MNT_DETACH = 2
CLONE_NEWUSER, CLONE_NEWCGROUP = 0x10000000, 0x02000000
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
# statvfs flag -> the mount flag a remount must keep (a user namespace may not clear a locked one)
_KEPT = {0x2: MS_NOSUID, 0x4: MS_NODEV, 0x8: MS_NOEXEC, 0x400: MS_NOATIME, 0x800: MS_NODIRATIME, 0x1000: MS_RELATIME}
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
CAPS = ("chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
        "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
        "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
        "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
        "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
        "checkpoint_restore")

libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(code)}")


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)), f"mount {target}")


def bind(source: str, target: str, readonly: bool = False, extra: int = 0) -> None:
    mount(source, target, None, MS_BIND)
    if readonly:
        kept = 0
        for stat_flag, mount_flag in _KEPT.items():
            if os.statvfs(target).f_flag & stat_flag:
                kept |= mount_flag
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept | extra)


def tmpfs(target: str, options: str, flags: int = 0) -> None:
    mount("tmpfs", target, "tmpfs", flags, options)


def make_path(path: str, owner: int | None) -> None:
    """mkdir -p, and in a user namespace what it made the node root's (else a folder on the way to the node's
    own folder or a share would be no one's, and the node's root could write nothing in it)."""
    made = []
    top = path
    while not os.path.exists(top):
        made.append(top)
        top = os.path.dirname(top)
    os.makedirs(path, exist_ok=True)
    if owner is not None:
        for folder in made:
            os.lchown(folder, owner, owner)


def write(path: str, text: str) -> None:
    with open(path, "w") as out:
        out.write(text)


def idmapped(userns: str, target: str, source: str = "/") -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from idmap import idmapped_root  # beside this script; imported only when a node has a user namespace

    idmapped_root(userns, target, source)


def build_root(folder: str, plan: dict[str, Any]) -> str:
    """The node's root at FOLDER/root, every mount in place; returns its path."""
    root = f"{folder}/root"
    owner = plan.get("node_root")
    userns = plan.get("userns") or ""
    for procs in plan.get("cgroups", []):
        write(procs, "0")
    for sub in ("upper", "overlay-work", "root"):
        os.makedirs(f"{folder}/{sub}", exist_ok=True)
    if plan.get("net"):  # the node's end of its link, in its network namespace (where this runs)
        write(f"{folder}/net.batch", "\n".join(plan["net"]) + "\n")
        done = os.spawnvp(os.P_WAIT, "ip", ["ip", "-batch", f"{folder}/net.batch"])
        if done != 0:
            raise SetupError(f"ip could not set up the node's network (exit {done})")
    lower = "/"
    if userns:  # the host's files as the node's root owns them (ids shifted)
        lower = f"{folder}/lower"
        os.makedirs(lower, exist_ok=True)
        idmapped(userns, lower)
        # the node's root is no root of its network: ports below 1024 and ping opened to every user there
        write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0")
        write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
    work = f"upperdir={folder}/upper,workdir={folder}/overlay-work"
    if plan.get("fuse"):  # rootless: the host's files shown as the node root's own
        fuse = os.spawnvp(os.P_WAIT, "fuse-overlayfs",
                          ["fuse-overlayfs", "-o", f"lowerdir=/,{work},squash_to_root,allow_other", root])
        if fuse != 0:
            raise SetupError(f"fuse-overlayfs ended with {fuse}")
    else:
        mount("cloudherd-node", root, "overlay", 0, f"lowerdir={lower},{work}")
    resolver = plan.get("resolver")
    if resolver:  # rootless: slirp4netns's resolver; apt cannot change user
        if os.path.lexists(f"{root}/etc/resolv.conf"):
            os.unlink(f"{root}/etc/resolv.conf")
        write(f"{root}/etc/resolv.conf", f"nameserver {resolver}\n")
        if os.path.isdir(f"{root}/etc/apt/apt.conf.d"):
            write(f"{root}/etc/apt/apt.conf.d/00cloudherd-one-user", 'APT::Sandbox::User "root";\n')
    _system_folders(root, owner)
    for host, inside in plan.get("shares", []):
        make_path(root + inside, owner)
        try:
            if not userns:
                raise SetupError("no user namespace")
            idmapped(userns, root + inside, host)  # the host root's files there the node root's
        except (OSError, SetupError):
            bind(host, root + inside)
    for hidden in plan.get("hide", []):  # an empty folder of the node root's over each
        if os.path.isdir(root + hidden):
            ids = f",uid={owner},gid={owner}" if owner is not None else ""
            tmpfs(root + hidden, f"mode=700,size=4k{ids}")
    for keep in plan.get("runtime", []):  # what runs the node's server, seen again (read-only) where hidden
        os.makedirs(root + keep, exist_ok=True)
        bind(keep, root + keep, readonly=True)
    home = plan.get("home")
    if home:
        os.makedirs(root + home, exist_ok=True)
        bind(f"{folder}/home", root + home)
    make_path(root + folder, owner)
    bind(folder, root + folder)
    return root


def _system_folders(root: str, owner: int | None) -> None:
    """/proc, /dev, /sys, /tmp and /run of the node's own."""
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for knob in ("sys", "sysrq-trigger", "irq", "bus", "fs"):  # the kernel's settings: read, never written
        path = f"{root}/proc/{knob}"
        if os.path.exists(path):
            bind(path, path, readonly=True, extra=MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for secret in ("kcore", "keys", "timer_list", "sched_debug", "kallsyms"):
        if os.path.exists(f"{root}/proc/{secret}"):
            bind("/dev/null", f"{root}/proc/{secret}")
    # a /dev of its own: the harmless devices, its own pseudo-terminals; no disk, no /dev/mem, no kmsg
    dev = f"{root}/dev"
    tmpfs(dev, "mode=755,size=64k", MS_NOSUID | MS_NOEXEC)
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        open(f"{dev}/{name}", "w").close()
        bind(f"/dev/{name}", f"{dev}/{name}")
    for sub in ("pts", "shm"):
        os.mkdir(f"{dev}/{sub}")
    mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    for link, target in (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{link}")
    tmpfs(f"{dev}/shm", "mode=1777", MS_NOSUID | MS_NODEV)
    mount("sysfs", f"{root}/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    tmpfs(f"{root}/sys/fs/cgroup", "mode=755,size=4k", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    tmpfs(f"{root}/tmp", "mode=1777", MS_NOSUID | MS_NODEV)
    tmpfs(f"{root}/run", "mode=755", MS_NOSUID | MS_NODEV)
    for sub in ("sshd", "lock"):
        os.mkdir(f"{root}/run/{sub}")
    if owner is not None:
        for path in (f"{root}/run", f"{root}/run/sshd"):
            os.chown(path, owner, owner)


def enter(root: str, plan: dict[str, Any], name: str) -> None:
    """Name the host, move into the node's root for good, become its root, keep only what it needs."""
    _check(libc.sethostname(name.encode(), len(name.encode())), "sethostname")
    userns = plan.get("userns") or ""
    userns_fd = os.open(userns, os.O_RDONLY | os.O_CLOEXEC) if userns else -1  # its path is gone once inside
    os.chdir(root)
    os.makedirs(".cloudherd-host", exist_ok=True)
    number = _PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise SetupError(f"pivot_root: no system call number known for {os.uname().machine}")
    _check(libc.syscall(number, b".", b".cloudherd-host"), "pivot_root")
    os.chdir("/")
    _check(libc.umount2(b"/.cloudherd-host", MNT_DETACH), "umount the host's root")
    os.rmdir("/.cloudherd-host")
    if userns_fd >= 0:  # into the node's user namespace, as its root: an unused uid outside
        _check(libc.setns(userns_fd, CLONE_NEWUSER), "setns into the node's user namespace")
        os.close(userns_fd)
        os.setgroups([])
        os.setgid(0)
        os.setuid(0)
    _check(libc.unshare(CLONE_NEWCGROUP), "unshare the cgroup namespace")
    keep = {CAPS.index(cap) for cap in plan["keep_caps"]}
    with open("/proc/sys/kernel/cap_last_cap") as last:
        top = int(last.read())
    for cap in range(top + 1):
        if cap not in keep:
            _check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def main(argv: list[str]) -> None:
    folder, name, supervisor, *command = argv
    plan = json.loads(os.environ.pop("CLOUDHERD_SANDBOX"))
    root = build_root(folder, plan)
    enter(root, plan, name)
    os.execve("/bin/sh", ["/bin/sh", "-c", supervisor, name, *command], dict(os.environ))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (OSError, SetupError, KeyError, ValueError) as exc:
        sys.exit(f"cloudherd: the node's sandbox could not be made: {exc}")
