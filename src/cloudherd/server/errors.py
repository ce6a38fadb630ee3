"""cloudherd's errors as HTTP answers: a status that says what kind, and the one-line message.

400 for a bad spec or request, 404 for what does not exist (or is not the caller's), 409 for a name
taken or an operation already changing the infrastructure, 502 when a cloud fails, 503 when the state
database does.  Never a traceback: an unexpected error is a 500 with its class name only."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from cloudherd.engine.locks import BusyError
from cloudherd.errors import CloudherdError, NameTaken, SpecError, StateError, UsageError
from cloudherd.providers.base import ProviderError

log = logging.getLogger("cloudherd.server")
# where uploads are unpacked is the server's business: a spec error names the file as the caller sent it
_UPLOADS = re.compile(r"/\S*/server/uploads/[0-9a-f]{32}/")


class Conflict(UsageError):
    """A name taken, or a change that conflicts with the infrastructure's state: 409."""


class NotFound(UsageError):
    """Not there, or not the caller's (the same answer, so that ids do not leak): 404."""


def status_of(exc: CloudherdError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict | NameTaken | BusyError):
        return 409
    if isinstance(exc, SpecError | UsageError):
        return 400
    if isinstance(exc, ProviderError):
        return 502
    if isinstance(exc, StateError):
        return 503
    return 400


def clean(message: str) -> str:
    """The message as the caller may see it: upload folders left out, text that JSON can carry (a spec's lone
    surrogate, echoed back in its error, is shown escaped)."""
    return _UPLOADS.sub("", message).encode("utf-8", "backslashreplace").decode("utf-8")


def install(app: FastAPI) -> None:
    @app.exception_handler(CloudherdError)
    async def known(_request: Request, exc: CloudherdError) -> JSONResponse:
        return JSONResponse({"detail": clean(Exception.__str__(exc))}, status_code=status_of(exc))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s", exc.__class__.__name__, exc_info=exc)
        return JSONResponse({"detail": f"internal error ({exc.__class__.__name__})"}, status_code=500)
