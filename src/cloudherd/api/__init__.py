"""The Python API: :class:`Client` (async) and :class:`SyncClient`, its blocking twin; machine handles.

Results are the frozen values of :mod:`cloudherd.api.types`.
"""

from cloudherd.api import types
from cloudherd.api.client import Client, SyncClient
from cloudherd.api.machine import Machine, PollTimeoutError, SyncMachine, machines, sync_machines
from cloudherd.api.manager import InfrastructureManager, SyncInfrastructureManager

__all__ = ["Client", "InfrastructureManager", "Machine", "PollTimeoutError", "SyncClient", "SyncInfrastructureManager",
           "SyncMachine", "machines", "sync_machines", "types"]
