"""How to reach a provider's instances over SSH, when their own addresses are not the way in.

A provider entry in the spec may name a *reach plugin* (``reach: package.module:Name``): an object
that, after every create and list, says where each instance's SSH really answers (a jump host's
forwarded port, a private address over a VPN, a NAT mapping), and is told when instances go away.
Tests use one that stands a real local sshd in for each instance of an emulated cloud (moto), so
`up` of an `aws` group deploys over real SSH offline.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from cloudherd.providers.base import CreateRequest, Instance, InvalidRequestError, Provider
from cloudherd.providers.wrapper import ProviderWrapper


@runtime_checkable
class ReachPlugin(Protocol):
    """Maps instances to where their SSH answers; told when they are terminated."""

    async def attach(self, provider: Provider, request: CreateRequest | None,
                     instances: Sequence[Instance]) -> list[Instance]:
        """The same instances with ``address`` / ``port`` / ``host_key`` (…) set to how to reach them.

        ``request`` is the create request on create, None on list (instances seen before)."""
        ...

    async def detach(self, provider: Provider, ids: Sequence[str]) -> None:
        """The instances ``ids`` are being terminated."""
        ...


def load_plugin(spec: str, settings: Mapping[str, Any]) -> ReachPlugin:
    """``package.module:Name`` — a class (made with the provider's settings) or a ready object."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InvalidRequestError(f"reach: '{spec}' is not of the form package.module:Name")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidRequestError(f"reach: cannot load '{spec}': {exc}") from None
    plugin = found(dict(settings)) if isinstance(found, type) else found
    if not isinstance(plugin, ReachPlugin):
        raise InvalidRequestError(f"reach: '{spec}' has no attach / detach methods")
    return plugin


class ReachableProvider(ProviderWrapper):
    """A provider seen through a reach plugin: same calls, instances reachable where the plugin says."""

    def __init__(self, inner: Provider, plugin: ReachPlugin) -> None:
        super().__init__(inner)
        self.plugin = plugin

    async def create(self, request: CreateRequest) -> list[Instance]:
        return await self.plugin.attach(self.inner, request, await self.inner.create(request))

    async def list(self, tags: Mapping[str, str]) -> list[Instance]:
        return await self.plugin.attach(self.inner, None, await self.inner.list(tags))

    async def terminate(self, ids: Sequence[str]) -> None:
        await self.plugin.detach(self.inner, ids)
        await self.inner.terminate(ids)
