"""Every ``CLOUDHERD_*`` environment variable cloudherd reads, declared once, with what it is for.

Read anew at each call of :func:`current` (a test, or ``--auth-data``, may change the environment while the
process runs), so nothing is cached at import.  Values stay text where a reader gives its own located error
for a bad one (a duration, a number); an empty variable counts as unset.  The cloud SDKs' own variables
(``AWS_*``, ``GOOGLE_*``) are each driver's, read by the driver as its SDK documents them.
"""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """cloudherd's settings from the environment (``CLOUDHERD_<NAME>``)."""

    model_config = SettingsConfigDict(env_prefix="CLOUDHERD_", env_ignore_empty=True, extra="ignore",
                                      frozen=True)

    home: str | None = None  # the data folder (default: the platform's user data folder)
    db: str | None = None  # the state database's URL (default: SQLite in the data folder)
    debug: str | None = None  # "1": tracebacks and the libraries' warnings
    lease_ttl: str | None = None  # how long a lease holds without renewal (a duration)
    ssh_concurrency: str | None = None  # SSH handshakes in flight (a number)
    secret_key: SecretStr | None = None  # the key that seals AWS-style token secrets at rest
    server: str | None = None  # a `cloudherd serve` to use instead of the local state
    token: SecretStr | None = None  # its API token
    local_root: str | None = None  # where local nodes live
    local_server: str | None = None  # local nodes' SSH server: auto, openssh or builtin
    local_isolation: str | None = None  # local nodes' sandbox: auto, none or required
    local_shared: str | None = None  # folders local nodes may mount, comma-separated

    @property
    def debugging(self) -> bool:
        return self.debug == "1"


def current() -> Settings:
    """The settings as the environment says now."""
    return Settings()
