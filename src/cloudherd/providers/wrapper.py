"""A provider seen through another: the base of the rate budget and of reach plugins.

Why a base class: a wrapper that re-declares each method by hand silently answers the *base* default for
a method added to :class:`Provider` later and forgotten in the wrapper (``stop`` would say "cannot stop"
although the driver can).  :class:`ProviderWrapper` forwards every public method of :class:`Provider`
through one hook, :meth:`ProviderWrapper._through`, and checks at import time that none is missing.
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from cloudherd.providers.base import (
    Capability,
    CreateRequest,
    FaultInjector,
    Image,
    Instance,
    InvalidRequestError,
    PortsHandle,
    Provider,
    Size,
)

T = TypeVar("T")


class ProviderWrapper(Provider):
    """Every call goes to ``inner`` through :meth:`_through` (override it to pace, log, retry…)."""

    def __init__(self, inner: Provider) -> None:
        super().__init__(inner.name, inner.settings)
        self.inner = inner
        self.type = inner.type  # type: ignore[misc]  # a wrapper is of its driver's type

    @property
    def driver(self) -> Provider:
        """The driver at the bottom of the wrappers."""
        inner = self.inner
        return inner.driver if isinstance(inner, ProviderWrapper) else inner

    async def _through(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """How a call of ``operation`` reaches the inner provider; plain forwarding here."""
        return await call()

    def supports(self, capability: Capability | str) -> bool:
        return self.inner.supports(capability)

    async def create(self, request: CreateRequest) -> builtins.list[Instance]:
        return await self._through("create", lambda: self.inner.create(request))

    async def list(self, tags: Mapping[str, str]) -> builtins.list[Instance]:
        return await self._through("list", lambda: self.inner.list(tags))

    async def terminate(self, ids: Sequence[str]) -> None:
        await self._through("terminate", lambda: self.inner.terminate(ids))

    async def ended(self, ids: Sequence[str]) -> dict[str, str]:
        return await self._through("ended", lambda: self.inner.ended(ids))

    async def stop(self, ids: Sequence[str]) -> None:
        await self._through("stop", lambda: self.inner.stop(ids))

    async def start(self, ids: Sequence[str]) -> None:
        await self._through("start", lambda: self.inner.start(ids))

    async def tag(self, ids: Sequence[str], tags: Mapping[str, str]) -> None:
        await self._through("tag", lambda: self.inner.tag(ids, tags))

    async def sizes(self, pattern: str | None = None) -> builtins.list[Size]:
        return await self._through("sizes", lambda: self.inner.sizes(pattern))

    async def images(self, pattern: str | None = None) -> builtins.list[Image]:
        return await self._through("images", lambda: self.inner.images(pattern))

    async def regions(self) -> builtins.list[str]:
        return await self._through("regions", self.inner.regions)

    async def default_size(self) -> str | None:
        return await self._through("default_size", self.inner.default_size)

    async def open_ports(self, group_tags: Mapping[str, str], ports: Sequence[int]) -> PortsHandle:
        return await self._through("open_ports", lambda: self.inner.open_ports(group_tags, ports))

    async def close_ports(self, group_tags: Mapping[str, str]) -> None:
        await self._through("close_ports", lambda: self.inner.close_ports(group_tags))

    async def list_ports(self, tags: Mapping[str, str]) -> builtins.list[PortsHandle]:
        return await self._through("list_ports", lambda: self.inner.list_ports(tags))

    def take_notices(self) -> builtins.list[str]:
        return self.inner.take_notices()

    def default_user(self, image: str | None) -> str | None:
        return self.inner.default_user(image)

    async def fault(self, node_id: str, kind: str, peer: str | None = None) -> str:
        """The driver's :meth:`FaultInjector.fault`, when it has one (see ``supports("faults")``); never paced nor
        retried: a fault is made once, on purpose."""
        if not isinstance(self.inner, FaultInjector):
            raise InvalidRequestError(f"provider {self.name} cannot make faults on demand")
        return await self.inner.fault(node_id, kind, peer)

    async def close(self) -> None:
        await self.inner.close()  # never paced nor retried: releasing must always happen


def public_methods(cls: type = Provider) -> builtins.list[str]:
    """The public methods of the provider contract (``async with`` and ``supports`` included)."""
    return sorted(name for name, member in inspect.getmembers(cls, inspect.isfunction)
                  if not name.startswith("_") or name in ("__aenter__", "__aexit__"))


_missing = [m for m in public_methods() if m not in ("__aenter__", "__aexit__") and m not in vars(ProviderWrapper)]
if _missing:  # pragma: no cover - a programming error, caught by any import
    raise TypeError(f"ProviderWrapper does not forward {', '.join(_missing)}: add them")
