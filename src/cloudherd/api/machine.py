"""Machine handles: one instance of one provider, to read, wait on, stop, start and delete (like py-smartdc's
``Machine``).

:class:`Machine` is async; :class:`SyncMachine` is its blocking twin (generated, :mod:`cloudherd.api.twin`: it
cannot be used inside a running event loop).  Every wait is bounded: on expiry :class:`PollTimeoutError` names
the machine, the awaited state, the last state seen and the timeout.

A handle holds the :class:`Instance` it last read; ``refresh`` reads it again (one ``provider.list`` call,
narrowed by the instance's infrastructure tag when it has one).  A machine the provider no longer lists is
``terminated``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

from cloudherd.api.twin import Twin, blocking, run_blocking
from cloudherd.errors import CloudherdError, UsageError
from cloudherd.providers.base import TAG_INFRA, Instance, InstanceState, Provider

T = TypeVar("T")

DEFAULT_TIMEOUT = 300.0
DEFAULT_INTERVAL = 2.0


class PollTimeoutError(CloudherdError):
    """A machine did not reach (or leave) a state in time."""

    def __init__(self, machine: str, awaited: str, last_state: str, timeout: float, *, leaving: bool = False) -> None:
        self.machine = machine
        self.awaited = awaited
        self.last_state = last_state
        self.timeout = timeout
        self.leaving = leaving
        goal = f"to leave state '{awaited}'" if leaving else f"for state '{awaited}'"
        super().__init__(f"machine {machine}: gave up waiting {goal} after {timeout:g}s "
                         f"(last seen: '{last_state}'); wait longer with timeout=, or check the machine")


class Machine:
    """A handle on one instance of one provider."""

    def __init__(self, provider: Provider, instance: Instance) -> None:
        self.provider = provider
        self.instance = instance

    # -- properties ------------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.instance.id

    @property
    def name(self) -> str:
        return self.instance.name

    @property
    def state(self) -> str:
        return self.instance.state

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.instance.tags)

    @property
    def address(self) -> str | None:
        """Where SSH reaches the machine."""
        return self.instance.address

    @property
    def public_ips(self) -> list[str]:
        """The addresses others reach the machine at: where code like py-smartdc's tutorial connects
        (``public_ips[0]``).  A ``local`` node's one address is reached from this host, its only outside, so it
        is public and private at once; a cloud machine's SSH address is public unless it is its private one."""
        listed = self.instance.extra.get("public_ips")
        if isinstance(listed, list):
            return [str(ip) for ip in listed]
        address = self.instance.address
        if address and self.provider.type == "local":
            return [address]
        return [address] if address and address != self.instance.private_address else []

    @property
    def private_ips(self) -> list[str]:
        listed = self.instance.extra.get("private_ips")
        if isinstance(listed, list):
            return [str(ip) for ip in listed]
        return [self.instance.private_address] if self.instance.private_address else []

    def _key(self) -> tuple[str, str]:
        return (self.provider.name, self.id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Machine):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"<Machine {self.name} id={self.id} state={self.state} provider={self.provider.name}>"

    def _label(self) -> str:
        return f"{self.name} ({self.id} on {self.provider.name})" if self.name != self.id else \
            f"{self.id} on {self.provider.name}"

    # -- actions ---------------------------------------------------------------------------------------

    async def refresh(self) -> Machine:
        """Read the instance again; one the provider no longer lists is 'terminated'."""
        infra = self.instance.tags.get(TAG_INFRA)
        found = await self.provider.list({TAG_INFRA: infra} if infra else {})
        fresh = next((i for i in found if i.id == self.id), None)
        if fresh is None:
            self.instance = dataclasses.replace(self.instance, state=InstanceState.TERMINATED,
                                                tags=dict(self.instance.tags), extra=dict(self.instance.extra))
        else:
            self.instance = fresh
        return self

    async def poll_until(self, state: str, *, timeout: float = DEFAULT_TIMEOUT,
                         interval: float = DEFAULT_INTERVAL) -> Machine:
        """Refresh every ``interval`` seconds until the state is ``state``; PollTimeoutError after ``timeout``."""
        return await self._poll(state, timeout, interval, leaving=False)

    async def poll_while(self, state: str, *, timeout: float = DEFAULT_TIMEOUT,
                         interval: float = DEFAULT_INTERVAL) -> Machine:
        """Refresh every ``interval`` seconds while the state is ``state``; PollTimeoutError after ``timeout``."""
        return await self._poll(state, timeout, interval, leaving=True)

    async def status(self) -> str:
        """Read the machine again and return its state (py-smartdc's ``status()``: one fresh look, no wait)."""
        await self.refresh()
        return self.state

    async def stop(self) -> None:
        await self.provider.stop([self.id])

    async def start(self) -> None:
        await self.provider.start([self.id])

    async def delete(self) -> None:
        """Destroy the machine (already gone is not an error); ``poll_until('terminated')`` waits for it."""
        await self.provider.terminate([self.id])

    async def _poll(self, state: str, timeout: float, interval: float, *, leaving: bool) -> Machine:
        _check_wait(timeout, interval)
        deadline = time.monotonic() + timeout
        while True:
            await self.refresh()
            if (self.state != state) if leaving else (self.state == state):
                return self
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PollTimeoutError(self._label(), state, self.state, timeout, leaving=leaving)
            await asyncio.sleep(min(interval, remaining))


async def machines(provider: Provider, tags: Mapping[str, str] | None = None) -> list[Machine]:
    """A handle on every instance of ``provider`` carrying all of ``tags`` (one list call)."""
    return [Machine(provider, instance) for instance in await provider.list(dict(tags or {}))]


def _check_wait(timeout: float, interval: float) -> None:
    if not timeout > 0:
        raise UsageError(f"timeout must be > 0 seconds, not {timeout!r}")
    if not interval > 0:
        raise UsageError(f"interval must be > 0 seconds, not {interval!r}")


class SyncMachine(Twin[Machine], of=Machine):
    """The blocking twin of :class:`Machine`: same properties, each action run to completion (on the twins'
    loop, :mod:`cloudherd.api.twin`); ``refresh`` and the polls return this same handle."""

    def __init__(self, provider_or_machine: Provider | Machine, instance: Instance | None = None) -> None:
        if isinstance(provider_or_machine, Machine):
            self.aio = provider_or_machine
        else:
            if instance is None:
                raise UsageError("SyncMachine(provider, instance) needs the instance")
            self.aio = Machine(provider_or_machine, instance)

    @property
    def machine(self) -> Machine:
        """The async handle underneath."""
        return self.aio

    @property
    def provider(self) -> Provider:
        return self.aio.provider

    @property
    def instance(self) -> Instance:
        return self.aio.instance

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SyncMachine):
            return self.aio == other.aio
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.aio)

    def __repr__(self) -> str:
        return "<Sync" + repr(self.aio)[1:]

    if TYPE_CHECKING:  # what Twin generates, for mypy
        @property
        def id(self) -> str: ...
        @property
        def name(self) -> str: ...
        @property
        def state(self) -> str: ...
        @property
        def tags(self) -> dict[str, str]: ...
        @property
        def address(self) -> str | None: ...
        @property
        def public_ips(self) -> list[str]: ...
        @property
        def private_ips(self) -> list[str]: ...
        status = blocking(Machine.status)
        stop = blocking(Machine.stop)
        start = blocking(Machine.start)
        delete = blocking(Machine.delete)

        def refresh(self) -> SyncMachine: ...
        def poll_until(self, state: str, *, timeout: float = DEFAULT_TIMEOUT,
                       interval: float = DEFAULT_INTERVAL) -> SyncMachine: ...
        def poll_while(self, state: str, *, timeout: float = DEFAULT_TIMEOUT,
                       interval: float = DEFAULT_INTERVAL) -> SyncMachine: ...


def sync_machines(provider: Provider, tags: Mapping[str, str] | None = None) -> list[SyncMachine]:
    """The blocking twin of :func:`machines`."""
    return [SyncMachine(m) for m in run_blocking(machines(provider, tags))]
