"""Provider drivers behind one interface; each imports its cloud SDK lazily."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloudherd.providers.base import (
    AuthError,
    CapacityError,
    CreateRequest,
    Instance,
    InvalidRequestError,
    MissingDependencyError,
    NotFoundError,
    Provider,
    ProviderError,
    QuotaError,
    ThrottledError,
    TransientError,
    UnknownProviderError,
)

__all__ = [
    "AuthError", "CapacityError", "CreateRequest", "Instance", "InvalidRequestError",
    "MissingDependencyError", "NotFoundError", "Provider", "ProviderError", "QuotaError",
    "ThrottledError", "TransientError", "UnknownProviderError", "make_provider",
]

DRIVERS = {
    "local": "cloudherd.providers.local:LocalProvider",
    "aws": "cloudherd.providers.aws:AwsProvider",
    "gce": "cloudherd.providers.gce:GceProvider",
    "libcloud": "cloudherd.providers.libcloud:LibcloudProvider",
}


def make_provider(name: str, type_: str, settings: Mapping[str, Any] | None = None) -> Provider:
    """The driver of ``type_``, configured with ``settings``; imported only when asked for."""
    import importlib

    target = DRIVERS.get(type_)
    if target is None:
        raise UnknownProviderError(f"unknown provider type '{type_}' (known: {', '.join(sorted(DRIVERS))})")
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    from cloudherd.providers.budget import DEFAULTS, BudgetedProvider

    own = {k: v for k, v in (settings or {}).items() if k != "reach" and k not in DEFAULTS}
    provider: Provider = BudgetedProvider(cls(name, own), settings)
    reach = (settings or {}).get("reach")
    if reach:
        from cloudherd.providers.reach import ReachableProvider, load_plugin

        return ReachableProvider(provider, load_plugin(str(reach), own))
    return provider
