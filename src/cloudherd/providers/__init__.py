"""Provider drivers behind one interface; each imports its cloud SDK lazily."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloudherd.providers.base import (
    AuthError,
    Capability,
    CapacityError,
    CreateRequest,
    Instance,
    InstanceState,
    InvalidRequestError,
    MissingDependencyError,
    NotFoundError,
    PortsHandle,
    Provider,
    ProviderError,
    QuotaError,
    ThrottledError,
    TransientError,
    UnknownProviderError,
)

__all__ = [
    "AuthError", "Capability", "CapacityError", "CreateRequest", "Instance", "InstanceState", "InvalidRequestError",
    "MissingDependencyError", "NotFoundError", "PortsHandle", "Provider", "ProviderError", "QuotaError",
    "ThrottledError", "TransientError", "UnknownProviderError", "make_provider",
]

DRIVERS = {
    "local": "cloudherd.providers.local:LocalProvider",
    "aws": "cloudherd.providers.aws:AwsProvider",
    "gce": "cloudherd.providers.gce:GceProvider",
    "libcloud": "cloudherd.providers.libcloud:LibcloudProvider",
}


def make_provider(name: str, type_: str, settings: Mapping[str, Any] | None = None) -> Provider:
    """The driver of ``type_``, configured with ``settings``, behind its rate budget (and reach plugin).

    ``settings`` are a provider entry of a spec (checked again here, for callers from code): ``budget``,
    ``retries``, ``backoff`` and ``backoff_max`` go to the rate budget, the one retry layer; ``reach`` names
    a reach plugin; ``settle_window`` becomes the driver's ``listing_lag`` (what the journal waits for);
    the rest is the driver's.  The driver is imported only when asked for."""
    import importlib

    from cloudherd.spec.providers import WRAPPER_KEYS, SettingsError, check, unknown_type

    target = DRIVERS.get(type_)
    if target is None:
        raise UnknownProviderError(unknown_type(type_))
    try:
        checked = check(type_, settings or {})
    except SettingsError as exc:
        raise InvalidRequestError(f"provider {name} ({type_}): {exc}") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    from cloudherd.providers.budget import BudgetedProvider

    own = {k: v for k, v in checked.items() if k not in WRAPPER_KEYS}
    driver: Provider = cls(name, own)
    if checked.get("settle_window") is not None:
        driver.listing_lag = float(checked["settle_window"])
    provider: Provider = BudgetedProvider(driver, checked)
    reach = checked.get("reach")
    if reach:
        from cloudherd.providers.reach import ReachableProvider, load_plugin

        return ReachableProvider(provider, load_plugin(str(reach), own))
    return provider
