"""The provider interface: a small async contract every cloud driver implements, bulk first.

Providers know nothing of the database: they make, find and remove machines, and describe them as
:class:`Instance`.  The engine decides on retries, failover and rollback from the error *type*.
"""

from __future__ import annotations

import abc
import builtins
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Protocol, runtime_checkable

from cloudherd.errors import CloudherdError

TAG_INFRA = "cloudherd:infra"
TAG_GROUP = "cloudherd:group"
TAG_OWNER = "cloudherd:owner"
TAG_INTENT = "cloudherd:intent"
TAG_NODE = "cloudherd:node"
TAG_TOKEN = "cloudherd:token"  # a create call's idempotency token, where the cloud keeps none of its own
TAG_DEADLINE = "cloudherd:deadline"  # when the machine ends itself (Unix seconds): Capability.NODE_TIMER


class ProviderError(CloudherdError):
    """A cloud call failed; subclasses say how the engine should react.

    ``code`` is the cloud's own error code when it sent one (``InsufficientInstanceCapacity``,
    ``QUOTA_EXCEEDED``, ``rateLimitExceeded``…), ``status`` the HTTP status (0: none, e.g. a dropped
    connection), ``attempts`` how many times the call was made before this error was given up on.
    The *type* says what to do; the code is for messages and for drivers that must tell two refusals of
    the same type apart (a duplicate that is fine, a missing group).
    """

    http_status = 502  # the REST service's answer: a cloud behind it failed
    code: str | None = None
    status = 0
    attempts = 1

    def __init__(self, message: str = "", *, code: str | None = None, status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.attempts = 1


class CapacityError(ProviderError):
    """The cloud has no capacity for this shape here now: try another place."""


class QuotaError(ProviderError):
    """An account limit was hit: try another place or ask for a higher quota."""


class ThrottledError(ProviderError):
    """Too many calls: retried with backoff by the rate budget (the one retry layer)."""


class TransientError(ProviderError):
    """The cloud failed on its side (5xx, a dropped connection): the same call may well work again;
    retried with backoff by the rate budget."""


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
    user_data: str | None = None  # the node's own first-boot data (a cloud-config), merged with the login part
    market: str = "on-demand"  # or "spot": spare capacity the cloud may take back (Capability.SPOT)
    max_price: float | None = None  # of a spot machine, US dollars an hour (None: up to the on-demand price)
    deadline: int | None = None  # Capability.NODE_TIMER: the machine ends itself then (Unix seconds; see TAG_DEADLINE)
    on_deadline: str = "terminate"  # … by terminating itself, or "stop"


@dataclass(frozen=True)
class SizeNeed:
    """At least this many cpus and MiB of memory (either may be None: no minimum)."""

    cpus: float | None = None
    memory_mib: int | None = None


class InstanceState(enum.StrEnum):
    """Where a machine is in its life; a ``str`` so that ``state == "running"`` keeps working."""

    PENDING = "pending"  # being made or started: not yet reachable
    RUNNING = "running"
    STOPPED = "stopped"  # (or stopping) exists, costs storage, can be started
    DEAD = "dead"  # exists but is broken (its server died, the cloud says error)
    TERMINATED = "terminated"  # gone or going; never listed by ``Provider.list``


class Capability(enum.StrEnum):
    """What a provider may or may not do; ask :meth:`Provider.supports` instead of calling and catching."""

    STOP_START = "stop_start"
    TAG = "tag"
    PORTS = "ports"  # open_ports / close_ports: inbound TCP ports of a group
    SIZES = "sizes"
    IMAGES = "images"
    REGIONS = "regions"
    FAULTS = "faults"  # fault(): make an instance misbehave on purpose, or heal it (see FaultInjector)
    SPOT = "spot"  # creates spot machines (CreateRequest.market) and tells an interruption by ended()
    NODE_TIMER = "node_timer"  # a machine ends itself at the TAG_DEADLINE tag's time, with no manager left to


# The faults a provider with Capability.FAULTS makes on demand: every process killed at once, every process
# stopped (the node accepts TCP and answers nothing), its traffic dropped; ``heal``, which undoes the last two; and
# ``interrupt``, a spot machine taken back by the cloud (ended, with the spot reason ended() then gives).
FAULTS = ("crash", "hang", "partition", "heal", "interrupt")

SPOT_INTERRUPTED = "spot interruption"  # how ended() begins the reason of a machine the cloud took back


@runtime_checkable
class FaultInjector(Protocol):
    """What a provider with :attr:`Capability.FAULTS` offers besides the contract (``local``: its own nodes)."""

    async def fault(self, node_id: str, kind: str, peer: str | None = None) -> str:
        """Apply fault ``kind`` (one of :data:`FAULTS`) to instance ``node_id`` (a ``partition`` from the address
        ``peer`` alone, when given); returns what was done, in words."""
        ...


@dataclass
class Instance:
    """One machine as a provider sees it."""

    id: str
    name: str
    state: InstanceState  # strings are taken too (made an InstanceState)
    address: str | None
    port: int = 22
    private_address: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    ssh_user: str | None = None
    host_key: str | None = None  # OpenSSH public host key, when the provider knows it before first contact
    workdir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = InstanceState(self.state)

    @property
    def alive(self) -> bool:
        return self.state in (InstanceState.PENDING, InstanceState.RUNNING)


@dataclass(frozen=True)
class PortsHandle:
    """What :meth:`Provider.open_ports` made or found: a security group, a firewall rule (``kind``).

    ``tags`` are the group tags it was opened for (``cloudherd:infra``, ``cloudherd:group``): they find it
    again, for :meth:`Provider.close_ports` and for ``gc`` after a crash.
    """

    id: str
    name: str
    kind: str
    tags: Mapping[str, str]
    ports: tuple[int, ...] = ()


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
    """An async driver for one cloud (or this computer).  One object per configured provider.

    Drivers make one attempt per call and raise typed errors; retries live in one place, the rate budget
    (:mod:`cloudherd.providers.budget`), which retries :class:`ThrottledError` and :class:`TransientError`
    only.  ``async with provider:`` closes it at the end.
    """

    type: ClassVar[str]
    # Seconds after a create in which listing by tag may still miss what it made (EC2's DescribeInstances
    # lags RunInstances): the journal leaves a younger create intent open rather than call its machines
    # never made.  A provider entry's ``settle_window`` overrides it (``make_provider`` sets it here).
    listing_lag: float = 60.0

    def __init__(self, name: str, settings: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.settings = dict(settings or {})

    async def __aenter__(self) -> Provider:
        return self

    async def __aexit__(self, kind: builtins.type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.close()

    def supports(self, capability: Capability | str) -> bool:
        """Whether this provider can do ``capability`` (see :class:`Capability`); no cloud call is made.

        The default: the driver overrides the methods behind it.  Drivers whose answer depends on their
        configuration (libcloud's driver, AWS with ``manage_security_group: false``) override this.  Faults:
        the driver has a ``fault`` method (:class:`FaultInjector`), which is no part of the contract."""
        if Capability(capability) is Capability.FAULTS:
            return isinstance(self, FaultInjector)
        if Capability(capability) is Capability.SPOT:
            return type(self).ended is not Provider.ended
        if Capability(capability) is Capability.NODE_TIMER:
            return bool(getattr(type(self), "node_timer", False))
        methods = {Capability.STOP_START: ("stop", "start"), Capability.TAG: ("tag",),
                   Capability.PORTS: ("open_ports", "close_ports"), Capability.SIZES: ("sizes",),
                   Capability.IMAGES: ("images",), Capability.REGIONS: ("regions",)}[Capability(capability)]
        return all(getattr(type(self), m) is not getattr(Provider, m) for m in methods)

    @abc.abstractmethod
    async def create(self, request: CreateRequest) -> list[Instance]:
        """Make ``request.count`` instances in as few calls as the cloud allows."""

    @abc.abstractmethod
    async def list(self, tags: Mapping[str, str]) -> list[Instance]:
        """Every instance carrying all of ``tags`` (terminated ones excluded)."""

    @abc.abstractmethod
    async def terminate(self, ids: Sequence[str]) -> None:
        """Destroy the instances; ids already gone are not an error."""

    async def ended(self, ids: Sequence[str]) -> dict[str, str]:
        """Why each of these machines, no longer listed, ended, where the cloud still says (a terminated
        instance's state reason): ``"spot interruption (…)"`` for a spot machine the cloud took back.  Ids it
        says nothing of are left out.  A driver with a spot market overrides it (:attr:`Capability.SPOT`)."""
        return {}

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

    async def open_ports(self, group_tags: Mapping[str, str], ports: Sequence[int]) -> PortsHandle:
        """Let TCP 22 and ``ports`` in to the instances of the group ``group_tags`` names; idempotent.

        Why a step of its own: network rules outlive instances and are shared by a group, so they need a
        life of their own — made once per group (found again by its tags, newly listed ports added), and
        removed by :meth:`close_ports` when the group goes, never leaked by a create that failed or a crash
        (``gc`` finds the leftovers by :meth:`list_ports`).  ``create`` calls it for ``request.ports``."""
        raise InvalidRequestError(f"provider {self.name} cannot open ports")

    async def close_ports(self, group_tags: Mapping[str, str]) -> None:
        """Remove what :meth:`open_ports` made for the group ``group_tags`` names, once no live instance needs
        it; nothing made (or already gone) is not an error.  ``terminate`` of a group's last instances calls
        it."""
        raise InvalidRequestError(f"provider {self.name} cannot close ports")

    async def list_ports(self, tags: Mapping[str, str]) -> builtins.list[PortsHandle]:
        """What :meth:`open_ports` made that carries all of ``tags`` (``gc`` looks for leftovers here)."""
        return []

    def default_user(self, image: str | None) -> str | None:
        """The login user the image is made with, where the image name tells it (None: not known).

        Used when neither the group nor the spec names a user: an image's own user works with or without
        cloud-init, which is what a user of the image's documentation expects to log in as."""
        return None

    def take_notices(self) -> builtins.list[str]:
        """What the driver has to tell the user once (``local``: nodes run unisolated), emptied by the call."""
        return []

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
