"""EC2's prices from AWS itself: on demand from the Price List API (``pricing`` GetProducts), spot from EC2's spot
price history, for ``cloudherd catalog refresh aws``.

Why these two: the Price List API is AWS's published list price per region and instance type (Linux, shared
tenancy, no pre-installed software, capacity ``Used``: what cloudherd launches), and it has no spot prices; those
are each zone's current price in ``DescribeSpotPriceHistory``, of which the lowest is what a spot request may get.
The clients are made as the driver makes them (its session, its credentials settings, one attempt per call, in a
worker thread): the Price List API in us-east-1 (or ``pricing_endpoint_url``), EC2 in each region (or
``endpoint_url``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from cloudherd.providers.aws.api import _session
from cloudherd.providers.aws.catalog import DEFAULT_SIZE
from cloudherd.providers.aws.driver import AwsProvider
from cloudherd.providers.aws.errors import sdk_error
from cloudherd.providers.base import AuthError
from cloudherd.providers.prices import Price, PriceBook, price_book
from cloudherd.providers.pricing import scope
from cloudherd.providers.toolkit import gather_all

PRICING_REGION = "us-east-1"  # the Price List API answers for every region from here
IN_FLIGHT = 4  # Price List calls at once
SOURCE = ("AWS Price List API (AmazonEC2: Linux, shared tenancy, on demand) and EC2 spot price history "
          "(Linux/UNIX, the lowest zone's current price)")
# the Price List API's refusals of credentials (EC2's own are in errors.AUTH_CODES)
AUTH_CODES = {"UnrecognizedClientException", "AccessDeniedException", "MissingAuthenticationTokenException"}
LINUX = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}


class PriceListApi(AwsProvider):
    """A driver object whose client is ``pricing``: the driver's session, credentials settings, one-attempt runner and
    error typing, for the Price List API."""

    def __init__(self, name: str = "aws", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, {**(settings or {}), "region": PRICING_REGION})
        endpoint = self.settings.get("pricing_endpoint_url")
        self.endpoint_url = str(endpoint) if endpoint else None  # else boto3's (AWS_ENDPOINT_URL_PRICING…)

    def _client(self) -> Any:
        with self._lock:
            if self._client_obj is None:
                from botocore.config import Config

                config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, user_agent_extra="cloudherd")
                kwargs: dict[str, Any] = {"region_name": self.region, "config": config, **self._credentials()}
                if self.endpoint_url:
                    kwargs["endpoint_url"] = self.endpoint_url
                self._client_obj = _session(self._boto3).client("pricing", **kwargs)
            return self._client_obj

    def _error(self, operation: str, exc: Exception) -> Exception:
        from botocore import exceptions as bx

        action = api_name(operation)
        if isinstance(exc, bx.ClientError) and exc.response.get("Error", {}).get("Code") in AUTH_CODES:
            code = str(exc.response["Error"]["Code"])
            return AuthError(f"aws pricing {action}: {code}: the credentials were refused or may not read the "
                             "Price List API (pricing:GetProducts)", code=code)
        return sdk_error(f"aws pricing {action}", action, exc)

    async def on_demand(self, region: str, size: str) -> float | None:
        """The hourly USD list price of ``size`` in ``region`` (None: the Price List has none)."""
        filters = [{"Type": "TERM_MATCH", "Field": field, "Value": value}
                   for field, value in {"regionCode": region, "instanceType": size, **LINUX}.items()]
        products = await self._pages("get_products", "PriceList", ServiceCode="AmazonEC2", Filters=filters,
                                     FormatVersion="aws_v1", MaxResults=100)
        return hourly_of(json.loads(p) if isinstance(p, str) else p for p in products)


def api_name(operation: str) -> str:
    """boto3's method name as AWS names the action: get_products → GetProducts."""
    return "".join(word.title() for word in operation.split("_"))


def hourly_of(products: Iterable[Mapping[str, Any]]) -> float | None:
    """The on-demand USD an hour among Price List products: the plain ``RunInstances`` product's when there is one
    (a product with a licence or software would cost more), its lowest price above 0."""
    products = list(products)
    plain = [p for p in products if p.get("product", {}).get("attributes", {}).get("operation") == "RunInstances"]
    prices = [float(d.get("pricePerUnit", {}).get("USD", 0) or 0)
              for p in (plain or products) for term in p.get("terms", {}).get("OnDemand", {}).values()
              for d in term.get("priceDimensions", {}).values() if d.get("unit") == "Hrs"]
    prices = [p for p in prices if p > 0]
    return min(prices) if prices else None


def lowest_spot(history: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Each instance type's spot price: the latest of each zone (Linux/UNIX), the lowest of the zones."""
    latest: dict[tuple[str, str], tuple[Any, float]] = {}
    for item in history:
        if not str(item.get("ProductDescription", "")).startswith("Linux/UNIX"):
            continue
        key = (str(item["InstanceType"]), str(item.get("AvailabilityZone", "")))
        stamp = item.get("Timestamp") or ""
        if key not in latest or str(stamp) > str(latest[key][0]):
            latest[key] = (stamp, float(item["SpotPrice"]))
    found: dict[str, float] = {}
    for (size, _zone), (_stamp, price) in latest.items():
        found[size] = min(price, found.get(size, price))
    return found


async def _spot(name: str, settings: Mapping[str, Any], region: str, sizes: list[str]) -> dict[str, float]:
    ec2 = AwsProvider(name, {**settings, "region": region})
    try:
        history = await ec2._pages("describe_spot_price_history", "SpotPriceHistory", InstanceTypes=sizes,
                                   ProductDescriptions=["Linux/UNIX"], StartTime=datetime.now(UTC), MaxResults=1000)
    finally:
        await ec2.close()
    return lowest_spot(history)


async def refresh(settings: Mapping[str, Any], regions: Iterable[str], sizes: Iterable[str], *,
                  name: str = "aws") -> PriceBook:
    """A book of every region and size in scope (:func:`~cloudherd.providers.pricing.scope`) that AWS prices."""
    regions, sizes = scope("aws", regions, sizes)
    api = PriceListApi(name, settings)
    try:
        pairs = [(r, s) for r in regions for s in sizes]
        hourly = await gather_all([functools.partial(api.on_demand, r, s) for r, s in pairs], IN_FLIGHT)
    finally:
        await api.close()
    found: dict[str, dict[str, Price]] = {}
    for region in regions:
        priced = {s: h for (r, s), h in zip(pairs, hourly, strict=True) if r == region and h is not None}
        if not priced:
            continue
        spot = await _spot(name, settings, region, sorted(priced))
        found[region] = {s: Price(h, spot.get(s)) for s, h in priced.items()}
    current = price_book("aws")
    return PriceBook("aws", date.today(), SOURCE, found, (current.default_size if current else None) or DEFAULT_SIZE)
