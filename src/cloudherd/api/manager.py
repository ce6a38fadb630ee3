"""Occopus' ``InfrastructureManager`` verbs over cloudherd's manager, so that a script moves over by its import.

>>> from cloudherd.api import SyncInfrastructureManager
>>> manager = SyncInfrastructureManager(interval=10)
>>> infra_id = manager.add("infra.yaml")        # submit_infrastructure + start_provisioning
>>> manager.get(infra_id).last.summary           # what its last pass did
>>> manager.stop_provisioning(infra_id)          # maintained no more; nothing torn down
>>> manager.tear_down(infra_id)

Each provisioned infrastructure gets a maintenance process: a task running reconcile passes every
``interval`` seconds (the same manager as ``cloudherd manage``, holding the same leases), until
``stop_provisioning``.  Unlike Occopus', nothing lives only in memory: an infrastructure is recorded
in the state database from ``submit_infrastructure`` on, and a new manager attaches to it again.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cloudherd.api.client import Client
from cloudherd.api.twin import Twin, blocking
from cloudherd.api.types import PassResult
from cloudherd.errors import UsageError


class InfrastructureIDNotFoundError(UsageError):
    """The infrastructure is not maintained by this manager (Occopus' InfrastructureIDNotFoundException)."""


class InfrastructureIDTakenError(UsageError):
    """The infrastructure is maintained already (Occopus' InfrastructureIDTakenException)."""


@dataclass
class MaintenanceProcess:
    """The task that keeps one infrastructure alive, and what its passes did."""

    infra_id: str
    interval: float
    stop: asyncio.Event
    task: asyncio.Task[Any] | None = None
    passes: list[PassResult] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def last(self) -> PassResult | None:
        return self.passes[-1] if self.passes else None


class InfrastructureManager:
    """Manages a set of infrastructures, each with its own maintenance process (async)."""

    def __init__(self, client: Client | None = None, *, interval: float = 10.0) -> None:
        self.client = client or Client()
        self.interval = interval
        self._processes: dict[str, MaintenanceProcess] = {}

    async def add(self, infra_desc: str | os.PathLike[str]) -> str:
        """Record the infrastructure and start maintaining it (its first pass makes it)."""
        infra_id = await self.submit_infrastructure(infra_desc)
        await self.start_provisioning(infra_id)
        return infra_id

    async def submit_infrastructure(self, infra_desc: str | os.PathLike[str]) -> str:
        """Check and record the infrastructure described (a spec file); nothing is made yet."""
        from cloudherd.engine.apply import submit
        from cloudherd.spec import load_spec

        return await submit(load_spec(infra_desc), self.client.store)

    async def start_provisioning(self, infra_id: str) -> MaintenanceProcess:
        """Start the maintenance process of a recorded infrastructure (also one made by ``up`` earlier)."""
        infra = self.client.store.resolve(infra_id)
        known = self._processes.get(infra.id)
        if known is not None and known.running:
            raise InfrastructureIDTakenError(f"{infra.name} ({infra.id}) is maintained by this manager already")
        await self.client.attach(infra.id)
        process = MaintenanceProcess(infra.id, self.interval, asyncio.Event())
        process.task = asyncio.create_task(self.client.manage(
            [infra.id], interval=self.interval, on_pass=process.passes.append, stop=process.stop))
        self._processes[infra.id] = process
        return process

    async def attach(self, infra_id: str) -> MaintenanceProcess:
        """Start provisioning an existing infrastructure (Occopus' name for it)."""
        return await self.start_provisioning(infra_id)

    def get(self, infra_id: str) -> MaintenanceProcess:
        """The maintenance process of ``infra_id``; InfrastructureIDNotFoundError when it is not maintained."""
        process = self._find(infra_id)
        if process is None or not process.running:
            raise InfrastructureIDNotFoundError(f"{infra_id} is not maintained by this manager")
        return process

    async def stop_provisioning(self, infra_id: str, wait_timeout: float = 60.0) -> None:
        """Stop maintaining ``infra_id`` after its current pass; nothing is torn down."""
        process = self.get(infra_id)
        process.stop.set()
        if process.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(process.task), wait_timeout)
            except TimeoutError:
                raise UsageError(f"{infra_id}: its pass did not end within {wait_timeout:g}s; it stops after it"
                                 ) from None
        await self.client.detach(process.infra_id)
        self._processes.pop(process.infra_id, None)

    async def detach(self, infra_id: str) -> None:
        """Stop provisioning an existing infrastructure (Occopus' name for it)."""
        await self.stop_provisioning(infra_id)

    async def tear_down(self, infra_id: str) -> str:
        """Destroy an infrastructure this manager does not maintain (stop provisioning it first)."""
        process = self._find(infra_id)
        if process is not None and process.running:
            raise ValueError(f"{infra_id} is maintained by this manager: call stop_provisioning first")
        return await self.client.down(infra_id)

    async def close(self) -> None:
        """Stop every maintenance process (after its pass) and the client."""
        for infra_id in list(self._processes):
            if self._processes[infra_id].running:
                await self.stop_provisioning(infra_id)
        await self.client.close()

    def _find(self, infra_id: str) -> MaintenanceProcess | None:
        if infra_id in self._processes:
            return self._processes[infra_id]
        try:
            resolved = self.client.store.resolve(infra_id).id
        except UsageError:
            return None
        return self._processes.get(resolved)


class SyncInfrastructureManager(Twin[InfrastructureManager], of=InfrastructureManager):
    """The blocking twin (generated, :mod:`cloudherd.api.twin`): the maintenance processes run on the twins'
    event loop, in a thread of its own, between the calls too."""

    if TYPE_CHECKING:  # what Twin generates, for mypy
        def __init__(self, client: Client | None = None, *, interval: float = 10.0) -> None: ...
        add = blocking(InfrastructureManager.add)
        submit_infrastructure = blocking(InfrastructureManager.submit_infrastructure)
        start_provisioning = attach = blocking(InfrastructureManager.start_provisioning)
        stop_provisioning = blocking(InfrastructureManager.stop_provisioning)
        detach = blocking(InfrastructureManager.detach)
        tear_down = blocking(InfrastructureManager.tear_down)
        close = blocking(InfrastructureManager.close)
        def get(self, infra_id: str) -> MaintenanceProcess: ...

    def __enter__(self) -> SyncInfrastructureManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
