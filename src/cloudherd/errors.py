"""The typed error hierarchy users see.

Every error a user can cause or meet carries a one-line message that says what, where and what to do,
and an exit code; the CLI prints ``str(error)`` and exits with ``error.exit_code`` (tracebacks only
with ``--debug``).  Provider errors live in :mod:`cloudherd.providers.base` and derive from here.
"""

from __future__ import annotations


class CloudherdError(Exception):
    """Base of every error cloudherd raises on purpose.

    ``remedy`` names the option that fixes it (an API keyword such as ``accept_new_host_key``) and its
    value: each face says it its own way (the CLI as a flag), so the engine's messages stay free of
    any one face's syntax.
    """

    exit_code = 1

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


class NameTaken(UsageError):
    """An active infrastructure has that name already (the REST face answers 409)."""


class StateError(CloudherdError):
    """The state database cannot be opened or migrated."""


class DeployError(CloudherdError):
    """A node could not be reached or one of its scripts failed."""


class ApplyFailed(CloudherdError):
    """An ``up`` failed; what it created was rolled back unless asked to keep it."""


class BusyError(CloudherdError):
    """Another operation holds the infrastructure, and waiting for it ran out (or was not wanted)."""

    exit_code = 3


class FencedOut(BusyError):
    """The lease this work held was taken by another holder meanwhile, or lapsed (this process was paused
    past its TTL): the work stops before acting on what it no longer holds."""
