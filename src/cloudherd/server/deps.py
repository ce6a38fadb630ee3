"""What the route modules share: the server's runtime, the caller, the caller's infrastructure, a spec upload.

One place, so that the native routes, Occopus' routes, the Query API and the dashboard find each the same way
(and none reaches into another route module for it)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from cloudherd.api.auth import Principal
from cloudherd.errors import NotFound, UsageError
from cloudherd.server.security import principal
from cloudherd.server.uploads import receive

if TYPE_CHECKING:
    from cloudherd.server.runtime import Runtime
    from cloudherd.state.models import Infrastructure as InfraRow

Caller = Annotated[Principal, Depends(principal)]


def runtime_of(request: Request) -> Runtime:
    """The server's runtime: its store, its client, its manager and jobs."""
    return request.app.state.runtime  # type: ignore[no-any-return]


def owned(runtime: Runtime, who: Principal, ref: str) -> InfraRow:
    """The caller's infrastructure by id, id prefix or name; 404 for anyone else's (the same answer, so that
    ids do not leak)."""
    try:
        infra = runtime.store.resolve(ref)
    except UsageError:
        raise NotFound(f"no infrastructure '{ref}'") from None
    if infra.owner_id != who.user_id:
        raise NotFound(f"no infrastructure '{ref}'")
    return infra


async def spec_upload(request: Request) -> Any:
    """The spec the request carries (YAML, or a tar.gz of it and its files), unpacked into a folder of its own."""
    body = await request.body()
    return await asyncio.to_thread(receive, body, request.headers.get("content-type", ""))
