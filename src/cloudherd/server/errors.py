"""cloudherd's errors as HTTP answers: a status that says what kind, and the one-line message.

400 for a bad spec or request, 404 for what does not exist (or is not the caller's), 409 for a name
taken or an operation already changing the infrastructure, 502 when a cloud fails, 503 when the state
database does.  Never a traceback: an unexpected error is a 500 with its class name only."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from cloudherd.errors import CloudherdError, Conflict, NotFound, StateError, answer_of

log = logging.getLogger("cloudherd.server")
# where uploads are unpacked is the server's business: a spec error names the file as the caller sent it
RETRY_AFTER = 5  # seconds a caller waits before trying again when the state database is away
_UPLOADS = re.compile(r"/[^\s\"'<>]*/server/(?:uploads/[0-9a-f]{32}/|autoscaling/[^\s\"'<>#/]*#)")


__all__ = ["Conflict", "NotFound"]  # where the route modules have always taken them from


def status_of(exc: CloudherdError) -> int:
    """The HTTP status of an error: the class's own (:mod:`cloudherd.errors` is the one table)."""
    return exc.http_status


def without_paths(message: str) -> str:
    """The message with the server's own folders left out (uploads, generated Auto Scaling specs)."""
    return _UPLOADS.sub("", message)


def clean(message: str) -> str:
    """The message as the caller may see it: upload folders left out, text that JSON can carry (a spec's lone
    surrogate, echoed back in its error, is shown escaped)."""
    return _UPLOADS.sub("", message).encode("utf-8", "backslashreplace").decode("utf-8")


def database_fault(exc: BaseException) -> bool:
    """Whether an error is the state database being away (down, restarting, out of connections): a 503 the
    caller may retry, not a bug."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc.orig, OSError) or \
            exc.__class__.__name__ in ("OperationalError", "InterfaceError")
    return isinstance(exc, DisconnectionError | PoolTimeout | StateError)


def unavailable(path: str) -> Response:
    """503 with Retry-After, in the route's own format."""
    message = "the state database is not answering; try again shortly"
    if is_query_api(path):
        answer = aws_error("ServiceUnavailable", message, 503, str(uuid.uuid4()))
    else:
        answer = JSONResponse({"detail": message}, status_code=503)
    answer.headers["Retry-After"] = str(RETRY_AFTER)
    return answer


def too_large_answer(path: str, exc: HTTPException) -> Response:
    if is_query_api(path):
        return aws_error("RequestEntityTooLarge", str(exc.detail), 413, str(uuid.uuid4()))
    return JSONResponse({"detail": exc.detail}, status_code=413)


NAMESPACE = "http://autoscaling.amazonaws.com/doc/2011-01-01/"  # of the AWS Auto Scaling Query API's XML


class BodyTooLarge(HTTPException):
    """A body past its route's limit (server/gate.py): 413, in the route's own error format."""

    def __init__(self, limit: int) -> None:
        shown = f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"
        super().__init__(413, f"the request body is larger than this route takes ({shown})")
        self.limit = limit


def aws_error(code: str, message: str, status: int, request_id: str) -> Response:
    """An error as AWS's Query API writes it (boto reads the code and message), with no server path in it."""
    message = without_paths(message)  # a generated spec's path is the server's business: "user_data:2: …" helps
    kind = "Receiver" if status >= 500 else "Sender"
    xml = (f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{kind}</Type><Code>{xml_text(code)}</Code>'
           f"<Message>{xml_text(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")
    return Response(xml, status_code=status, media_type="text/xml")


def xml_text(value: str) -> str:
    """Text as XML character data: escaped, and what XML 1.0 cannot carry (a control character, U+FFFF, a lone
    surrogate) shown as U+FFFD; input holding such is refused, but a row stored before may hold it."""
    from xml.sax.saxutils import escape

    from cloudherd.api.autoscaling import NOT_XML

    return escape(NOT_XML.sub("\ufffd", value))


def is_query_api(path: str) -> bool:
    return path in ("/", "/autoscaling") or path.startswith("/autoscaling/")


class ServerJSON(JSONResponse):
    """The JSON of every answer, with the server's own folders left out: a spec sent as ``cloudherd.yml`` is
    ``cloudherd.yml`` (and its script ``cloudherd.yml#show.sh``) to its sender, not a path on the server."""

    def render(self, content: Any) -> bytes:
        return _UPLOADS.sub("", super().render(content).decode("utf-8")).encode("utf-8")


def install(app: FastAPI) -> None:
    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> Response:
        return too_large_answer(request.url.path, exc)

    async def database_away(request: Request, exc: Exception) -> Response:
        log.warning("state database fault: %s", exc.__class__.__name__)
        return unavailable(request.url.path)

    # by class, so that the inner exception middleware answers them (the outermost one, for Exception, always
    # re-raises after answering: uvicorn then logs a traceback and drops the kept-alive connection)
    from sqlalchemy.exc import DBAPIError, DisconnectionError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    for fault in (DBAPIError, DisconnectionError, PoolTimeout):
        app.add_exception_handler(fault, database_away)

    @app.exception_handler(CloudherdError)
    async def known(request: Request, exc: CloudherdError) -> Response:
        if isinstance(exc, StateError):
            return unavailable(request.url.path)
        return JSONResponse(answer_of(exc, clean(Exception.__str__(exc))), status_code=status_of(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        if database_fault(exc):
            log.warning("state database fault: %s", exc.__class__.__name__)
            return unavailable(request.url.path)
        log.error("internal error: %s", exc.__class__.__name__, exc_info=exc)
        return JSONResponse({"detail": f"internal error ({exc.__class__.__name__})"}, status_code=500)
