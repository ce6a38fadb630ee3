"""The ``local`` provider: real SSH machines on this computer, the embedded default.

Each node is a folder (``<root>/<id>/``) with its own host key, authorized_keys, home and work
folder, served by its own SSH server on its own loopback address (127.x.y.z): OpenSSH's ``sshd``
where one is installed, otherwise cloudherd's built-in asyncssh server
(:mod:`cloudherd.providers.local_server`).  Servers run in their own session so they outlive the
CLI; a fresh provider finds them again from ``node.json``.  ``HOME`` is the node's home, so the login
user's shell start-up files are not read (they can make each command ~30x slower).
As root, port 22 is used and each node gets its own host name (a UTS namespace) where possible.

A node's processes are found again by pid, each checked to still be what it was: the supervisor by its
command line (it names the node's folder), the SSH server by the identity recorded when it started
(``server_identity`` in ``node.json``: pid, start time, boot) — sshd's process title overwrites its
environment (the node marker) and may cut its command line short, and a pid alone can be reused.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import errno
import functools
import hashlib
import ipaddress
import json
import os
import pwd
import random
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cloudherd.paths import data_dir
from cloudherd.providers import local_net, local_slirp
from cloudherd.providers import local_sandbox as sandbox
from cloudherd.providers.base import (
    FAULTS,
    CreateRequest,
    Image,
    Instance,
    InstanceState,
    InvalidRequestError,
    NotFoundError,
    PortsHandle,
    Provider,
    ProviderError,
    Size,
    SizeNeed,
    has_tags,
    matches,
)
from cloudherd.providers.toolkit import check_ports, check_request

READY_TIMEOUT = 15.0
# where a sandboxed node's SSH server writes its pid (the namespace's): a folder of its own, which a node's
# root may write when it is no root of the host (the node's folder itself stays the host's)
NS_PID_FILE = "ns/sshd.pid"
NODE_MARKER = "CLOUDHERD_LOCAL_NODE"
# sshd runs under a tiny shell supervisor that reaps it the moment it ends: a killed sshd then leaves no
# zombie behind, whatever the system's init does.  In a UTS namespace it also names the node's host.
_SUPERVISOR = (
    '[ -n "$CLOUDHERD_SET_HOSTNAME" ] && hostname "$0" 2>/dev/null; '
    '"$@" & child=$!; '
    'trap \'kill -TERM $child 2>/dev/null; wait $child; exit 0\' TERM INT HUP; '
    'wait $child'
)


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


class LocalProvider(Provider):
    """Machines on this computer; settings: ``root`` (nodes folder), ``server`` (auto|openssh|builtin),
    ``isolation`` (auto|required|none: a sandbox per node, see :mod:`local_sandbox`), ``shared`` (host
    folders every node sees, ``HOST[:NODE]``)."""

    type = "local"
    listing_lag = 0.0  # a node is listed the moment create returns (its node.json is written first)

    def __init__(self, name: str = "local", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        root = self.settings.get("root") or os.environ.get("CLOUDHERD_LOCAL_ROOT") or data_dir() / "local"
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.server = str(self.settings.get("server") or os.environ.get("CLOUDHERD_LOCAL_SERVER") or "auto")
        if self.server not in ("auto", "openssh", "builtin"):
            raise InvalidRequestError(f"local provider: server must be auto, openssh or builtin, not {self.server!r}")
        self.isolation = str(self.settings.get("isolation") or os.environ.get("CLOUDHERD_LOCAL_ISOLATION") or "auto")
        if self.isolation not in sandbox.ISOLATION_MODES:
            raise InvalidRequestError(f"local provider: isolation must be auto, required or none, "
                                      f"not {self.isolation!r}")
        shared = self.settings.get("shared") or [
            text for text in os.environ.get("CLOUDHERD_LOCAL_SHARED", "").split(",") if text.strip()]
        hidden = self._hidden()
        try:
            self.shares = [sandbox.Share.parse(str(text).strip(), hidden) for text in shared]
        except ValueError as exc:
            source = "setting shared" if self.settings.get("shared") else "CLOUDHERD_LOCAL_SHARED"
            raise InvalidRequestError(f"local provider {name!r}, {source}: {exc}") from None
        self._notices: list[str] = []
        self._told = False
        self._told_userns = False

    # -- interface -----------------------------------------------------------------------------------

    async def create(self, request: CreateRequest) -> list[Instance]:
        if not check_request(request, "local"):
            return []
        if request.token:
            existing = await self.list({"cloudherd:token": request.token})
            if existing:
                return existing
        sshd = self._sshd_binary()
        isolated = self._isolated(sshd)
        if isolated and sandbox.rootless() and sandbox.subordinate_ids() is None:
            sshd = None  # OpenSSH's privilege separation needs more than one user: cloudherd's server runs inside
        limits = _limits(request.size, request.size_need)
        nodes = []
        for index in range(request.count):
            name = request.names[index] if index < len(request.names) else None
            nodes.append(self._prepare_node(request, name, openssh=sshd is not None, isolated=isolated,
                                            limits=limits))
        await asyncio.gather(*(self._launch(node, sshd) for node in nodes), return_exceptions=False)
        return [self._instance(node) for node in nodes]

    async def list(self, tags: Mapping[str, str]) -> list[Instance]:
        found = []
        for folder in sorted(self.root.iterdir()):
            meta = _read_meta(folder)
            if meta is not None and has_tags(meta.get("tags", {}), tags):
                found.append(self._instance(meta))
        return found

    async def terminate(self, ids: Sequence[str]) -> None:
        await asyncio.gather(*(asyncio.to_thread(self._terminate_one, node_id) for node_id in ids))

    async def tag(self, ids: Sequence[str], tags: Mapping[str, str]) -> None:
        for node_id in ids:
            meta = self._meta(node_id)
            meta["tags"] = {**meta.get("tags", {}), **tags}
            _write_meta(self.root / node_id, meta)

    async def stop(self, ids: Sequence[str]) -> None:
        for node_id in ids:
            meta = self._meta(node_id)
            _stop_processes(self.root / node_id, meta)
            meta["stopped"] = True
            _write_meta(self.root / node_id, meta)

    async def start(self, ids: Sequence[str]) -> None:
        sshd = self._sshd_binary()
        metas = []
        for node_id in ids:
            meta = self._meta(node_id)
            meta["stopped"] = False
            metas.append(meta)
        await asyncio.gather(*(self._launch(meta, sshd if meta["server"] == "openssh" else None) for meta in metas))

    async def sizes(self, pattern: str | None = None) -> builtins.list[Size]:
        found = [Size("host", float(os.cpu_count() or 1), _memory_mb(), {"note": "no limits: the whole computer"})]
        found += [Size(name, float(limit.cpus or 0), int(limit.memory_mib or 0), {"note": "cgroup limits"})
                  for name, limit in SIZES.items() if name != "host"]
        return [size for size in found if matches(pattern, size.name)]

    def take_notices(self) -> builtins.list[str]:
        notices, self._notices = self._notices, []
        return notices

    async def fault(self, node_id: str, kind: str, peer: str | None = None) -> str:
        """Make node ``node_id`` misbehave on purpose (``crash``, ``hang``, ``partition``) or undo it (``heal``);
        returns what was done, in words.  ``peer`` (an address) limits a partition to the traffic between the
        node and that one.  For testing what cloudherd (and a user's health checks) do then."""
        if kind not in FAULTS:
            raise InvalidRequestError(f"unknown fault {kind!r} (known: {', '.join(FAULTS)})")
        meta = self._meta(node_id)
        folder = self.root / node_id
        if peer is not None:
            try:
                ipaddress.ip_address(peer)
            except ValueError:
                raise InvalidRequestError(f"not an address to partition from: {peer!r}") from None
            meta["partition_peer"] = peer
        done = await asyncio.to_thread(_FAULT_ACTIONS[kind], folder, meta)
        meta.pop("partition_peer", None)
        _write_meta(folder, meta)
        return done

    def leftovers(self) -> builtins.list[tuple[str, str, str]]:
        """What nodes that are gone left on this computer (kind, id, why): network namespaces (with their
        links) whose node folder is gone, and node cgroups with no process.  A reboot clears both; a killed
        cloudherd between a node's end and its cleanup leaves them, and ``gc`` finds them here."""
        root = self.root.resolve()
        found = [("netns", name, "its node is gone (a namespace left by a killed process)")
                 for name in (local_net.leftovers() if local_net.unavailable() is None else [])
                 if (made_for := local_net.owner(name)) is not None and made_for.is_relative_to(root)]
        found += [("cgroup", str(folder), "its node is gone and no process is left in it")
                  for folder in sandbox.stale_cgroups(self._cgroup_prefix())
                  if not (self.root / folder.name.removeprefix(self._cgroup_prefix())).exists()]
        return found

    def _cgroup_prefix(self) -> str:
        """What names this nodes folder's cgroups (beside other data folders' on the same computer)."""
        return hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:8] + "-"

    def remove_leftover(self, kind: str, ident: str) -> None:
        """Remove one of :meth:`leftovers` (found again first: only what still is a leftover goes)."""
        if (kind, ident) not in {(k, i) for k, i, _ in self.leftovers()}:
            return
        if kind == "netns":
            local_net.release(ident)
        else:
            sandbox.remove_cgroups([ident])

    async def images(self, pattern: str | None = None) -> builtins.list[Image]:
        image = Image("host", "host", {"note": "nodes run this computer's system"})
        return [image] if matches(pattern, image.name) else []

    async def regions(self) -> builtins.list[str]:
        return ["local"]

    async def default_size(self) -> str | None:
        return "host"

    async def open_ports(self, group_tags: Mapping[str, str], ports: Sequence[int]) -> PortsHandle:
        """Nothing to do: a local node's loopback address answers on every port it listens on."""
        wanted = check_ports(ports, "local")
        return PortsHandle("loopback", "loopback", "none", dict(group_tags), tuple(sorted({22, *wanted})))

    async def close_ports(self, group_tags: Mapping[str, str]) -> None:
        """Nothing was opened."""

    # -- nodes ---------------------------------------------------------------------------------------

    def _sshd_binary(self) -> str | None:
        if self.server == "builtin":
            return None
        found = shutil.which("sshd") or next(
            (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None
        )
        if found is None and self.server == "openssh":
            raise ProviderError("local provider: server 'openssh' asked for, but no sshd is installed")
        return found

    def _isolated(self, sshd: str | None) -> bool:
        """Whether new nodes get a sandbox; with ``auto`` and none possible, a notice says so (once)."""
        if self.isolation == "none":
            return False
        reason = sandbox.unavailable()
        if reason is None and sshd is None and not sandbox.rootless():
            reason = "isolation needs OpenSSH's sshd (the built-in SSH server runs on the host)"
        if reason is None:
            return True
        if self.isolation == "required":
            raise InvalidRequestError(f"local provider: isolation: required, but {reason}")
        if not self._told:
            self._told = True
            self._notices.append(f"local nodes are not isolated: their scripts run on this computer as "
                                 f"{pwd.getpwuid(os.getuid()).pw_name} ({reason}; isolation: none silences this, "
                                 f"isolation: required makes it an error)")
        return False

    def _prepare_node(self, request: CreateRequest, name: str | None, *, openssh: bool, isolated: bool = False,
                      limits: sandbox.Limits | None = None) -> dict[str, Any]:
        node_id = "ln-" + secrets.token_hex(5)
        folder = self.root / node_id
        for sub in ("home", "work"):
            (folder / sub).mkdir(parents=True, mode=0o755)
        folder.chmod(0o755)
        # rootless, this user is the node's root (its only user): one logs in as root, as on many clouds
        user = "root" if isolated and sandbox.rootless() else pwd.getpwuid(os.getuid()).pw_name
        import asyncssh  # only when a node is made: listing nodes (status, plan) needs no SSH library

        key = asyncssh.generate_private_key("ssh-ed25519")
        # 0600 from creation (writing it then chmod-ing it would leave it readable in between)
        fd = os.open(folder / "ssh_host_ed25519_key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.export_private_key())
        host_key = key.export_public_key().decode().strip()
        (folder / "ssh_host_ed25519_key.pub").write_text(host_key + "\n")
        (folder / "authorized_keys").write_text(request.ssh_public_key.strip() + "\n")
        (folder / "authorized_keys").chmod(0o600)
        if isolated and sandbox.rootless():
            sandbox.seed_upper(folder / "upper")
        if isolated and Path("/etc/skel").is_dir():  # a fresh machine's home: the distribution's defaults
            shutil.copytree("/etc/skel", folder / "home", dirs_exist_ok=True, symlinks=True)
        tags = dict(request.tags)
        if request.token:
            tags["cloudherd:token"] = request.token
        meta: dict[str, Any] = {
            "id": node_id,
            "name": name or node_id,
            "user": user,
            "tags": tags,
            "image": request.image or "host",
            "size": request.size or _need_text(request.size_need) or "host",
            "server": "openssh" if openssh else "builtin",
            "isolated": isolated,
            "node_root": self._node_root(isolated),
            "limits": dataclasses.asdict(limits or sandbox.Limits()),
            "host_key": host_key,
            "created": time.time(),
            "stopped": False,
        }
        if isolated:
            (folder / "ns").mkdir(mode=0o755)
        if meta["node_root"] is not None:  # what the node's server and root use: theirs, as the host sees it
            sandbox.give_to_node_root([folder / "home", folder / "work", folder / "ns", folder / "authorized_keys",
                                       folder / "ssh_host_ed25519_key"])
        _write_meta(folder, meta)
        return meta

    def _node_root(self, isolated: bool) -> int | None:
        """The host's uid of a new node's root: its own (unused) id in a user namespace, as root with networks
        per node (a node's root must bind its port 22 in a network it does not own); None: the host's root,
        or this user rootless."""
        if not isolated or sandbox.rootless() or local_net.unavailable() is not None:
            return None
        userns, why = sandbox.user_namespace()
        if userns is None:
            if not self._told_userns:
                self._told_userns = True
                self._notices.append(f"local nodes are isolated, but their root is this computer's root: {why}")
            return None
        return sandbox.NODE_ROOT_ID
    async def _launch(self, meta: dict[str, Any], sshd: str | None, attempts: int = 3) -> None:
        """Start the node's server on a free loopback address and wait until it accepts TCP."""
        folder = self.root / meta["id"]
        last_error = ""
        own_network = bool(meta.get("isolated")) and local_net.unavailable() is None
        for _attempt in range(attempts):
            if own_network:
                await self._own_address(meta)
            elif "address" not in meta or _attempt > 0:
                meta["address"], meta["port"] = _free_address(self.root)
            meta.pop("server_identity", None)
            for stale in ("sshd.pid", NS_PID_FILE):  # a stale one names a process long gone
                (folder / stale).unlink(missing_ok=True)
            if meta.get("isolated"):
                (folder / "ns").mkdir(exist_ok=True)  # a node made before this folder was
            _write_meta(folder, meta)
            log = open(folder / "server.log", "ab")  # noqa: SIM115 - handed to the child
            exit_read = exit_write = -1
            try:
                env = {**_base_env(), NODE_MARKER: str(folder)}
                if meta.get("isolated") and sandbox.rootless():
                    argv = self._rootless_command(folder, meta, sshd)
                    env.update(sandbox.environment([*self._hidden(), _own_home()], self.shares, (), "/root",
                                                   runtime=_runtime_folders(), resolver=local_slirp.DNS))
                    exit_read, exit_write = os.pipe()  # slirp4netns ends when the node's processes are gone
                elif sshd is not None:
                    _write_sshd_config(folder, meta)
                    server = [sshd, "-D", "-e", "-f", str(folder / "sshd_config")]
                    if meta.get("isolated"):
                        cgroups = self._cgroups(meta)
                        argv = sandbox.command(folder, meta["name"], _SUPERVISOR, server)
                        if own_network:
                            argv = [*local_net.enter(meta["netns"]), *argv]
                        userns, _why = sandbox.user_namespace()
                        env.update(sandbox.environment(
                            self._hidden(), self.shares, cgroups.procs, pwd.getpwnam(meta["user"]).pw_dir,
                            userns=userns if meta.get("node_root") is not None and own_network else None,
                            net=local_net.inside(meta["address"]) if own_network else ()))
                    else:
                        argv = ["sh", "-c", _SUPERVISOR, meta["name"], *server]
                        if _can_set_hostname():
                            argv = ["unshare", "--uts", *argv]
                            env["CLOUDHERD_SET_HOSTNAME"] = "1"
                else:
                    argv = [sys.executable, "-m", "cloudherd.providers.local_server", str(folder)]
                process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                    env=env, close_fds=True, pass_fds=(exit_write,) if exit_write >= 0 else (),
                )
            finally:
                log.close()
                if exit_write >= 0:
                    os.close(exit_write)
            meta["pid"] = process.pid
            _write_meta(folder, meta)
            if exit_read >= 0:
                ready = await self._slirp(meta, process, exit_read)
            else:
                ready = await _wait_listening(meta["address"], meta["port"], process)
            if ready:
                identity = await _wait_server_identity(folder, process, openssh=sshd is not None,
                                                       isolated=bool(meta.get("isolated")))
                if identity is not None:
                    meta["server_identity"] = identity
                if meta.get("isolated"):
                    meta["init_identity"] = _sandbox_init(process.pid)
                _write_meta(folder, meta)
                return
            last_error = _tail(folder / "server.log")
            _kill(process.pid)
        raise ProviderError(f"local node {meta['name']}: SSH server did not start: {last_error}")

    def _rootless_command(self, folder: Path, meta: dict[str, Any], sshd: str | None) -> builtins.list[str]:
        """A rootless node's sandbox running OpenSSH (where this user has subordinate ids for its privilege
        separation) or cloudherd's own server, on port 22 of the node's own network."""
        if sshd is not None:
            _write_sshd_config(folder, meta, listen="0.0.0.0:22")
            server = [sshd, "-D", "-e", "-f", str(folder / "sshd_config")]
        else:
            server = [sys.executable, "-m", "cloudherd.providers.local_server", str(folder), "0.0.0.0:22"]
        return sandbox.command(folder, meta["name"], _SUPERVISOR, server)

    async def _slirp(self, meta: dict[str, Any], process: subprocess.Popen[bytes], exit_read: int) -> bool:
        """A rootless node's network (slirp4netns, its SSH port forwarded from ``address:port``), then its
        server's readiness: forwarded, the port accepts before anything listens inside, so the server's pid
        file (written once it listens) is what says it is up."""
        folder = self.root / meta["id"]
        try:
            slirp = await asyncio.to_thread(local_slirp.start, process.pid, folder, meta["address"], meta["port"],
                                            exit_read)
        except local_slirp.SlirpError as exc:
            (folder / "server.log").open("a").write(f"{exc}\n")
            return False
        finally:
            os.close(exit_read)
        meta["net_identity"] = _identity(slirp.pid)
        _write_meta(folder, meta)
        deadline = time.monotonic() + READY_TIMEOUT
        while _pid_file(folder, NS_PID_FILE) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return await _wait_listening(meta["address"], meta["port"], process)

    async def _own_address(self, meta: dict[str, Any]) -> None:
        """The node's network namespace and address on the bridge: kept across a stop and start, claimed anew
        when it is gone (a reboot clears them)."""
        if meta.get("netns") and local_net.netns_path(meta["netns"]).exists():
            return
        try:
            meta["address"], meta["netns"] = await asyncio.to_thread(local_net.claim, self.root / meta["id"])
        except local_net.NetError as exc:
            raise ProviderError(f"local node {meta['name']}: {exc}") from None
        meta["port"] = 22
        _write_meta(self.root / meta["id"], meta)

    def _cgroups(self, meta: dict[str, Any]) -> sandbox.Cgroups:
        """The node's cgroups, made (again, on a start) with its size's limits; what they are is recorded."""
        asked = meta.get("limits") or {}
        cgroups = sandbox.make_cgroups(self._cgroup_prefix() + meta["id"],
                                       sandbox.Limits(asked.get("cpus"), asked.get("memory_mib")))
        meta["cgroups"] = [str(f) for f in cgroups.folders]
        meta["limits_applied"] = cgroups.applied
        return cgroups

    def _hidden(self) -> builtins.list[Path]:
        """Host folders a sandboxed node must not see: cloudherd's own (its database, keys, other nodes) —
        at their own path and through every share that holds them (:func:`local_sandbox.hidden_in_node`);
        a share of one of them, or of a folder inside one, is refused."""
        return sorted({data_dir().resolve(), self.root.resolve()})

    def _instance(self, meta: dict[str, Any]) -> Instance:
        """The node as listed.  Running means both its supervisor and its SSH server run; a node whose
        supervisor died while sshd lives on is *dead* although SSH still answers: nothing would reap its
        sshd, ``stop`` / ``start`` would act on a supervisor that is gone, and the engine's answer to dead
        (terminate it — which ends that sshd too, see :func:`_stop_processes` — and make a new one) is the
        repair.  Reporting it running would leave a broken node in place for good."""
        folder = self.root / meta["id"]
        if meta.get("stopped"):
            state = InstanceState.STOPPED
        else:
            alive = _process_alive(meta.get("pid"), folder) and _live_server(folder, meta) is not None
            state = InstanceState.RUNNING if alive else InstanceState.DEAD
        return Instance(
            id=meta["id"], name=meta["name"], state=state, address=meta.get("address"),
            port=int(meta.get("port", 22)), private_address=meta.get("address"), tags=dict(meta.get("tags", {})),
            ssh_user=meta["user"], host_key=meta.get("host_key"), workdir=str(folder / "work"),
            extra={"folder": str(folder), "pid": meta.get("pid"), "server_pid": _server_pid(folder, meta),
                   "server": meta.get("server"), "isolated": bool(meta.get("isolated")),
                   "limits": meta.get("limits_applied") or "no limits", "faults": list(meta.get("faults", [])),
                   "machine": _machine_text(meta)},
        )

    def _meta(self, node_id: str) -> dict[str, Any]:
        meta = _read_meta(self.root / node_id)
        if meta is None:
            raise NotFoundError(f"local node {node_id} does not exist")
        return meta

    def _terminate_one(self, node_id: str) -> None:
        folder = self.root / node_id
        if not _safe_child(self.root, folder):
            raise InvalidRequestError(f"not a local node id: {node_id!r}")
        meta = _read_meta(folder)
        if meta is not None:
            _unpartition(meta)
            _stop_processes(folder, meta)
            sandbox.remove_cgroups(meta.get("cgroups") or ())
            if meta.get("netns"):
                local_net.release(meta["netns"])
        sandbox.remove_tree(folder)


# -- helpers (module level: no provider state) ------------------------------------------------------


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((folder / "node.json").read_text())
        return data
    except (OSError, ValueError):
        return None


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    tmp = folder / "node.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / "node.json")


def _own_home() -> Path:
    """This user's home folder, which a rootless node does not see (its root's home is its own)."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir).resolve()


def _runtime_folders() -> list[Path]:
    """What runs cloudherd's SSH server (its interpreter's environment, its code, ``PYTHONPATH``), bound
    read-only into a rootless node where the node would not see it: in the user's home, or in the folders
    a node has of its own (``/tmp``, ``/run``)."""
    import cloudherd

    covered = [_own_home(), Path("/tmp"), Path("/run")]
    wanted = {Path(sys.prefix), Path(sys.base_prefix), Path(cloudherd.__file__).parents[1],
              *(Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)}
    found = {path.resolve() for path in wanted if path.is_absolute()}
    return sorted(path for path in found if any(path.is_relative_to(c) and path != c for c in covered))


def _safe_child(root: Path, folder: Path) -> bool:
    return folder.parent.resolve() == root.resolve() and folder.name.startswith("ln-")


def _base_env() -> dict[str, str]:
    # PYTHONPATH: the built-in server a rootless node runs imports cloudherd as this process does
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH")
    return {k: os.environ[k] for k in keep if k in os.environ}


def _free_address(root: Path) -> tuple[str, int]:
    """A loopback address no node uses, with port 22 when we may bind it, else a free high port."""
    used = {m.get("address") for f in root.iterdir() if (m := _read_meta(f)) is not None}
    for _ in range(200):
        address = f"127.{random.randint(16, 250)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        if address in used:
            continue
        if os.geteuid() == 0 and _bindable(address, 22):
            return address, 22
        port = _bindable(address, 0)
        if port:
            return address, port
    raise ProviderError("local provider: no free loopback address found")


def _bindable(address: str, port: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                return 0
            raise
        bound: int = sock.getsockname()[1]
        return bound


def _write_sshd_config(folder: Path, meta: dict[str, Any], listen: str | None = None) -> None:
    q = _quote
    lines = [
        f"ListenAddress {listen or str(meta['address']) + ':' + str(meta['port'])}",
        f"HostKey {q(folder / 'ssh_host_ed25519_key')}",
        f"AuthorizedKeysFile {q(folder / 'authorized_keys')}",
        # in a sandbox sshd's pid is the namespace's: it goes to a file of its own, and sshd.pid gets the
        # host's pid (written once it is known), so that whoever reads sshd.pid can act on it
        f"PidFile {q(folder / (NS_PID_FILE if meta.get('isolated') else 'sshd.pid'))}",
        f"AllowUsers {meta['user']}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "MaxStartups 1000",
        "MaxSessions 1000",
        "LogLevel INFO",  # one "Accepted publickey" line per login in server.log: logins can be counted
        "Subsystem sftp internal-sftp",
        # a sandboxed node's home is its own folder, bound at the user's home path: sshd sets HOME to it
        "SetEnv " + ("" if meta.get("isolated") else f"HOME={q(folder / 'home')} ")
        + f"CLOUDHERD_WORK={q(folder / 'work')} {NODE_MARKER}={q(folder)}",
    ]
    (folder / "sshd_config").write_text("\n".join(lines) + "\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder


def _quote(path: Path) -> str:
    return f'"{path}"' if " " in str(path) else str(path)


@functools.cache
def _can_set_hostname() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "--uts", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


async def _wait_listening(address: str, port: int, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            _reader, writer = await asyncio.open_connection(address, port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


def _process_alive(pid: int | None, folder: Path) -> bool:
    """True when ``pid`` runs and is this node's server (not a reused pid, not a zombie)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return False
    return str(folder) in cmdline


def _server_pid(folder: Path, meta: dict[str, Any]) -> int | None:
    """The pid of the SSH server itself, as recorded (its identity when it started, else the pid file; the
    built-in server is the process we started).  Not checked: see :func:`_live_server`."""
    identity = meta.get("server_identity")
    if isinstance(identity, dict) and isinstance(identity.get("pid"), int):
        return int(identity["pid"])
    if meta.get("server") != "openssh":
        return meta.get("pid")
    return _pid_file(folder)


def _pid_file(folder: Path, name: str = "sshd.pid") -> int | None:
    try:
        return int((folder / name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _live_server(folder: Path, meta: dict[str, Any]) -> int | None:
    """The pid of the node's SSH server when that process still runs and really is it, else None.

    With the identity recorded at start (pid, start time, boot): that very process, never a reused pid.
    A node from before identities were recorded falls back on the pid file and the command line."""
    identity = meta.get("server_identity")
    if isinstance(identity, dict):
        return int(identity["pid"]) if _is_process(identity) else None
    if meta.get("server") != "openssh":
        pid = meta.get("pid")
        return pid if _process_alive(pid, folder) else None
    pid = _pid_file(folder)
    return pid if pid and _names_node_sshd(pid, folder) else None


def _stop_processes(folder: Path, meta: dict[str, Any]) -> None:
    """Stop the node: its server, then every process started on it (they carry the node's marker).

    A sandboxed node ends at once with its namespace: its pid 1 is killed (the kernel then kills the rest,
    stopped ones too) and so is the ``unshare`` parent, which ignores SIGTERM.

    Connections that just closed get a moment to end, so that sshd reaps their processes itself.  The
    supervisor normally ends sshd; when it is gone (killed on its own), sshd is ended here, by the
    identity checked in :func:`_live_server` — a pid file naming some other process is never acted on.
    """
    if meta.get("isolated"):
        _end_sandbox(folder, meta)
        return
    server = _live_server(folder, meta)
    deadline = time.monotonic() + 1.0
    while server and time.monotonic() < deadline and any(_ppid(p) == server for p in _marked_processes(folder)):
        time.sleep(0.02)
    # sshd's per-connection processes re-exec without the marker: find them as the server's descendants
    connections = _descendants(server) if server else []
    pid = meta.get("pid")
    if pid and _process_alive(pid, folder):
        _kill(pid)
    if server:
        _kill_checked(server, lambda: _live_server(folder, meta) == server)
    for other in [*connections, *_marked_processes(folder)]:
        with contextlib.suppress(OSError):
            os.kill(other, signal.SIGKILL)


# -- process identity --------------------------------------------------------------------------------

_STARTTIME = 19  # /proc/PID/stat field 22 (start time, clock ticks after boot), counted from field 3


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on: the command name before it may hold spaces and ')'."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


@functools.cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _identity(pid: int) -> dict[str, Any] | None:
    """What names process ``pid`` for good: pid, start time and boot (a pid is reused, the triple is not)."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) <= _STARTTIME or fields[0] in ("Z", "X"):
        return None
    return {"pid": pid, "started": int(fields[_STARTTIME]), "boot": _boot_id()}


def _is_process(identity: Mapping[str, Any]) -> bool:
    """Whether the process ``identity`` names still runs (not exited, not a zombie, not a reused pid)."""
    pid = identity.get("pid")
    if not isinstance(pid, int) or pid <= 0 or identity.get("boot") != _boot_id():
        return False
    now = _identity(pid)
    return now is not None and now["started"] == identity.get("started")


def _names_node_sshd(pid: int, folder: Path) -> bool:
    """Whether ``pid`` is an sshd started with ``-f <folder>/sshd_config`` (for nodes without a recorded
    identity).  sshd's process title rewrites its command line and may cut it short: a title cut inside
    the path still matches if it names at least the whole node folder."""
    fields = _stat_fields(pid)
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").rstrip()
    except OSError:
        return False
    if fields is None or fields[0] in ("Z", "X") or comm != "sshd":
        return False
    _, found, rest = cmdline.partition(" -f ")
    expected = f"{folder}/sshd_config"
    if not found:
        return False
    return rest.startswith(expected) or (expected.startswith(rest) and len(rest) > len(str(folder)))


async def _wait_server_identity(folder: Path, process: subprocess.Popen[bytes], *, openssh: bool,
                                isolated: bool = False, timeout: float = 5.0) -> dict[str, Any] | None:
    """The identity of the node's SSH server, once its pid file names it (sshd writes the file just after it
    starts listening).  The pid must be the supervisor's child (sshd) or the process itself (the built-in
    server); in a sandbox the file holds the namespace's pid, found on the host among the sandbox's processes.
    None when that does not happen in time: the node then falls back on pid file checks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        pid = _pid_file(folder, NS_PID_FILE if isolated else "sshd.pid")
        if pid and isolated:
            host_pid = next((p for p in _tree(process.pid) if _ns_pid(p) == pid), None)
            if host_pid is not None:
                tmp = folder / "sshd.pid.tmp"
                tmp.write_text(f"{host_pid}\n")
                os.replace(tmp, folder / "sshd.pid")
                return _identity(host_pid)
        elif pid and (_ppid(pid) == process.pid if openssh else pid == process.pid):
            return _identity(pid)
        await asyncio.sleep(0.01)
    return None


def _ns_pid(pid: int) -> int | None:
    """Process ``pid``'s pid in its own (innermost) PID namespace."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _sandbox_init(unshare_pid: int) -> dict[str, Any] | None:
    """The identity of a sandbox's pid 1 (the one child of its ``unshare``)."""
    child = next(iter(_children(unshare_pid)), None)
    return _identity(child) if child is not None else None


def _node_processes(folder: Path, meta: dict[str, Any]) -> builtins.list[int]:
    """Every process of the node (not its ``unshare`` parent): the supervisor and what runs below it, and
    whatever carries the node's marker (daemons a script started, which left the tree)."""
    found: set[int] = set()
    init = meta.get("init_identity")
    pid = meta.get("pid")
    if meta.get("isolated") and isinstance(init, dict) and _is_process(init):
        found |= {int(init["pid"]), *_descendants(int(init["pid"]))}
    elif pid and _process_alive(pid, folder) and not meta.get("isolated"):
        found |= {int(pid), *_descendants(int(pid))}
    server = _live_server(folder, meta)
    if server:
        found |= {server, *_descendants(server)}
    found |= set(_marked_processes(folder))
    found.discard(os.getpid())
    return sorted(found)


def _end_sandbox(folder: Path, meta: dict[str, Any], timeout: float = 10.0) -> None:
    """Kill a sandboxed node: its pid 1 (which takes the namespace down), its ``unshare`` parent, then any
    process of it still seen, until none is left or ``timeout``."""
    init = meta.get("init_identity")
    if isinstance(init, dict):
        _signal_identity(init, signal.SIGKILL)
    pid = meta.get("pid")
    if pid and _process_alive(pid, folder):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ChildProcessError, OSError):
            if pid:
                os.waitpid(pid, os.WNOHANG)  # reap when it is our child
        left = [p for p in _node_processes(folder, meta) if not _zombie(p)]
        parent_left = bool(pid) and _process_alive(pid, folder)  # reaped above once it has ended
        if (not left and not parent_left) or time.monotonic() > deadline:
            break
        for other in left:
            with contextlib.suppress(OSError):
                os.kill(other, signal.SIGKILL)
        time.sleep(0.02)
    network = meta.get("net_identity")  # a rootless node's slirp4netns (it also ends on its own, by its exit pipe)
    if isinstance(network, dict):
        _signal_identity(network, signal.SIGKILL)


def _signal_identity(identity: Mapping[str, Any], sig: signal.Signals) -> bool:
    """Send ``sig`` to the process ``identity`` names, if it still is that process (through a pidfd)."""
    pid = identity.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if not _is_process(identity):
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# -- faults on demand ------------------------------------------------------------------------------


def _crash(folder: Path, meta: dict[str, Any]) -> str:
    """Kill every process of the node at once, as a machine that loses power (no clean shutdown)."""
    if meta.get("isolated"):
        _end_sandbox(folder, meta)
    else:
        for pid in _node_processes(folder, meta):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(int(meta.get("pid") or 0), os.WNOHANG)
    meta["faults"] = sorted({*meta.get("faults", []), "crash"} - {"hang"})
    return "crashed: every process of the node killed"


def _hang(folder: Path, meta: dict[str, Any]) -> str:
    """SIGSTOP every process of the node: it keeps its address, accepts TCP, and answers nothing."""
    stopped = _signal_all(_node_processes(folder, meta), signal.SIGSTOP)
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
            _unpartition(meta)  # one partition at a time: this one replaces the one before
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
        _signal_all(_node_processes(folder, meta), signal.SIGCONT)
        done.append("resumed")
    if "partition" in faults:
        _unpartition(meta)
        done.append("reconnected")
    meta["faults"] = sorted(faults - {"hang", "partition"})
    if not done:
        return "nothing to heal" + (" (a crashed node does not come back: start it or let it be replaced)"
                                    if "crash" in faults else "")
    return "healed: " + " and ".join(done)


def _signal_all(pids: Sequence[int], sig: signal.Signals) -> int:
    sent = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)
            sent += 1
    return sent


def _nft_table(meta: Mapping[str, Any]) -> str:
    return "cloudherd_" + str(meta["id"]).replace("-", "_")


def _nft(args: Sequence[str], stdin: str | None, meta: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("nft") or next((p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None)
    if binary is None:
        raise ProviderError("a partition needs nftables' nft (on Debian: apt-get install nftables)")
    if os.geteuid() != 0:
        raise ProviderError("a partition needs root (it adds an nftables rule)")
    inside = local_net.enter(meta["netns"]) if meta.get("netns") else []
    done = subprocess.run([*inside, binary, *args], input=stdin, capture_output=True, text=True, timeout=15)
    if done.returncode != 0 and stdin is not None:
        raise ProviderError(f"local node {meta['name']}: nft refused the partition: {done.stderr.strip()[:300]}")
    return done


def _unpartition(meta: Mapping[str, Any]) -> None:
    if "partition" in meta.get("faults", []):
        _nft(["delete", "table", "inet", _nft_table(meta)], None, meta)


_FAULT_ACTIONS: dict[str, Callable[[Path, dict[str, Any]], str]] = {
    "crash": _crash, "hang": _hang, "partition": _partition, "heal": _heal,
}


def _limits(size: str | None, need: SizeNeed | None) -> sandbox.Limits:
    """A node's limits from its size: a name of :data:`SIZES`, or exactly the cpus and memory asked for.

    Another name (a cloud's, from a spec placed across clouds or a Phantom launch configuration) is no
    limit, as the ``host`` size: refusing it would fail a spec that is right for its other places."""
    if size is not None:
        return SIZES.get(size, SIZES["host"])
    if need is not None:
        return sandbox.Limits(need.cpus, need.memory_mib)
    return SIZES["host"]


def _machine_text(meta: Mapping[str, Any]) -> str:
    """A node's machine in a few words, for ``status``: isolated or not, its limits, faults made on it."""
    words = ["isolated" if meta.get("isolated") else "on the host", str(meta.get("limits_applied") or "no limits")]
    words += [f"fault: {fault}" for fault in meta.get("faults", [])]
    return ", ".join(words)


def _need_text(need: SizeNeed | None) -> str | None:
    if need is None:
        return None
    parts = ([f"cpus={need.cpus:g}"] if need.cpus is not None else []) + (
        [f"memory={need.memory_mib}M"] if need.memory_mib is not None else [])
    return ",".join(parts) or None


def _kill_checked(pid: int, still_it: Callable[[], bool], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after ``grace``, to ``pid`` — only while ``still_it()`` holds.

    Through a pidfd where the kernel has them: once open it names that one process, so the check made
    after opening it cannot be outdated by the pid's reuse, and its exit is waited for by poll."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfds here (old kernel): check, then signal by pid
        if still_it():
            _kill(pid, grace)
        return
    try:
        if not still_it():
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fd, sig)
            poller = select.poll()
            poller.register(fd, select.POLLIN)  # readable once the process has exited
            if poller.poll(int(grace * 1000)):
                break
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # reap when it is our child
    finally:
        os.close(fd)


def _children(pid: int) -> list[int]:
    """The children of ``pid``, from /proc/PID/task/*/children: a few reads, where a scan of /proc reads a
    file per process (costly when a hundred nodes start at once).  Falls back on the scan."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return [int(c) for task in tasks for c in (task / "children").read_text().split()]
    except FileNotFoundError:
        if not Path(f"/proc/{pid}").exists():
            return []
        return [p for p in _descendants(pid) if _ppid(p) == pid]
    except (OSError, ValueError):
        return [p for p in _descendants(pid) if _ppid(p) == pid]


def _tree(root: int) -> list[int]:
    """``root``'s descendants, walked through :func:`_children`."""
    found, todo = [], [root]
    while todo:
        for child in _children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _ppid(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _kill(pid: int, grace: float = 3.0) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)  # reap when it is our child
            if waited:
                return
        except ChildProcessError:
            pass
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


def _marked_processes(folder: Path) -> list[int]:
    marker = f"{NODE_MARKER}={folder}\0".encode()
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ + b"\0":
            found.append(int(entry.name))
    return found


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:]) or "no output"


def _memory_mb() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)
    except (ValueError, OSError):
        return 0
