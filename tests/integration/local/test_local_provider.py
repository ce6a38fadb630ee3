"""The local provider makes real SSH machines: create, find again, crash, terminate."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from helpers import async_wait_until, has_sshd, node_processes, process_gone, wait_until

from cloudherd.providers.base import CreateRequest, Instance
from cloudherd.providers.local import NODE_MARKER, LocalProvider
from cloudherd.providers.local import net as local_net

TAGS = {"cloudherd:infra": "test-infra", "cloudherd:group": "web"}


async def _ssh(instance, key: asyncssh.SSHKey, command: str) -> asyncssh.SSHCompletedProcess:
    host = instance.address if instance.port == 22 else f"[{instance.address}]:{instance.port}"
    known = asyncssh.import_known_hosts(f"{host} {instance.host_key}\n")
    async with asyncssh.connect(instance.address, instance.port, username=instance.ssh_user, client_keys=[key],
                                known_hosts=known, config=[], agent_path=None) as conn:
        return await conn.run(command, check=False)


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_lifecycle_of_five_nodes(home: Path, server: str) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    root = home / "local"

    async def scenario() -> None:
        provider = LocalProvider("local", {"root": str(root)})
        made = await provider.create(CreateRequest(
            count=5, image=None, size=None, tags=TAGS, ssh_user="ignored",
            ssh_public_key=key.export_public_key().decode(), names=[f"n{i}" for i in range(5)],
        ))
        assert [m.name for m in made] == ["n0", "n1", "n2", "n3", "n4"]
        assert len({m.address for m in made}) == 5
        # a sandboxed node has a network of its own (local_net); the others an address on the host's loopback
        assert all(m.state == "running" and m.address and ipaddress.ip_address(m.address) in
                   (local_net.SUBNET if m.extra["isolated"] else ipaddress.ip_network("127.0.0.0/8")) for m in made)
        assert {m.extra["server"] for m in made} == {server}

        # Each node is a real SSH host with its own home (HOME) and work folder.
        for instance in made:
            result = await _ssh(instance, key, "echo $HOME; echo $CLOUDHERD_WORK")
            assert result.exit_status == 0, result.stderr
            home_dir, work_dir = str(result.stdout).split()
            # sandboxed, HOME is the user's own home as the node sees it (copy-on-write); else the node's folder
            own_home = pwd.getpwuid(os.getuid()).pw_dir if instance.extra["isolated"] else None
            assert home_dir == (own_home or str(root / instance.id / "home"))
            assert work_dir == str(root / instance.id / "work")

        # A new provider object (a new CLI run) finds them again by their tags.
        fresh = LocalProvider("local", {"root": str(root)})
        found = await fresh.list(TAGS)
        assert sorted(i.id for i in found) == sorted(m.id for m in made)
        assert await fresh.list({"cloudherd:infra": "someone-else"}) == []

        # Killing a node's SSH server is a crashed machine: reported dead.
        victim = made[2]
        server_pid = victim.extra["server_pid"]
        assert server_pid
        os.kill(server_pid, signal.SIGKILL)
        assert _wait_gone(server_pid)
        states = {i.id: i.state for i in await fresh.list(TAGS)}
        assert states[victim.id] == "dead"
        assert sum(state == "running" for state in states.values()) == 4

        # terminate removes processes and folders.
        await fresh.terminate([i.id for i in made])
        assert await fresh.list(TAGS) == []
        assert not any(root.iterdir())
        for instance in made:
            assert _wait_gone(instance.extra["pid"])

    asyncio.run(scenario())
    assert node_processes(root) == []


def test_stop_and_start_keep_the_node(home: Path, server: str) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")

    async def scenario() -> None:
        provider = LocalProvider("local", {"root": str(home / "local")})
        (node,) = await provider.create(CreateRequest(
            count=1, image=None, size=None, tags=TAGS, ssh_user="x", ssh_public_key=key.export_public_key().decode(),
        ))
        await _ssh(node, key, 'echo kept > "$CLOUDHERD_WORK/file"')
        await provider.stop([node.id])
        assert [i.state for i in await provider.list(TAGS)] == ["stopped"]
        await provider.start([node.id])
        (again,) = await provider.list(TAGS)
        assert again.state == "running"
        result = await _ssh(again, key, 'cat "$CLOUDHERD_WORK/file"')
        assert str(result.stdout).strip() == "kept"
        await provider.terminate([node.id])

    asyncio.run(scenario())


def test_create_is_idempotent_with_a_token(home: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")

    async def scenario() -> None:
        provider = LocalProvider("local", {"root": str(home / "local")})
        request = CreateRequest(count=2, image=None, size=None, tags=TAGS, ssh_user="x",
                                ssh_public_key=key.export_public_key().decode(), token="tok-1")
        first = await provider.create(request)
        second = await provider.create(request)
        assert sorted(i.id for i in first) == sorted(i.id for i in second)
        assert len(await provider.list(TAGS)) == 2

    asyncio.run(scenario())


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "stat").read_text().rsplit(")", 1)[-1].split()[1] == str(pid):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_terminate_ends_sessions_of_clients_still_connected(home: Path, server: str) -> None:
    """A client that keeps its connection open (as Ansible's ControlPersist does) does not keep the node's
    per-connection processes alive after terminate."""
    key = asyncssh.generate_private_key("ssh-ed25519")

    async def scenario() -> None:
        provider = LocalProvider("local", {"root": str(home / "local")})
        [instance] = await provider.create(CreateRequest(
            count=1, image=None, size=None, tags=TAGS, ssh_user="x", ssh_public_key=key.export_public_key().decode()))
        host = instance.address if instance.port == 22 else f"[{instance.address}]:{instance.port}"
        conn = await asyncssh.connect(
            instance.address, instance.port, username=instance.ssh_user, client_keys=[key], config=[],
            agent_path=None, known_hosts=asyncssh.import_known_hosts(f"{host} {instance.host_key}\n"))
        try:
            assert (await conn.run("echo up", check=True)).stdout == "up\n"
            server_pid = instance.extra["server_pid"]
            sessions = _children(server_pid)
            assert sessions or server == "builtin"  # sshd: one process per connection
            await provider.terminate([instance.id])
            assert all(_wait_gone(pid) for pid in [server_pid, *sessions])
            assert node_processes(home / "local") == []
        finally:
            conn.abort()

    asyncio.run(scenario())


# -- a node whose supervisor died: its sshd, and only its sshd, is ended by terminate ----------------------


def _needs_sshd() -> None:
    if not has_sshd():
        pytest.skip("openssh-server is not installed")


def _openssh_node(home: Path, key: asyncssh.SSHKey) -> tuple[LocalProvider, Instance]:
    """An unisolated node: its supervisor and sshd are host processes of their own (these tests are about
    telling them apart; a sandboxed node ends as a whole with its namespace)."""
    provider = LocalProvider("local", {"root": str(home / "local"), "server": "openssh", "isolation": "none"})
    [instance] = asyncio.run(provider.create(CreateRequest(
        count=1, image=None, size=None, tags=TAGS, ssh_user="x", ssh_public_key=key.export_public_key().decode())))
    assert instance.extra["server"] == "openssh" and instance.extra["server_pid"] != instance.extra["pid"]
    return provider, instance


def _forget_identity(folder: Path) -> None:
    """The node as an older cloudherd left it: no identity recorded for its sshd."""
    meta = json.loads((folder / "node.json").read_text())
    assert meta.pop("server_identity")["pid"] == int((folder / "sshd.pid").read_text())
    (folder / "node.json").write_text(json.dumps(meta))


def _kill_supervisor(instance: Instance) -> None:
    supervisor, sshd = instance.extra["pid"], instance.extra["server_pid"]
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: process_gone(supervisor), what=f"the supervisor {supervisor} to die")
    assert not process_gone(sshd)  # sshd lives on, its environment (the node marker) overwritten
    assert f"{NODE_MARKER}=".encode() not in Path(f"/proc/{sshd}/environ").read_bytes()


@pytest.mark.parametrize("recorded", [True, False], ids=["identity-recorded", "older-node"])
def test_terminate_ends_the_sshd_of_a_node_whose_supervisor_was_killed(home: Path, recorded: bool) -> None:
    """SIGKILL of the supervisor alone leaves sshd (and a client's session) running; terminate ends them all,
    by the identity recorded at start — or, for a node made before identities were, by sshd's command line."""
    _needs_sshd()
    key = asyncssh.generate_private_key("ssh-ed25519")
    provider, instance = _openssh_node(home, key)
    folder = Path(instance.extra["folder"])
    supervisor, sshd = instance.extra["pid"], instance.extra["server_pid"]
    if not recorded:
        _forget_identity(folder)

    async def connected() -> None:
        host = instance.address if instance.port == 22 else f"[{instance.address}]:{instance.port}"
        conn = await asyncssh.connect(
            instance.address, instance.port, username=instance.ssh_user, client_keys=[key], config=[],
            agent_path=None, known_hosts=asyncssh.import_known_hosts(f"{host} {instance.host_key}\n"))
        try:
            assert (await conn.run("echo up", check=True)).stdout == "up\n"
            sessions = _children(sshd)
            assert sessions  # sshd: one process per connection
            await asyncio.to_thread(_kill_supervisor, instance)
            # listed consistently: dead (the engine replaces it), the sshd still named
            (listed,) = await provider.list(TAGS)
            assert listed.state == "dead" and listed.extra["server_pid"] == sshd
            await LocalProvider("local", {"root": str(home / "local"), "isolation": "none"}).terminate([instance.id])
            for pid in [supervisor, sshd, *sessions]:
                await async_wait_until(functools.partial(process_gone, pid), timeout=10, what=f"process {pid} to end")
        finally:
            conn.abort()

    asyncio.run(connected())
    assert not folder.exists()
    assert node_processes(home / "local") == []


Decoys = Callable[[str, Path], subprocess.Popen[bytes]]


@pytest.fixture
def decoys(tmp_path: Path) -> Iterator[Callable[[str, Path], subprocess.Popen[bytes]]]:
    """Live processes of this test that a node's sshd.pid may wrongly name: a plain ``sleep``, and a look-alike
    of the node's sshd (named ``sshd``, its command line ending ``-f <folder>/sshd_config``, as a reused pid
    could look).  ``decoys(kind, node_folder)`` starts one; each is killed at the end, by its pid."""
    (tmp_path / "bin").mkdir()
    look_alike = tmp_path / "bin" / "sshd"
    look_alike.symlink_to(sys.executable)
    started: dict[str, subprocess.Popen[bytes]] = {}

    def start(kind: str, folder: Path) -> subprocess.Popen[bytes]:
        argv = (["sleep", "600"] if kind == "sleep" else
                [str(look_alike), "-c", "import time; time.sleep(600)", "-f", f"{folder}/sshd_config"])
        started[kind] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env={"PATH": os.environ["PATH"]})
        return started[kind]

    yield start
    for process in started.values():  # ours, by pid
        process.kill()
        process.wait()


@pytest.mark.parametrize("decoy", ["sleep", "look-alike"])
def test_a_pid_file_naming_another_process_does_not_get_it_killed(home: Path, decoys: Decoys, decoy: str) -> None:
    """sshd.pid is only a hint: the process killed is the one whose pid *and start time* were recorded when the
    node started.  A pid file naming another live process (a reused pid, an edited file) leaves it alone —
    even one whose command line names the node's sshd_config — while the node's real sshd is still ended."""
    _needs_sshd()
    provider, instance = _openssh_node(home, asyncssh.generate_private_key("ssh-ed25519"))
    folder = Path(instance.extra["folder"])
    sshd = instance.extra["server_pid"]
    other = decoys(decoy, folder)  # Popen returns once the program is exec'd: its command line is set
    (folder / "sshd.pid").write_text(f"{other.pid}\n")
    _kill_supervisor(instance)
    asyncio.run(provider.terminate([instance.id]))
    wait_until(lambda: process_gone(sshd), timeout=10, what="the node's sshd to end")
    assert other.poll() is None and not process_gone(other.pid)
    assert node_processes(home / "local") == []


def test_an_older_node_whose_pid_file_names_another_process_leaves_it_alone(home: Path, decoys: Decoys) -> None:
    """Without a recorded identity the pid file is checked against the process's name and command line: a
    ``sleep`` it names is not sshd, so it is not killed (the supervisor still ends the node's sshd)."""
    _needs_sshd()
    provider, instance = _openssh_node(home, asyncssh.generate_private_key("ssh-ed25519"))
    folder = Path(instance.extra["folder"])
    supervisor, sshd = instance.extra["pid"], instance.extra["server_pid"]
    _forget_identity(folder)
    other = decoys("sleep", folder)
    (folder / "sshd.pid").write_text(f"{other.pid}\n")
    (listed,) = asyncio.run(provider.list(TAGS))
    assert listed.state == "dead"  # what the pid file names is not this node's server
    asyncio.run(provider.terminate([instance.id]))
    for pid in (supervisor, sshd):
        wait_until(functools.partial(process_gone, pid), timeout=10, what=f"process {pid} to end")
    assert other.poll() is None and not process_gone(other.pid)


def test_the_server_identity_is_recorded_for_both_servers(home: Path, server: str) -> None:
    """Each node records its SSH server's pid, start time and boot when it starts (and again after a start);
    the built-in server is the very process started (it has no supervisor, and keeps its marker)."""
    provider = LocalProvider("local", {"root": str(home / "local")})
    key = asyncssh.generate_private_key("ssh-ed25519")
    [instance] = asyncio.run(provider.create(CreateRequest(
        count=1, image=None, size=None, tags=TAGS, ssh_user="x", ssh_public_key=key.export_public_key().decode())))
    folder = Path(instance.extra["folder"])

    def identity() -> dict[str, Any]:
        recorded: dict[str, Any] = json.loads((folder / "node.json").read_text())["server_identity"]
        return recorded

    first = identity()
    assert first["pid"] == instance.extra["server_pid"] == int((folder / "sshd.pid").read_text())
    assert (first["pid"] == instance.extra["pid"]) == (server == "builtin")
    started = Path(f"/proc/{first['pid']}/stat").read_text().rsplit(")", 1)[-1].split()[19]
    assert first["started"] == int(started)
    assert first["boot"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    asyncio.run(provider.stop([instance.id]))
    wait_until(lambda: process_gone(first["pid"]), what="the server to stop")
    asyncio.run(provider.start([instance.id]))
    assert identity()["pid"] != first["pid"]
    assert [i.state for i in asyncio.run(provider.list(TAGS))] == ["running"]
    asyncio.run(provider.terminate([instance.id]))
