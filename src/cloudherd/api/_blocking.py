"""Running the async API to completion for the blocking twins (:class:`SyncClient`, :class:`SyncMachine`)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from cloudherd.errors import UsageError

T = TypeVar("T")


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` that refuses, clearly, inside a running event loop (where it would deadlock or fail)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    coroutine.close()
    raise UsageError("the blocking API cannot run inside a running event loop: use cloudherd.api.Client "
                     "(async) there, with await")
