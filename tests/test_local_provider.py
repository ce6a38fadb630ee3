"""The local provider makes real SSH machines: create, find again, crash, terminate."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import asyncssh

from cloudherd.providers.base import CreateRequest
from cloudherd.providers.local import LocalProvider
from tests.conftest import node_processes

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
        assert all(m.address and m.address.startswith("127.") and m.state == "running" for m in made)
        assert {m.extra["server"] for m in made} == {server}

        # Each node is a real SSH host with its own home (HOME) and work folder.
        for instance in made:
            result = await _ssh(instance, key, "echo $HOME; echo $CLOUDHERD_WORK")
            assert result.exit_status == 0, result.stderr
            home_dir, work_dir = str(result.stdout).split()
            assert home_dir == str(root / instance.id / "home")
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
