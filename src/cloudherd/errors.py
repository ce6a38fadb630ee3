"""The typed error hierarchy users see.

Every error a user can cause or meet carries a one-line message that says what, where and what to do,
an exit code and an HTTP status: the CLI prints ``str(error)`` and exits with ``error.exit_code``
(tracebacks only with ``--debug``); the REST service answers ``http_status`` with the class's name, and
:func:`from_answer` makes the same error again on the client's side, so that a command run through a
server exits as it would beside the state.  The class attributes are the one table both directions read.
Provider errors live in :mod:`cloudherd.providers.base` and derive from here.
"""

from __future__ import annotations

from typing import Any


class CloudherdError(Exception):
    """Base of every error cloudherd raises on purpose.

    ``remedy`` names the option that fixes it (an API keyword such as ``accept_new_host_key``) and its
    value: each face says it its own way (the CLI as a flag), so the engine's messages stay free of
    any one face's syntax.
    """

    exit_code = 1
    http_status = 400

    def __init__(self, *args: object, remedy: tuple[str, str] | None = None) -> None:
        super().__init__(*args)
        self.remedy = remedy

    def __str__(self) -> str:
        text = super().__str__()
        if self.remedy is None:
            return text
        option, value = self.remedy  # an empty value: a yes/no option
        return f"{text} ({option}={value!r})" if value else f"{text} ({option}=True)"


class UsageError(CloudherdError):
    """The user asked for something that cannot be done as asked (unknown id, ambiguous prefix…)."""

    exit_code = 2


class SpecError(UsageError):
    """A spec file is invalid; rendered as ``FILE:LINE: path: message``."""

    def __init__(self, file: str, line: int | None, path: str, message: str) -> None:
        self.file = file
        self.line = line
        self.path = path
        self.message = message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {path}: {message}" if path else f"{where}: {message}")


class NotFound(UsageError):
    """Not there, or not the caller's (the same answer, so that ids do not leak)."""

    http_status = 404


class Conflict(UsageError):
    """A change that conflicts with the infrastructure's state."""

    http_status = 409


class NameTaken(Conflict):
    """An active infrastructure has that name already."""


class StateError(CloudherdError):
    """The state database cannot be opened or migrated (the REST service: away, try again)."""

    http_status = 503


class DeployError(CloudherdError):
    """A node could not be reached or one of its scripts failed."""


class ApplyFailed(CloudherdError):
    """An ``up`` failed; what it created was rolled back unless asked to keep it."""


class BusyError(CloudherdError):
    """Another operation holds the infrastructure, and waiting for it ran out (or was not wanted)."""

    exit_code = 3
    http_status = 409


class FencedOut(BusyError):
    """The lease this work held was taken by another holder meanwhile, or lapsed (this process was paused
    past its TTL): the work stops before acting on what it no longer holds."""


def _classes(root: type[CloudherdError] = CloudherdError) -> list[type[CloudherdError]]:
    found = [root]
    for sub in root.__subclasses__():
        found += _classes(sub)
    return found


def _by_status(status: int) -> type[CloudherdError]:
    """The error an answer without a known class name means: what its status says, at the least."""
    if status >= 500:
        return StateError
    return {404: NotFound, 409: Conflict}.get(status, UsageError)


def from_answer(status: int, body: Any) -> CloudherdError:
    """The error a REST answer carries (``{"detail", "error", "remedy"}``), made again as the class the
    server raised when this process knows it, else as the class its status says; its message unchanged."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI's 422: the first problems, in a line
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail[:3])
    name = body.get("error") if isinstance(body, dict) else None
    cls = next((c for c in _classes() if c.__name__ == name), None) or _by_status(status)
    made = cls.__new__(cls)  # its own __init__ may want its parts (a SpecError's file and line): the text is whole
    Exception.__init__(made, str(detail if detail is not None else body))
    remedy = body.get("remedy") if isinstance(body, dict) else None
    made.remedy = (str(remedy[0]), str(remedy[1])) if isinstance(remedy, list) and len(remedy) == 2 else None
    return made


def answer_of(exc: CloudherdError, detail: str) -> dict[str, Any]:
    """The REST body of an error: its message (as the caller may see it), its class and its remedy."""
    body: dict[str, Any] = {"detail": detail, "error": exc.__class__.__name__}
    if exc.remedy:
        body["remedy"] = list(exc.remedy)
    return body
