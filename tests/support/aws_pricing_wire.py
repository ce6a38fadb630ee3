"""A small AWS Price List API (``pricing``) server for tests: real HTTP on 127.0.0.1, AWS's wire format.

moto has no ``pricing`` service, so this serves GetProducts as AWS does: JSON 1.1 (``POST /``,
``X-Amz-Target: AWSPriceListService.GetProducts``), ``TERM_MATCH`` filters on the products' attributes,
``PriceList`` as a list of JSON *strings* in the ``aws_v1`` format, and ``NextToken`` paging (two products a page,
so that paging is really followed).  Errors are AWS's JSON errors (``{"__type", "message"}``).

The products are the test's: :meth:`FakePriceList.add` makes one (an instance type in a region at an hourly price
the test chooses), with the attributes and terms AWS's products have; no price of AWS's is copied here.  Requests
must be signed (SigV4, as boto3 signs them), and with ``require_key`` by that access key id.  Every request is
logged (``requests``).
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from wire_server import WireServer

TARGET = "AWSPriceListService.GetProducts"
LINUX = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used",
         "licenseModel": "No License required", "operation": "RunInstances"}
ON_DEMAND = "JRTCKXETXF"  # AWS's offer term code of on demand
RATE = "6YS6EN2CT7"  # and of its hourly rate


@dataclass
class FakePriceList:
    page_size: int = 2
    require_key: str | None = None
    products: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._skus = itertools.count(1)
        self._wire: WireServer | None = None
        self.url = ""

    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._wire = WireServer(Handler, "fake-pricing")
        self.url = self._wire.start()
        return self.url

    def stop(self) -> None:
        if self._wire is not None:
            self._wire.stop()

    def add(self, region: str, instance_type: str, hourly: str, **attributes: str) -> dict[str, Any]:
        """An EC2 product as the Price List API has it, on demand at ``hourly`` USD an hour (a decimal string, as
        AWS sends it); ``attributes`` change the Linux / shared-tenancy defaults (``operatingSystem="Windows"``)."""
        sku = f"SKU{next(self._skus):08d}"
        term = f"{sku}.{ON_DEMAND}"
        product = {
            "product": {"productFamily": "Compute Instance", "sku": sku, "attributes": {
                "servicecode": "AmazonEC2", "regionCode": region, "instanceType": instance_type,
                "usagetype": f"BoxUsage:{instance_type}", **LINUX, **attributes}},
            "serviceCode": "AmazonEC2",
            "terms": {"OnDemand": {term: {
                "offerTermCode": ON_DEMAND, "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z", "termAttributes": {},
                "priceDimensions": {f"{term}.{RATE}": {
                    "rateCode": f"{term}.{RATE}", "unit": "Hrs", "beginRange": "0", "endRange": "Inf",
                    "appliesTo": [], "pricePerUnit": {"USD": hourly},
                    "description": f"${hourly} per On Demand Linux {instance_type} Instance Hour"}}}}},
            "version": "20261101000000", "publicationDate": "2026-11-01T00:00:00Z"}
        with self._lock:
            self.products.append(product)
        return product

    # -- the API ---------------------------------------------------------------------------------------

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        with self._lock:
            self.requests.append({"headers": headers, "body": body})
        auth = headers.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return _error(400, "MissingAuthenticationTokenException", "Missing Authentication Token")
        if self.require_key is not None and f"Credential={self.require_key}/" not in auth:
            return _error(400, "UnrecognizedClientException", "The security token included in the request is invalid.")
        if headers.get("x-amz-target") != TARGET:
            return _error(400, "UnknownOperationException", "")
        request = json.loads(body or b"{}")
        if request.get("ServiceCode") != "AmazonEC2":
            return _error(400, "InvalidParameterException", "Input validation error: ServiceCode")
        terms = request.get("Filters") or []
        if any(t.get("Type") != "TERM_MATCH" for t in terms):
            return _error(400, "InvalidParameterException", "only TERM_MATCH filters are served here")
        with self._lock:
            found = [p for p in self.products
                     if all(p["product"]["attributes"].get(t["Field"]) == t["Value"] for t in terms)]
        start = int(request.get("NextToken") or 0)
        size = min(int(request.get("MaxResults") or 100), self.page_size)
        page = found[start:start + size]
        answer: dict[str, Any] = {"FormatVersion": "aws_v1", "PriceList": [json.dumps(p) for p in page]}
        if start + size < len(found):
            answer["NextToken"] = str(start + size)
        return 200, answer


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakePriceList
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, payload = self.server_fake.handle({k.lower(): v for k, v in self.headers.items()}, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", "00000000-0000-4000-8000-000000000000")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def _error(status: int, code: str, message: str) -> tuple[int, Any]:
    return status, {"__type": code, "message": message}
