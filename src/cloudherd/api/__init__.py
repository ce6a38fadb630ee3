"""The Python API: :class:`Client` (async) and :class:`SyncClient`, its blocking twin; machine handles.

Results are the frozen values of :mod:`cloudherd.api.types`.
"""

from cloudherd.api import types
from cloudherd.api.client import Client, SyncClient
from cloudherd.api.machine import Machine, PollTimeoutError, SyncMachine, machines, sync_machines

__all__ = ["Client", "Machine", "PollTimeoutError", "SyncClient", "SyncMachine", "machines", "sync_machines", "types"]
