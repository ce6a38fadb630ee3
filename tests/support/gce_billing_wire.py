"""A small Cloud Billing Catalog API (v1) server for tests: real HTTP on 127.0.0.1, Google's REST JSON wire format.

It serves ``GET /v1/services/{service}/skus`` (``currencyCode``, ``pageSize``, ``pageToken``; three SKUs a page at
most, so that paging is really followed) as Google does: each SKU with its ``description``, ``category``
(``resourceFamily``, ``resourceGroup``, ``usageType``), ``serviceRegions`` and ``pricingInfo`` (a
``pricingExpression`` with ``usageUnit`` and ``tieredRates`` of ``units`` + ``nanos``).  Errors come back as Google
sends them: ``{"error": {"code", "message", "status"}}``.

The SKUs are the test's (:meth:`FakeBilling.add_part`, :meth:`add_sku`): rates it chooses, never Google's copied.
``require_key`` demands an API key (the ``X-Goog-Api-Key`` header or ``key=``), ``require_token`` a bearer token.
Every request is logged (``requests``).
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from wire_server import WireServer

COMPUTE = "6F81-5844-456A"
PAGE_SIZE = 3
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          503: "UNAVAILABLE"}


def money(usd: str) -> dict[str, Any]:
    """Google's Money: whole dollars as a string, the rest in nanos."""
    value = Decimal(usd)
    units = int(value)
    return {"currencyCode": "USD", "units": str(units), "nanos": int((value - units) * 1_000_000_000)}


@dataclass
class FakeBilling:
    require_key: str | None = None
    require_token: str | None = None
    skus: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._wire: WireServer | None = None
        self.url = ""

    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._wire = WireServer(Handler, "fake-billing")
        self.url = self._wire.start()
        return self.url

    def stop(self) -> None:
        if self._wire is not None:
            self._wire.stop()

    def add_sku(self, description: str, regions: list[str], unit: str, *rates: tuple[str, str],
                usage: str = "OnDemand", group: str = "CPU", family: str = "Compute") -> dict[str, Any]:
        """A SKU with tiers ``(start usage, USD per unit)``."""
        number = next(self._ids)
        sku_id = f"{number:04X}-{number * 7 % 65536:04X}-{number * 13 % 65536:04X}"
        sku = {
            "name": f"services/{COMPUTE}/skus/{sku_id}", "skuId": sku_id, "description": description,
            "category": {"serviceDisplayName": "Compute Engine", "resourceFamily": family, "resourceGroup": group,
                         "usageType": usage},
            "serviceRegions": regions,
            "pricingInfo": [{"summary": "", "currencyConversionRate": 1, "effectiveTime": "2026-11-01T00:00:00Z",
                             "pricingExpression": {
                                 "usageUnit": unit, "usageUnitDescription": unit, "baseUnit": "s",
                                 "baseUnitConversionFactor": 3600, "displayQuantity": 1,
                                 "tieredRates": [{"startUsageAmount": start, "unitPrice": money(usd)}
                                                 for start, usd in rates]},
                             "aggregationInfo": {"aggregationLevel": "ACCOUNT", "aggregationInterval": "DAILY"}}],
            "serviceProviderName": "Google"}
        with self._lock:
            self.skus.append(sku)
        return sku

    def add_part(self, family: str, part: str, region: str, usd: str, *, spot: bool = False,
                 area: str = "Americas", predefined: bool = False) -> dict[str, Any]:
        """A vCPU (``part="Core"``) or GiB of memory (``"Ram"``) of a machine family, named as Google names them
        (``E2 Instance Core running in Americas``, ``Spot Preemptible N1 Predefined Instance Ram running in …``)."""
        words = f"{family} {'Predefined ' if predefined else ''}Instance {part} running in {area}"
        return self.add_sku(f"Spot Preemptible {words}" if spot else words, [region],
                            "h" if part == "Core" else "GiBy.h", ("0", usd),
                            usage="Preemptible" if spot else "OnDemand", group="CPU" if part == "Core" else "RAM")

    # -- the API ---------------------------------------------------------------------------------------

    def handle(self, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        parts = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append({"path": parts.path, "query": query, "headers": headers})
        if self.require_key is not None and self.require_key not in (headers.get("x-goog-api-key"), query.get("key")):
            return _error(400 if headers.get("x-goog-api-key") or query.get("key") else 403,
                          "API key not valid. Please pass a valid API key." if headers.get("x-goog-api-key")
                          else "The request is missing a valid API key.")
        if self.require_token is not None and headers.get("authorization") != f"Bearer {self.require_token}":
            return _error(401, "Request had invalid authentication credentials.")
        if parts.path != f"/v1/services/{COMPUTE}/skus":
            return _error(404, f"The requested URL {parts.path} was not found on this server.")
        if query.get("currencyCode", "USD") != "USD":
            return _error(400, "only USD is served here")
        start = int(query.get("pageToken") or 0)
        size = min(int(query.get("pageSize") or 5000), PAGE_SIZE)
        with self._lock:
            page = self.skus[start:start + size]
            more = start + size < len(self.skus)
        return 200, {"skus": page, "nextPageToken": str(start + size) if more else ""}


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeBilling
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status, payload = self.server_fake.handle(self.path, {k.lower(): v for k, v in self.headers.items()})
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def _error(status: int, message: str) -> tuple[int, Any]:
    return status, {"error": {"code": status, "message": message, "status": STATUS.get(status, "UNKNOWN")}}
