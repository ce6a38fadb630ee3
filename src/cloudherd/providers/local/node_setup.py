"""A sandboxed node's pid 1 until its supervisor runs: ``python -I -S node_setup.py FOLDER NAME SUPERVISOR ARGV…``.

Run by ``unshare`` inside the node's new namespaces, with its plan as JSON in ``CLOUDHERD_SANDBOX`` (see
:func:`cloudherd.providers.local.sandbox.environment`): it joins the node's cgroups, builds the node's root
(an overlay over this computer's ``/``, id-mapped when the node has a user namespace of its own), gives
it its own ``/proc``, ``/dev``, ``/sys``, ``/tmp`` and ``/run``, binds its shares, hides cloudherd's folder,
names the host, moves into the root for good (``pivot_root``, the old root unmounted), enters a cgroup
namespace of its own and shows its cgroups read-only at ``/sys/fs/cgroup`` (their top is the node's own
cgroup: what it uses and may use, as a machine sees its own), enters the node's user namespace, drops every
capability a machine's root does not need, sets ``no_new_privs`` and executes the supervisor shell.

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


def _unescape(field: str) -> str:
    """A path of /proc/self/mountinfo (spaces, tabs, newlines and backslashes written as octal escapes)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def cgroup_hierarchies(folders: list[str], mountinfo: str, controllers: set[str]) -> list[tuple[str, str]]:
    """The hierarchies the node's cgroup ``folders`` are in, as (file system type, mount options): cgroup2's
    one (``("cgroup2", "")``), or each v1 hierarchy's controllers (``("cgroup", "cpu,cpuacct")``; of the super
    options only the ``controllers`` the kernel knows: no release agent, no flag a namespace may not set)."""
    mounts = []
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) >= 5 and len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
            mounts.append((_unescape(fields[4]), rest[0], rest[2]))
    found: list[tuple[str, str]] = []
    for folder in folders:
        inside = [m for m in mounts if folder == m[0] or folder.startswith(m[0].rstrip("/") + "/")]
        if not inside:
            continue
        _point, fstype, options = max(inside, key=lambda m: len(m[0]))
        wanted = "" if fstype == "cgroup2" else ",".join(o for o in options.split(",") if o in controllers)
        if (fstype == "cgroup2" or wanted) and (fstype, wanted) not in found:
            found.append((fstype, wanted))
    return found


def _own_hierarchies(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """What :func:`cgroup_hierarchies` finds of this node's cgroups on this computer (none: nothing shown)."""
    folders = [os.path.dirname(os.path.realpath(procs)) for procs in plan.get("cgroups", [])]
    if not folders:
        return []
    try:
        with open("/proc/self/mountinfo") as info:
            mountinfo = info.read()
        with open("/proc/cgroups") as known:
            controllers = {line.split()[0] for line in known if line.strip() and not line.startswith("#")}
    except OSError:
        return []
    return cgroup_hierarchies(folders, mountinfo, controllers)


def build_root(folder: str, plan: dict[str, Any]) -> str:
    """The node's root at FOLDER/root, every mount in place; returns its path."""
    root = f"{folder}/root"
    owner = plan.get("node_root")
    userns = plan.get("userns") or ""
    for procs in plan.get("cgroups", []):
        write(procs, "0")
    plan["cgroupfs"] = _own_hierarchies(plan)  # read here, where the host's mounts are still seen
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
    _system_folders(root, owner, plan["cgroupfs"])
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


def _system_folders(root: str, owner: int | None, hierarchies: list[tuple[str, str]]) -> None:
    """/proc, /dev, /sys, /tmp and /run of the node's own; in /sys/fs/cgroup, a folder for each v1 hierarchy
    of the node's (:func:`show_cgroups` mounts them there once the node has its cgroup namespace)."""
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
    cgroupfs = f"{root}/sys/fs/cgroup"
    tmpfs(cgroupfs, "mode=755,size=4k", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for fstype, controllers in hierarchies:  # as systemd lays v1 out: cpu,cpuacct/ and links cpu, cpuacct to it
        if fstype == "cgroup":
            os.mkdir(f"{cgroupfs}/{controllers}")
            for name in controllers.split(","):
                if name != controllers:
                    os.symlink(controllers, f"{cgroupfs}/{name}")
    mount(None, cgroupfs, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=4k")
    tmpfs(f"{root}/tmp", "mode=1777", MS_NOSUID | MS_NODEV)
    tmpfs(f"{root}/run", "mode=755", MS_NOSUID | MS_NODEV)
    for sub in ("sshd", "lock"):
        os.mkdir(f"{root}/run/{sub}")
    if owner is not None:
        for path in (f"{root}/run", f"{root}/run/sshd"):
            os.chown(path, owner, owner)


def show_cgroups(hierarchies: list[tuple[str, str]]) -> None:
    """The node's cgroups, read-only, at /sys/fs/cgroup (cgroup2) or in its folders there (v1): mounted in
    the node's cgroup namespace, their top is the node's own cgroup — its ``cpu.stat`` and ``cpu.max``
    (``cpuacct.usage`` and ``cpu.cfs_quota_us``) are the node's, as a machine's are its own.  Best effort: a
    node whose hierarchies cannot be shown runs on, its /sys/fs/cgroup empty (its ``cpu`` metric then the
    host's /proc/stat)."""
    flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    for fstype, controllers in hierarchies:
        target = "/sys/fs/cgroup" if fstype == "cgroup2" else f"/sys/fs/cgroup/{controllers}"
        try:
            mount(fstype, target, fstype, flags, controllers or None)
        except (OSError, SetupError) as exc:
            print(f"cloudherd: the node's {controllers or 'cgroup2'} cgroup is not shown in it: {exc}",
                  file=sys.stderr)


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
    # The cgroup namespace before the user namespace: its top is the cgroup this process joined (the node's),
    # and its cgroups are mounted while this process may still mount (the mount namespace is the host root's).
    _check(libc.unshare(CLONE_NEWCGROUP), "unshare the cgroup namespace")
    show_cgroups(plan.get("cgroupfs", []))
    if userns_fd >= 0:  # into the node's user namespace, as its root: an unused uid outside
        _check(libc.setns(userns_fd, CLONE_NEWUSER), "setns into the node's user namespace")
        os.close(userns_fd)
        os.setgroups([])
        os.setgid(0)
        os.setuid(0)
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
