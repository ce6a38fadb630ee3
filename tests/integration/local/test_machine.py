"""Machine handles on real local nodes (sshd processes) and on libcloud's Dummy driver."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudherd.api.machine import Machine, PollTimeoutError, SyncMachine, machines, sync_machines
from cloudherd.errors import CloudherdError, UsageError
from cloudherd.providers.base import TAG_GROUP, TAG_INFRA, CreateRequest, InvalidRequestError, Provider
from cloudherd.providers.libcloud import LibcloudProvider
from cloudherd.providers.local import LocalProvider

TAGS = {TAG_INFRA: "machines-test", TAG_GROUP: "web"}
FAST = {"timeout": 20.0, "interval": 0.05}


def make_request(image: str | None) -> CreateRequest:
    return CreateRequest(count=2, image=image, size=None, tags=TAGS, ssh_user="deploy",
                         ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtlc3Q test", names=["m0", "m1"])


@pytest.fixture(params=["local", "libcloud"])
def provider(request: pytest.FixtureRequest, home: Path) -> Iterator[Provider]:
    """A provider whose machines can stop and start: real local nodes, or libcloud (a Dummy that can)."""
    if request.param == "local":
        yield LocalProvider("local", {"root": str(home / "local")})
    else:
        yield LibcloudProvider("cloud", {"driver": "libcloud_wire:NamedDummyDriver", "key": 0})


def image_for(provider: Provider) -> str | None:
    return "Ubuntu 9.10" if isinstance(provider, LibcloudProvider) else None


def test_lifecycle(provider: Provider) -> None:
    async def scenario() -> None:
        made = await provider.create(make_request(image_for(provider)))
        handles = [Machine(provider, i) for i in made]
        first, second = handles
        assert (first.name, second.name) == ("m0", "m1")
        assert first.id == made[0].id and first.tags == TAGS
        if isinstance(provider, LocalProvider):
            # a local node's one address is reached from this host: public and private at once
            assert first.public_ips == first.private_ips == [made[0].address]
        else:
            assert first.public_ips == [made[0].address] and first.private_ips == [made[0].private_address]
        assert repr(first) == f"<Machine m0 id={first.id} state={first.state} provider={provider.name}>"

        for machine in handles:
            assert await machine.poll_until("running", **FAST) is machine
            assert machine.state == "running"

        await first.stop()
        await first.poll_until("stopped", **FAST)
        await second.refresh()
        assert second.state == "running"
        await first.start()
        await first.poll_until("running", **FAST)

        found = await machines(provider, TAGS)
        assert sorted(found, key=lambda m: m.name) == handles  # equal by (provider name, id)
        assert await machines(provider, {TAG_INFRA: "someone-else"}) == []

        await first.delete()
        await first.poll_until("terminated", **FAST)
        await first.delete()  # gone already: not an error
        assert [m.name for m in await machines(provider, TAGS)] == ["m1"]
        await second.delete()
        await second.poll_while("running", **FAST)
        assert second.state == "terminated"

    asyncio.run(scenario())


def test_poll_gives_up_quickly_with_a_clear_error(provider: Provider) -> None:
    async def scenario() -> None:
        made = await provider.create(make_request(image_for(provider)))
        machine = Machine(provider, made[0])
        with pytest.raises(PollTimeoutError) as caught:  # not TimeoutError: the poll ended by its own deadline
            await asyncio.wait_for(machine.poll_until("stopped", timeout=0.5, interval=0.1), timeout=120)
        error = caught.value
        assert isinstance(error, CloudherdError)
        assert (error.awaited, error.last_state, error.timeout) == ("stopped", "running", 0.5)
        assert str(error).startswith(f"machine m0 ({machine.id} on {provider.name}): gave up waiting for state "
                                     "'stopped' after 0.5s (last seen: 'running')")
        # an interval longer than the timeout still ends at the timeout: with an hour's interval, a poll that
        # slept it out would hit the outer deadline (TimeoutError) instead of giving up itself
        with pytest.raises(PollTimeoutError, match=r"to leave state 'running' after 0\.3s"):
            await asyncio.wait_for(machine.poll_while("running", timeout=0.3, interval=3600), timeout=120)

        for bad in ({"timeout": 0}, {"timeout": -1}, {"interval": 0}, {"timeout": float("nan")}):
            with pytest.raises(UsageError, match="must be > 0"):
                await machine.poll_until("running", **bad)
        await provider.terminate([i.id for i in made])

    asyncio.run(scenario())


def test_equality_and_hash(home: Path) -> None:
    provider = LocalProvider("local", {"root": str(home / "local")})
    same_name = LocalProvider("local", {"root": str(home / "local")})
    other = LocalProvider("elsewhere", {"root": str(home / "local")})
    made = asyncio.run(provider.create(make_request(None)))
    a, b = Machine(provider, made[0]), Machine(same_name, made[0])
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Machine(provider, made[1]) and a != Machine(other, made[0])
    assert a != made[0]  # not equal to a bare Instance
    assert SyncMachine(a) == SyncMachine(provider, made[0]) and len({SyncMachine(a), SyncMachine(b)}) == 1
    asyncio.run(provider.terminate([i.id for i in made]))


def test_refresh_of_a_vanished_machine(home: Path) -> None:
    provider = LocalProvider("local", {"root": str(home / "local")})
    made = asyncio.run(provider.create(make_request(None)))
    machine = Machine(provider, made[0])
    asyncio.run(provider.terminate([made[0].id]))  # behind the handle's back
    asyncio.run(machine.refresh())
    assert machine.state == "terminated" and machine.name == "m0" and machine.tags == TAGS


def test_sync_twin(home: Path) -> None:
    provider = LocalProvider("local", {"root": str(home / "local")})
    asyncio.run(provider.create(make_request(None)))
    handles = sorted(sync_machines(provider, TAGS), key=lambda m: m.name)
    assert [m.name for m in handles] == ["m0", "m1"]
    first = handles[0]
    assert first.poll_until("running", **FAST) is first and first.state == "running"
    first.stop()
    assert first.poll_until("stopped", **FAST).state == "stopped"
    first.start()
    first.poll_while("stopped", **FAST)
    assert first.state == "running" and first.private_ips == [first.address]
    assert repr(first).startswith("<SyncMachine m0 id=")
    with pytest.raises(PollTimeoutError):
        first.poll_until("stopped", timeout=0.2, interval=0.05)
    for machine in handles:
        machine.delete()
        machine.poll_until("terminated", **FAST)

    async def inside_a_loop() -> None:
        with pytest.raises(UsageError, match="inside a running event loop"):
            handles[0].refresh()

    asyncio.run(inside_a_loop())


def test_handles_on_libcloud_dummy() -> None:
    """The same handles on libcloud's own Dummy driver, which cannot stop or start."""
    provider = LibcloudProvider("dummy", {"driver": "dummy", "key": 0})

    async def scenario() -> None:
        made = await provider.create(make_request("Ubuntu 9.10"))
        handles = await machines(provider, TAGS)
        assert [m.name for m in handles] == ["m0", "m1"] and handles == [Machine(provider, i) for i in made]
        assert {Machine(provider, made[0]), handles[0]} == {handles[0]}
        first = handles[0]
        await first.poll_until("running", **FAST)
        assert first.public_ips == [made[0].address] and first.private_ips == []
        with pytest.raises(InvalidRequestError, match="cannot stop"):
            await first.stop()
        with pytest.raises(PollTimeoutError, match=r"'stopped' after 0\.5s"):
            await first.poll_until("stopped", timeout=0.5, interval=0.1)
        for machine in handles:
            await machine.delete()
            await machine.poll_until("terminated", **FAST)
        assert await machines(provider, TAGS) == []
        assert {m.name for m in await machines(provider)} == {"dummy-1", "dummy-2"}

    asyncio.run(scenario())
