"""The door of ``cloudherd serve``: who is asking and how much they may send, settled from the headers before
a byte of the body is read.

Why a middleware: FastAPI reads (and parses) a route's body before it resolves the route's dependencies, so
a token checked as a dependency came after 150 MB of someone's upload was already in memory.  Here the
bearer routes (``/v1``, Occopus' ``/infrastructures``) are authenticated first, and the principal is handed
on to the route (:func:`cloudherd.server.security.principal` takes it from the request's state); every
route has a body limit by kind — a spec or bundle, a form, a JSON call — enforced from ``Content-Length``
and again while the body streams in (a chunked upload is cut at the limit), answered 413.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloudherd.server.errors import BodyTooLarge
from cloudherd.server.uploads import MAX_BUNDLE_BYTES

KiB = 1024
MiB = 1024 * KiB
SPEC_LIMIT = MAX_BUNDLE_BYTES + 64 * KiB  # a tar.gz bundle, with room for its headers
FORM_LIMIT = 64 * KiB  # the dashboard's forms: a token, a CSRF token, a scale amount
QUERY_API_LIMIT = 1 * MiB  # an Auto Scaling call: AWS itself takes UserData of at most 21 847 bytes
CALL_LIMIT = 1 * MiB  # every other body: a JSON call (an exec command is at most 100 000 characters)
BEARER_PREFIXES = ("/v1/", "/infrastructures")


def body_limit(method: str, path: str) -> int:
    """How many bytes a request to ``path`` may carry."""
    if method in ("POST", "PUT") and (path in ("/v1/infrastructures", "/v1/plan", "/infrastructures",
                                               "/infrastructures/") or path.endswith("/spec")):
        return SPEC_LIMIT
    if path in ("/", "/autoscaling"):
        return QUERY_API_LIMIT
    if path.startswith("/ui"):
        return FORM_LIMIT
    return CALL_LIMIT


def needs_bearer(path: str) -> bool:
    return path.startswith(BEARER_PREFIXES)


class Gate:
    """ASGI middleware: bearer auth from the headers, then the body let through up to its route's limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if needs_bearer(scope["path"]):
            try:
                refused = await _authenticate(scope)
            except Exception as exc:  # the database away: a 503 here, or uvicorn drops the connection after it
                from cloudherd.server.errors import database_fault, unavailable

                if not database_fault(exc):
                    raise
                await unavailable(scope["path"])(scope, receive, send)
                return
            if refused is not None:
                await _answer(scope, receive, send, refused)
                return
        limit = body_limit(scope["method"], scope["path"])
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isascii() or not declared.isdigit() or len(declared) > 15
                                     or int(declared) > limit):
            await _answer(scope, receive, send, BodyTooLarge(limit))
            return
        await self.app(scope, _counted(receive, limit), send)


def _counted(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return counted


async def _authenticate(scope: Scope) -> HTTPException | None:
    """None when the bearer token is good (the principal put in the request's state), else the 401."""
    from cloudherd.api.auth import authenticate
    from cloudherd.server.security import unauthorized

    scheme, _, presented = Headers(scope=scope).get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return unauthorized()
    store = scope["app"].state.runtime.store
    who = await asyncio.to_thread(authenticate, store, presented.strip())
    if who is None:
        return unauthorized("the API token is not valid (unknown, revoked or mistyped)")
    scope.setdefault("state", {})["principal"] = who
    return None


async def _answer(scope: Scope, receive: Receive, send: Send, exc: HTTPException) -> None:
    from cloudherd.server.errors import too_large_answer

    if isinstance(exc, BodyTooLarge):
        response: Any = too_large_answer(scope["path"], exc)
    else:
        response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    await response(scope, receive, send)
