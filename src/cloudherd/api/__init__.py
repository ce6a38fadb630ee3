"""The Python API: :class:`Client` (async) and :class:`SyncClient`, its blocking twin; machine handles;
py-smartdc's :class:`DataCenter` (and :class:`AsyncDataCenter`) over any provider.

Results are the frozen values of :mod:`cloudherd.api.types`.  Both clients also speak OGC's
``launch`` / ``deploy`` / ``exec_async`` / ``destroy`` (see :mod:`cloudherd.api.ogc`).
"""

from cloudherd.api import types
from cloudherd.api.client import Client, SyncClient
from cloudherd.api.datacenter import AsyncDataCenter, BootScriptError, DataCenter
from cloudherd.api.machine import Machine, PollTimeoutError, SyncMachine, machines, sync_machines
from cloudherd.api.manager import InfrastructureManager, SyncInfrastructureManager

__all__ = ["AsyncDataCenter", "BootScriptError", "Client", "DataCenter", "InfrastructureManager", "Machine",
           "PollTimeoutError", "SyncClient", "SyncInfrastructureManager", "SyncMachine", "machines", "sync_machines",
           "types"]
