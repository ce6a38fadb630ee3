"""The Python API: :class:`Client` (async) and :class:`SyncClient`, its blocking twin."""

from cloudherd.api.client import Client, SyncClient

__all__ = ["Client", "SyncClient"]
