"""Local nodes made, launched and ended: a node's folder, keys and record; its sandbox, cgroups and network; its
SSH server started (again) and waited for."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cloudherd.paths import data_dir
from cloudherd.providers.base import (
    TAG_TOKEN,
    CreateRequest,
    Instance,
    InstanceState,
    InvalidRequestError,
    NotFoundError,
    Provider,
    ProviderError,
)
from cloudherd.providers.local import net, sandbox, slirp
from cloudherd.providers.local.faults import unpartition
from cloudherd.providers.local.launch import (
    READY_TIMEOUT,
    SUPERVISOR,
    base_env,
    can_set_hostname,
    free_address,
    own_home,
    runtime_folders,
    wait_listening,
    write_sshd_config,
)
from cloudherd.providers.local.meta import (
    NODE_MARKER,
    NS_PID_FILE,
    log_tail,
    machine_text,
    need_text,
    read_meta,
    safe_child,
    write_meta,
)
from cloudherd.providers.local.proc import kill, process_identity
from cloudherd.providers.local.processes import (
    live_server,
    pid_file,
    process_alive,
    sandbox_init,
    server_pid,
    stop_processes,
    wait_server_identity,
)
from cloudherd.providers.local.rootless import rootless, seed_upper
from cloudherd.settings import current


class LocalNodes(Provider):
    """The nodes of one nodes folder, and what they run on (see :class:`~cloudherd.providers.local.LocalProvider`)."""

    def __init__(self, name: str = "local", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        env = current()
        root = self.settings.get("root") or env.local_root or data_dir() / "local"
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.server = str(self.settings.get("server") or env.local_server or "auto")
        if self.server not in ("auto", "openssh", "builtin"):
            raise InvalidRequestError(f"local provider: server must be auto, openssh or builtin, not {self.server!r}")
        self.isolation = str(self.settings.get("isolation") or env.local_isolation or "auto")
        if self.isolation not in sandbox.ISOLATION_MODES:
            raise InvalidRequestError(f"local provider: isolation must be auto, required or none, "
                                      f"not {self.isolation!r}")
        shared = self.settings.get("shared") or [
            text for text in (env.local_shared or "").split(",") if text.strip()]
        hidden = self._hidden()
        try:
            self.shares = [sandbox.Share.parse(str(text).strip(), hidden) for text in shared]
        except ValueError as exc:
            source = "setting shared" if self.settings.get("shared") else "CLOUDHERD_LOCAL_SHARED"
            raise InvalidRequestError(f"local provider {name!r}, {source}: {exc}") from None
        self._notices: list[str] = []
        self._told = False
        self._told_userns = False

    def _cgroup_prefix(self) -> str:
        """What names this nodes folder's cgroups (beside other data folders' on the same computer)."""
        return hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:8] + "-"

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
        if reason is None and sshd is None and not rootless():
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
        user = "root" if isolated and rootless() else pwd.getpwuid(os.getuid()).pw_name
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
        if isolated and rootless():
            seed_upper(folder / "upper")
        if isolated and Path("/etc/skel").is_dir():  # a fresh machine's home: the distribution's defaults
            shutil.copytree("/etc/skel", folder / "home", dirs_exist_ok=True, symlinks=True)
        tags = dict(request.tags)
        if request.token:
            tags[TAG_TOKEN] = request.token
        meta: dict[str, Any] = {
            "id": node_id,
            "name": name or node_id,
            "user": user,
            "tags": tags,
            "image": request.image or "host",
            "size": request.size or need_text(request.size_need) or "host",
            "server": "openssh" if openssh else "builtin",
            "isolated": isolated,
            "node_root": self._node_root(isolated),
            "limits": dataclasses.asdict(limits or sandbox.Limits()),
            "host_key": host_key,
            "created": time.time(),
            "stopped": False,
            "market": request.market,
        }
        if isolated:
            (folder / "ns").mkdir(mode=0o755)
        if meta["node_root"] is not None:  # what the node's server and root use: theirs, as the host sees it
            sandbox.give_to_node_root([folder / "home", folder / "work", folder / "ns", folder / "authorized_keys",
                                       folder / "ssh_host_ed25519_key"])
        write_meta(folder, meta)
        return meta

    def _node_root(self, isolated: bool) -> int | None:
        """The host's uid of a new node's root: its own (unused) id in a user namespace, as root with networks
        per node (a node's root must bind its port 22 in a network it does not own); None: the host's root,
        or this user rootless."""
        if not isolated or rootless() or net.unavailable() is not None:
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
        own_network = bool(meta.get("isolated")) and net.unavailable() is None
        for _attempt in range(attempts):
            if own_network:
                await self._own_address(meta)
            elif "address" not in meta or _attempt > 0:
                meta["address"], meta["port"] = free_address(self.root)
            meta.pop("server_identity", None)
            for stale in ("sshd.pid", NS_PID_FILE):  # a stale one names a process long gone
                (folder / stale).unlink(missing_ok=True)
            if meta.get("isolated"):
                (folder / "ns").mkdir(exist_ok=True)  # a node made before this folder was
            write_meta(folder, meta)
            log = open(folder / "server.log", "ab")  # noqa: SIM115 - handed to the child
            exit_read = exit_write = -1
            try:
                env = {**base_env(), NODE_MARKER: str(folder)}
                if meta.get("isolated") and rootless():
                    argv = self._rootless_command(folder, meta, sshd)
                    env.update(sandbox.environment([*self._hidden(), own_home()], self.shares, (), "/root",
                                                   runtime=runtime_folders(), resolver=slirp.DNS))
                    exit_read, exit_write = os.pipe()  # slirp4netns ends when the node's processes are gone
                elif sshd is not None:
                    write_sshd_config(folder, meta)
                    server = [sshd, "-D", "-e", "-f", str(folder / "sshd_config")]
                    if meta.get("isolated"):
                        cgroups = self._cgroups(meta)
                        argv = sandbox.command(folder, meta["name"], SUPERVISOR, server)
                        if own_network:
                            argv = [*net.enter(meta["netns"]), *argv]
                        userns, _why = sandbox.user_namespace()
                        env.update(sandbox.environment(
                            self._hidden(), self.shares, cgroups.procs, pwd.getpwnam(meta["user"]).pw_dir,
                            userns=userns if meta.get("node_root") is not None and own_network else None,
                            net=net.inside(meta["address"]) if own_network else ()))
                    else:
                        argv = ["sh", "-c", SUPERVISOR, meta["name"], *server]
                        if can_set_hostname():
                            argv = ["unshare", "--uts", *argv]
                            env["CLOUDHERD_SET_HOSTNAME"] = "1"
                else:
                    argv = [sys.executable, "-m", "cloudherd.providers.local.local_server", str(folder)]
                process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                    env=env, close_fds=True, pass_fds=(exit_write,) if exit_write >= 0 else (),
                )
            finally:
                log.close()
                if exit_write >= 0:
                    os.close(exit_write)
            meta["pid"] = process.pid
            write_meta(folder, meta)
            if exit_read >= 0:
                ready = await self._slirp(meta, process, exit_read)
            else:
                ready = await wait_listening(meta["address"], meta["port"], process)
            if ready:
                identity = await wait_server_identity(folder, process, openssh=sshd is not None,
                                                       isolated=bool(meta.get("isolated")))
                if identity is not None:
                    meta["server_identity"] = identity
                if meta.get("isolated"):
                    meta["init_identity"] = sandbox_init(process.pid)
                write_meta(folder, meta)
                return
            last_error = log_tail(folder / "server.log")
            kill(process.pid)
        raise ProviderError(f"local node {meta['name']}: SSH server did not start: {last_error}")

    def _rootless_command(self, folder: Path, meta: dict[str, Any], sshd: str | None) -> builtins.list[str]:
        """A rootless node's sandbox running OpenSSH (where this user has subordinate ids for its privilege
        separation) or cloudherd's own server, on port 22 of the node's own network."""
        if sshd is not None:
            write_sshd_config(folder, meta, listen="0.0.0.0:22")
            server = [sshd, "-D", "-e", "-f", str(folder / "sshd_config")]
        else:
            server = [sys.executable, "-m", "cloudherd.providers.local.local_server", str(folder), "0.0.0.0:22"]
        return sandbox.command(folder, meta["name"], SUPERVISOR, server)

    async def _slirp(self, meta: dict[str, Any], process: subprocess.Popen[bytes], exit_read: int) -> bool:
        """A rootless node's network (slirp4netns, its SSH port forwarded from ``address:port``), then its
        server's readiness: forwarded, the port accepts before anything listens inside, so the server's pid
        file (written once it listens) is what says it is up."""
        folder = self.root / meta["id"]
        try:
            started = await asyncio.to_thread(slirp.start, process.pid, folder, meta["address"], meta["port"],
                                            exit_read)
        except slirp.SlirpError as exc:
            (folder / "server.log").open("a").write(f"{exc}\n")
            return False
        finally:
            os.close(exit_read)
        meta["net_identity"] = process_identity(started.pid)
        write_meta(folder, meta)
        deadline = time.monotonic() + READY_TIMEOUT
        while pid_file(folder, NS_PID_FILE) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return await wait_listening(meta["address"], meta["port"], process)

    async def _own_address(self, meta: dict[str, Any]) -> None:
        """The node's network namespace and address on the bridge: kept across a stop and start, claimed anew
        when it is gone (a reboot clears them)."""
        if meta.get("netns") and net.netns_path(meta["netns"]).exists():
            return
        try:
            meta["address"], meta["netns"] = await asyncio.to_thread(net.claim, self.root / meta["id"])
        except net.NetError as exc:
            raise ProviderError(f"local node {meta['name']}: {exc}") from None
        meta["port"] = 22
        write_meta(self.root / meta["id"], meta)

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
        at their own path and through every share that holds them
        (:func:`~cloudherd.providers.local.sandbox.hidden_in_node`); a share of one of them, or of a folder inside one,
        is refused."""
        return sorted({data_dir().resolve(), self.root.resolve()})

    def _instance(self, meta: dict[str, Any]) -> Instance:
        """The node as listed.  Running means both its supervisor and its SSH server run; a node whose
        supervisor died while sshd lives on is *dead* although SSH still answers: nothing would reap its
        sshd, ``stop`` / ``start`` would act on a supervisor that is gone, and the engine's answer to dead
        (terminate it — which ends that sshd too, see :func:`stop_processes` — and make a new one) is the
        repair.  Reporting it running would leave a broken node in place for good."""
        folder = self.root / meta["id"]
        if meta.get("stopped"):
            state = InstanceState.STOPPED
        else:
            alive = process_alive(meta.get("pid"), folder) and live_server(folder, meta) is not None
            state = InstanceState.RUNNING if alive else InstanceState.DEAD
        return Instance(
            id=meta["id"], name=meta["name"], state=state, address=meta.get("address"),
            port=int(meta.get("port", 22)), private_address=meta.get("address"), tags=dict(meta.get("tags", {})),
            ssh_user=meta["user"], host_key=meta.get("host_key"), workdir=str(folder / "work"),
            extra={"folder": str(folder), "pid": meta.get("pid"), "server_pid": server_pid(folder, meta),
                   "server": meta.get("server"), "isolated": bool(meta.get("isolated")),
                   "limits": meta.get("limits_applied") or "no limits", "faults": list(meta.get("faults", [])),
                   "machine": machine_text(meta), "market": meta.get("market", "on-demand")},
        )

    def _meta(self, node_id: str) -> dict[str, Any]:
        meta = read_meta(self.root / node_id)
        if meta is None:
            raise NotFoundError(f"local node {node_id} does not exist")
        return meta

    def _terminate_one(self, node_id: str) -> None:
        folder = self.root / node_id
        if not safe_child(self.root, folder):
            raise InvalidRequestError(f"not a local node id: {node_id!r}")
        meta = read_meta(folder)
        if meta is not None:
            unpartition(meta)
            stop_processes(folder, meta)
            sandbox.remove_cgroups(meta.get("cgroups") or ())
            if meta.get("netns"):
                net.release(meta["netns"])
        sandbox.remove_tree(folder)
