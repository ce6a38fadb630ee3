"""Every ``CLOUDHERD_*`` environment variable cloudherd reads, declared once, with what it is for.

Read anew at each call of :func:`current` (a test, or ``--auth-data``, may change the environment while the
process runs), so nothing is cached at import.  Values stay text where a reader gives its own located error
for a bad one (a duration, a number); an empty variable counts as unset; secrets stay out of ``repr``.  The
cloud SDKs' own variables (``AWS_*``, ``GOOGLE_*``) are each driver's, read as its SDK documents them.

A plain dataclass on purpose: pydantic-settings did the same here for 55 ms of imports (asyncio, the plugin
loader…) on every command's start, a sixth of a read-only command's floor (``bench/cli.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

PREFIX = "CLOUDHERD_"


@dataclass(frozen=True)
class Settings:
    """cloudherd's settings from the environment: field ``name`` is ``CLOUDHERD_NAME``."""

    home: str | None = None  # the data folder (default: the platform's user data folder)
    db: str | None = None  # the state database's URL (default: SQLite in the data folder)
    debug: str | None = None  # "1": tracebacks and the libraries' warnings
    lease_ttl: str | None = None  # how long a lease holds without renewal (a duration)
    ssh_concurrency: str | None = None  # SSH handshakes in flight (a number)
    secret_key: str | None = field(default=None, repr=False)  # seals AWS-style token secrets at rest
    server: str | None = None  # a `cloudherd serve` to use instead of the local state
    token: str | None = field(default=None, repr=False)  # its API token
    local_root: str | None = None  # where local nodes live
    local_server: str | None = None  # local nodes' SSH server: auto, openssh or builtin
    local_isolation: str | None = None  # local nodes' sandbox: auto, none or required
    local_shared: str | None = None  # folders local nodes may mount, comma-separated
    budget_hourly: str | None = None  # US dollars an hour an infrastructure without a budget of its own may cost
    budget_total: str | None = None  # US dollars such an infrastructure may cost in all (then it is stopped)
    webhook_timeout: str | None = None  # how long a webhook's receiver has to answer (a duration)
    webhook_attempts: str | None = None  # attempts before a notification is given up (a number)
    webhook_max_age: str | None = None  # a notification this old is given up at its next failure (a duration)

    @property
    def debugging(self) -> bool:
        return self.debug == "1"

    @classmethod
    def variables(cls) -> list[str]:
        """The environment variables read, by name."""
        return [PREFIX + f.name.upper() for f in fields(cls)]


def current() -> Settings:
    """The settings as the environment says now."""
    environ = os.environ
    return Settings(**{f.name: environ.get(PREFIX + f.name.upper()) or None for f in fields(Settings)})
