"""Compute Engine's prices from Google itself, for ``cloudherd catalog refresh gce``: the Cloud Billing Catalog API's
SKUs of Compute Engine, made into a price per machine type.

Why reckoned and not read: Google prices a predefined machine type by its parts, a vCPU-hour and a GiB-hour of
memory of its family in its region (``E2 Instance Core running in Americas``…), on demand and spot
(``Spot Preemptible …``); a type's price is its vCPUs times the core's rate plus its GiB times the RAM's, its
vCPUs and memory from the driver's machine type list.  The shared-core E2 types are billed for the fraction of a
vCPU Google sells them as (e2-micro 0.25, e2-small 0.5, e2-medium 1); f1-micro and g1-small have SKUs of their own,
per instance.  Custom, sole-tenancy, committed and extended-memory SKUs are left out: cloudherd launches none.

The API is paged (``pageToken``), asked with an API key (the ``pricing_api_key_env`` setting names the environment
variable holding it; sent as a header, never in a URL) or else with the provider's credentials' bearer token;
``pricing_endpoint`` overrides ``https://cloudbilling.googleapis.com``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from cloudherd.providers.base import AuthError, InvalidRequestError, ProviderError, Size, TransientError
from cloudherd.providers.gce.catalog import DEFAULT_SIZE
from cloudherd.providers.gce.credentials import load_credentials
from cloudherd.providers.gce.driver import GceProvider
from cloudherd.providers.prices import Price, PriceBook, price_book
from cloudherd.providers.pricing import scope
from cloudherd.providers.toolkit import error_from_status, one_line, safe_url

ENDPOINT = "https://cloudbilling.googleapis.com"
SERVICE = "6F81-5844-456A"  # Compute Engine's service id in the Cloud Billing Catalog
PAGE_SIZE = 5000
SHARED_CPUS = {"e2-micro": 0.25, "e2-small": 0.5, "e2-medium": 1.0}  # the vCPU a shared-core E2 type is billed as
# "E2 Instance Core running in Americas", "Spot Preemptible N1 Predefined Instance Ram running in Belgium",
# "N2D AMD Instance Core…", "Compute optimized Core…" (C2)
_PART = re.compile(r"^(?:Spot Preemptible |Preemptible )?"
                   r"(?:(?P<family>[A-Z][A-Z0-9]*) (?:(?:Predefined|AMD|Arm|Intel) )?Instance"
                   r"|(?P<c2>Compute optimized)) (?P<part>Core|Ram) running in ", re.I)
_WHOLE = re.compile(r"^(?:Spot Preemptible |Preemptible )?(?P<what>Micro Instance with burstable CPU|"
                    r"Small Instance with 1 VCPU) running in ", re.I)
WHOLE = {"micro instance with burstable cpu": "f1-micro", "small instance with 1 vcpu": "g1-small"}
UNITS = {"core": "h", "ram": "GiBy.h", "whole": "h"}
USAGE = {"OnDemand": False, "Preemptible": True}  # usage type → spot

Rates = dict[tuple[str, str, bool], float]  # (region, "e2:core" | "e2:ram" | "f1-micro", spot) → USD per unit


def unit_price(sku: Mapping[str, Any], unit: str) -> float | None:
    """The SKU's current USD price per ``unit`` (its first tier above 0: a free allowance is not the price)."""
    for info in sku.get("pricingInfo") or []:
        expression = info.get("pricingExpression") or {}
        if expression.get("usageUnit") != unit:
            continue
        for tier in expression.get("tieredRates") or []:
            money = tier.get("unitPrice") or {}
            if money.get("currencyCode", "USD") != "USD":
                continue
            value = int(money.get("units") or 0) + int(money.get("nanos") or 0) / 1e9
            if value > 0:
                return value
    return None


def rates_of(skus: Iterable[Mapping[str, Any]]) -> Rates:
    """The per-part and per-instance rates of every region the SKUs serve."""
    rates: Rates = {}
    for sku in skus:
        category = sku.get("category") or {}
        spot = USAGE.get(str(category.get("usageType")))
        if category.get("resourceFamily") != "Compute" or spot is None:
            continue
        description = str(sku.get("description") or "")
        if part := _PART.match(description):
            family = "c2" if part["c2"] else part["family"].lower()
            key, unit = f"{family}:{part['part'].lower()}", UNITS[part["part"].lower()]
        elif whole := _WHOLE.match(description):
            key, unit = WHOLE[whole["what"].lower()], UNITS["whole"]
        else:
            continue
        price = unit_price(sku, unit)
        if price is not None:
            for region in sku.get("serviceRegions") or []:
                rates[(str(region), key, spot)] = price
    return rates


def price_of(size: Size, region: str, rates: Rates, spot: bool) -> float | None:
    """A machine type's USD an hour in ``region`` (None: Google publishes no rate for it there)."""
    if (region, size.name, spot) in rates:
        return round(rates[(region, size.name, spot)], 6)
    family = size.name.split("-", 1)[0]
    core, ram = rates.get((region, f"{family}:core", spot)), rates.get((region, f"{family}:ram", spot))
    if core is None or ram is None or (size.extra.get("shared_cpu") and size.name not in SHARED_CPUS):
        return None
    return round(SHARED_CPUS.get(size.name, size.cpus) * core + size.memory_mb / 1024 * ram, 6)


class GcePricing(GceProvider):
    """The driver's machine types, and the Cloud Billing Catalog API's SKUs."""

    def __init__(self, name: str = "gce", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self.pricing_endpoint = str(self.settings.get("pricing_endpoint") or ENDPOINT).rstrip("/")
        variable = self.settings.get("pricing_api_key_env")
        self._api_key: str | None = None
        if variable:
            self._api_key = os.environ.get(str(variable)) or None
            if self._api_key is None:
                raise AuthError(f"gce provider {name}: the environment has no {variable} (pricing_api_key_env)")

    def _secrets(self) -> Iterable[str]:
        return [*super()._secrets(), *([self._api_key] if self._api_key else [])]

    def _headers(self) -> dict[str, str]:
        if self._api_key:
            return {"X-Goog-Api-Key": self._api_key}
        if self.settings.get("anonymous"):
            return {}
        with self._lock:
            if self._creds is None:
                self._creds = load_credentials(self.settings, self._credentials_file)
            creds = self._creds
        if not getattr(creds, "valid", False):
            from google.auth.transport.requests import Request

            creds.refresh(Request())
        headers: dict[str, str] = {}
        creds.apply(headers)
        return headers

    def _skus(self) -> list[dict[str, Any]]:
        """Every Compute Engine SKU, page after page (blocking: run by :meth:`_run`)."""
        import requests

        url = f"{self.pricing_endpoint}/v1/services/{SERVICE}/skus"
        where = f"gce pricing ({safe_url(self.pricing_endpoint)})"
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"currencyCode": "USD", "pageSize": PAGE_SIZE}
        with requests.Session() as session:
            while True:
                try:
                    answer = session.get(url, params=params, headers=self._headers(), timeout=self.request_timeout)
                except requests.exceptions.Timeout:
                    raise TransientError(f"{where}: no answer within {self.request_timeout:g} s") from None
                except requests.exceptions.ConnectionError:
                    raise TransientError(f"{where}: could not connect") from None
                if answer.status_code != 200:
                    raise self._refusal(where, answer)
                try:
                    page = answer.json()
                except ValueError:
                    raise ProviderError(f"{where}: the answer is not JSON") from None
                found.extend(page.get("skus") or [])
                token = page.get("nextPageToken")
                if not token:
                    return found
                params["pageToken"] = token

    async def rates(self) -> Rates:
        """The rates of every region, from every Compute Engine SKU."""
        return rates_of(await self._run("skus.list", self._skus))

    def _refusal(self, where: str, answer: Any) -> ProviderError:
        try:
            error = answer.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        status = answer.status_code
        label = str(error.get("status") or status)
        if status in (401, 403):
            return AuthError(f"{where}: {label}: the credentials were refused or may not read the Cloud Billing "
                             "Catalog API: give an API key (pricing_api_key_env) or credentials that may",
                             code=label, status=status)
        message = one_line(self._scrub(str(error.get("message") or answer.reason or "")))
        return error_from_status(f"{where}: {label}: {message}", status, label)


async def refresh(settings: Mapping[str, Any], regions: Iterable[str], sizes: Iterable[str], *,
                  name: str = "gce") -> PriceBook:
    """A book of every region and size in scope (:func:`~cloudherd.providers.pricing.scope`) that Google prices and
    the driver's zone lists."""
    regions, wanted = scope("gce", regions, sizes)
    api = GcePricing(name, settings)
    try:
        types = {s.name: s for s in await api.sizes()}
        rates = await api.rates()
    finally:
        await api.close()
    if not rates:
        raise InvalidRequestError(f"gce pricing ({safe_url(api.pricing_endpoint)}): the Cloud Billing Catalog lists "
                                  "no Compute Engine vCPU or memory price")
    found: dict[str, dict[str, Price]] = {}
    for region in regions:
        for size in (types[n] for n in wanted if n in types):
            hourly = price_of(size, region, rates, spot=False)
            if hourly is not None:
                found.setdefault(region, {})[size.name] = Price(hourly, price_of(size, region, rates, spot=True))
    current = price_book("gce")
    source = f"Cloud Billing Catalog API (Compute Engine vCPU and memory SKUs, on demand and spot), {api.zone}'s types"
    return PriceBook("gce", date.today(), source, found,
                     str(settings.get("size") or (current.default_size if current else None) or DEFAULT_SIZE))
