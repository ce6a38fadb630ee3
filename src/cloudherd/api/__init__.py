"""The Python API: :class:`Client` (async) and :class:`SyncClient`, its blocking twin; machine handles;
py-smartdc's :class:`DataCenter` (and :class:`AsyncDataCenter`) over any provider.

Results are the frozen values of :mod:`cloudherd.api.types`.  Both clients also speak OGC's
``launch`` / ``deploy`` / ``exec_async`` / ``destroy`` (see :mod:`cloudherd.api.ogc`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it, imported on first use: a command that needs the client alone (``ls``)
# does not pay for py-smartdc's, the machines' and the Occopus manager's modules
_LAZY = {
    "Client": "client", "SyncClient": "client",
    "AsyncDataCenter": "datacenter", "BootScriptError": "datacenter", "DataCenter": "datacenter",
    "Machine": "machine", "PollTimeoutError": "machine", "SyncMachine": "machine", "machines": "machine",
    "sync_machines": "machine",
    "InfrastructureManager": "manager", "SyncInfrastructureManager": "manager",
    "types": None,
}

__all__ = ["AsyncDataCenter", "BootScriptError", "Client", "DataCenter", "InfrastructureManager", "Machine",
           "PollTimeoutError", "SyncClient", "SyncInfrastructureManager", "SyncMachine", "machines", "sync_machines",
           "types"]

if TYPE_CHECKING:
    from cloudherd.api import types
    from cloudherd.api.client import Client, SyncClient
    from cloudherd.api.datacenter import AsyncDataCenter, BootScriptError, DataCenter
    from cloudherd.api.machine import Machine, PollTimeoutError, SyncMachine, machines, sync_machines
    from cloudherd.api.manager import InfrastructureManager, SyncInfrastructureManager


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cloudherd.api' has no attribute {name!r}")
    module = importlib.import_module(f"cloudherd.api.{_LAZY[name] or name}")
    return module if _LAZY[name] is None else getattr(module, name)
