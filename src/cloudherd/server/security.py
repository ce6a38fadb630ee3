"""Who is asking: the bearer token of every route but ``/healthz``.

A missing, malformed, unknown, revoked or wrong token all answer the same 401, so that an answer never
tells which tokens exist.  Another user's infrastructure answers 404, exactly as a missing one does.
"""

from __future__ import annotations

import asyncio

from fastapi import HTTPException, Request

from cloudherd.api.auth import Principal, authenticate
from cloudherd.observe import cause

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="cloudherd"'}


def unauthorized(detail: str = "a valid API token is required (Authorization: Bearer …; "
                               "make one with `cloudherd token create`)") -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers=CHALLENGE)


async def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; 401 otherwise.  The gate (server/gate.py) has
    checked it already, before the body was read: its answer is taken."""
    checked = getattr(request.state, "principal", None)
    if isinstance(checked, Principal):
        return _in_request(request, checked)
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise unauthorized()
    store = request.app.state.runtime.store
    who = await asyncio.to_thread(authenticate, store, presented.strip())
    if who is None:
        raise unauthorized("the API token is not valid (unknown, revoked or mistyped)")
    return _in_request(request, who)


def _in_request(request: Request, who: Principal) -> Principal:
    """What the request's events say they happened in: the route and the caller (never the token)."""
    cause.begin(f"{request.method} {request.url.path} (by {who.user_name})")
    return who
