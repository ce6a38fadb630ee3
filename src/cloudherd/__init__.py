"""cloudherd: launch fleets of machines from one declarative spec, deploy over SSH, tear them down.

``from cloudherd import Client, SyncClient, DataCenter`` works; the API is imported on first use of one of
those names, so that ``import cloudherd`` (and ``cloudherd --version``) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudherd.quiet import quiet_libraries

__version__ = "0.1.0"

quiet_libraries()  # a library's deprecation notice is for cloudherd's developers, not its users

# name -> the module that defines it (imported on first access)
_LAZY = {
    "Client": "cloudherd.api.client",
    "SyncClient": "cloudherd.api.client",
    "DataCenter": "cloudherd.api.datacenter",
    "AsyncDataCenter": "cloudherd.api.datacenter",
    "BootScriptError": "cloudherd.api.datacenter",
    "Machine": "cloudherd.api.machine",
    "SyncMachine": "cloudherd.api.machine",
    "PollTimeoutError": "cloudherd.api.machine",
}

__all__ = ["AsyncDataCenter", "BootScriptError", "Client", "DataCenter", "Machine", "PollTimeoutError",
           "SyncClient", "SyncMachine", "__version__"]

if TYPE_CHECKING:
    from cloudherd.api.client import Client, SyncClient
    from cloudherd.api.datacenter import AsyncDataCenter, BootScriptError, DataCenter
    from cloudherd.api.machine import Machine, PollTimeoutError, SyncMachine


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cloudherd' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
