"""The provider interface: a small async contract every cloud driver implements, bulk first.

Providers know nothing of the database: they make, find and remove machines, and describe them as
:class:`Instance`.  The engine decides on retries, failover and rollback from the error *type*.
"""

from __future__ import annotations

import abc
import builtins
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cloudherd.errors import CloudherdError

TAG_INFRA = "cloudherd:infra"
TAG_GROUP = "cloudherd:group"
TAG_OWNER = "cloudherd:owner"
TAG_INTENT = "cloudherd:intent"
TAG_NODE = "cloudherd:node"


class ProviderError(CloudherdError):
    """A cloud call failed; subclasses say how the engine should react."""


class CapacityError(ProviderError):
    """The cloud has no capacity for this shape here now: try another place."""


class QuotaError(ProviderError):
    """An account limit was hit: try another place or ask for a higher quota."""


class ThrottledError(ProviderError):
    """Too many calls: retry with backoff."""


class TransientError(ProviderError):
    """The cloud failed on its side (5xx, a dropped connection): the same call may well work again."""


class AuthError(ProviderError):
    """Credentials are missing or refused."""


class NotFoundError(ProviderError):
    """The machine, image or size does not exist."""


class InvalidRequestError(ProviderError):
    """The request cannot succeed as written."""


class MissingDependencyError(ProviderError):
    """The driver's SDK is not installed; the message names the extra to install."""


class UnknownProviderError(InvalidRequestError):
    """No driver of that type (a usage error: exit code 2)."""

    exit_code = 2


@dataclass(frozen=True)
class CreateRequest:
    """N alike instances of one shape, with the tags that find them again.

    ``names`` (one per instance, optional) and ``token`` make a retried create idempotent where the
    cloud allows it.
    """

    count: int
    image: str | None
    size: str | None
    tags: Mapping[str, str]
    ssh_user: str
    ssh_public_key: str
    names: Sequence[str] = ()
    token: str | None = None
    ports: Sequence[int] = ()  # inbound TCP ports to open besides SSH
    size_need: SizeNeed | None = None  # when set (and ``size`` is None), the smallest size that fits


@dataclass(frozen=True)
class SizeNeed:
    """At least this many cpus and MiB of memory (either may be None: no minimum)."""

    cpus: float | None = None
    memory_mib: int | None = None


@dataclass
class Instance:
    """One machine as a provider sees it."""

    id: str
    name: str
    state: str  # pending | running | stopped | dead | terminated
    address: str | None
    port: int = 22
    private_address: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    ssh_user: str | None = None
    host_key: str | None = None  # OpenSSH public host key, when the provider knows it before first contact
    workdir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.state in ("pending", "running")


@dataclass(frozen=True)
class Size:
    name: str
    cpus: float
    memory_mb: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    extra: dict[str, Any] = field(default_factory=dict)


class Provider(abc.ABC):
    """An async driver for one cloud (or this computer).  One object per configured provider."""

    type: ClassVar[str]
    retries_itself: ClassVar[bool] = False  # True: the driver retries throttling itself (no second layer)

    def __init__(self, name: str, settings: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.settings = dict(settings or {})

    @abc.abstractmethod
    async def create(self, request: CreateRequest) -> list[Instance]:
        """Make ``request.count`` instances in as few calls as the cloud allows."""

    @abc.abstractmethod
    async def list(self, tags: Mapping[str, str]) -> list[Instance]:
        """Every instance carrying all of ``tags`` (terminated ones excluded)."""

    @abc.abstractmethod
    async def terminate(self, ids: Sequence[str]) -> None:
        """Destroy the instances; ids already gone are not an error."""

    async def stop(self, ids: Sequence[str]) -> None:
        raise InvalidRequestError(f"provider {self.name} cannot stop instances")

    async def start(self, ids: Sequence[str]) -> None:
        raise InvalidRequestError(f"provider {self.name} cannot start instances")

    async def tag(self, ids: Sequence[str], tags: Mapping[str, str]) -> None:
        """Add (or overwrite) tags on instances; used to adopt machines into an infrastructure."""
        raise InvalidRequestError(f"provider {self.name} cannot change the tags of instances")

    async def sizes(self, pattern: str | None = None) -> builtins.list[Size]:
        return []

    async def images(self, pattern: str | None = None) -> builtins.list[Image]:
        return []

    async def regions(self) -> builtins.list[str]:
        return []

    async def default_size(self) -> str | None:
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and sessions."""


def matches(pattern: str | None, text: str) -> bool:
    """Catalog filter: a regular expression searched in the name (None matches all)."""
    return pattern is None or re.search(pattern, text, re.IGNORECASE) is not None


def smallest_fitting(sizes: Sequence[Size], need: SizeNeed) -> Size:
    """The cheapest-looking size that meets ``need``: fewest cpus, then least memory, then name."""
    fitting = [
        s for s in sizes
        if (need.cpus is None or s.cpus >= need.cpus) and (need.memory_mib is None or s.memory_mb >= need.memory_mib)
    ]
    if not fitting:
        raise InvalidRequestError(
            f"no size has at least {need.cpus or 0:g} cpus and {need.memory_mib or 0} MiB of memory"
        )
    return min(fitting, key=lambda s: (s.cpus, s.memory_mb, s.name))


def has_tags(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())
