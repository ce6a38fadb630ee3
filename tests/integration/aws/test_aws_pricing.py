"""``cloudherd catalog refresh aws``: on-demand prices from a Price List API fake in AWS's wire format
(tests/support/aws_pricing_wire.py, prices this test chooses), spot prices from moto's EC2 over HTTP; what the user
sees is the command line's output and the book ``price_book`` then reckons with."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import boto3
import pytest
from aws_pricing_wire import FakePriceList
from helpers import cli, write_spec
from moto_faults import FaultyMotoServer

from cloudherd.providers.aws.pricing import SOURCE
from cloudherd.providers.prices import price_book, refreshed_path

TODAY = date.today().isoformat()


@pytest.fixture
def price_list() -> Iterator[FakePriceList]:
    fake = FakePriceList()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def moto_spot(region: str, size: str) -> float:
    """The lowest current Linux spot price moto's EC2 serves for ``size`` (moto's own data, read at run time)."""
    history = boto3.client("ec2", region_name=region).describe_spot_price_history(
        InstanceTypes=[size], ProductDescriptions=["Linux/UNIX"])["SpotPriceHistory"]
    assert history, f"moto serves no spot price of {size} in {region}"
    return min(float(h["SpotPrice"]) for h in history)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refresh_writes_the_price_lists_prices_and_spot_and_price_book_uses_them(
        home: Path, moto_server: FaultyMotoServer, price_list: FakePriceList, monkeypatch: pytest.MonkeyPatch) -> None:
    price_list.add("us-east-1", "t3.micro", "0.0111000000")
    price_list.add("us-east-1", "t3.micro", "0.9000000000", operatingSystem="Windows")  # not what cloudherd runs
    price_list.add("us-east-1", "m5.large", "0.1234000000")
    price_list.add("us-east-1", "c7i.large", "0.0999000000")  # in no book: asked for with --size
    price_list.add("eu-west-1", "t3.micro", "0.0222000000")
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", price_list.url)  # boto3's own setting, as `sizes aws` is set up

    result = cli("catalog", "refresh", "aws", "--size", "c7i.large")

    assert result.returncode == 0, result.stderr
    assert f"aws prices of {TODAY}: 4 prices (4 with spot) in 2 regions: eu-west-1 (1), us-east-1 (3)" in result.stdout
    assert f"kept in {refreshed_path('aws')}" in result.stdout
    left = [line for line in result.stderr.splitlines() if line.startswith("not priced in us-east-1 by the cloud")]
    assert len(left) == 1 and "t3.nano" in left[0] and "t3.micro" not in left[0].split(": ", 1)[1].split(", ")
    signed = [r["headers"]["authorization"] for r in price_list.requests]
    assert signed and all(a.startswith("AWS4-HMAC-SHA256 Credential=testing/") for a in signed)

    book = price_book("aws")
    assert book is not None and book.taken == date.today() and book.source == SOURCE
    assert set(book.regions) == {"us-east-1", "eu-west-1"}
    assert book.price("us-east-1", "t3.micro").hourly == 0.0111  # type: ignore[union-attr]
    assert book.price("us-east-1", "m5.large").hourly == 0.1234  # type: ignore[union-attr]
    assert book.price("us-east-1", "c7i.large").hourly == 0.0999  # type: ignore[union-attr]
    assert book.price("eu-west-1", "t3.micro").hourly == 0.0222  # type: ignore[union-attr]
    assert book.price("us-east-1", None) == book.price("us-east-1", "t3.micro")  # the default size kept
    for region, size in (("us-east-1", "t3.micro"), ("us-east-1", "c7i.large"), ("eu-west-1", "t3.micro")):
        assert book.price(region, size).spot == moto_spot(region, size)  # type: ignore[union-attr]
    assert book.price("us-east-1", "t3.nano") is None  # the Price List had none: left out, not kept at an old date

    shown = cli("catalog", "prices", "aws", "--region", "us-east-1", "--size", "^t3", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["label"] == f"aws prices of {TODAY}" and data["stale"] is False
    spot = moto_spot("us-east-1", "t3.micro")
    assert data["regions"] == {"us-east-1": {"t3.micro": {"hourly": 0.0111, "spot": spot}}}
    table = cli("catalog", "prices", "aws")
    assert table.returncode == 0 and f"aws prices of {TODAY}" in table.stdout.splitlines()[0]
    assert any(line.split()[:2] == ["us-east-1", "m5.large"] and "0.1234" in line for line in table.stdout.splitlines())


def test_a_spec_entry_gives_the_endpoint_and_its_region(home: Path, moto_server: FaultyMotoServer,
                                                        price_list: FakePriceList, tmp_path: Path) -> None:
    price_list.add("ap-south-1", "t3.micro", "0.0112000000")
    spec = write_spec(tmp_path / "s", "name: priced\nproviders:\n  mumbai:\n    type: aws\n    region: ap-south-1\n"
                                      f"    pricing_endpoint_url: {price_list.url}\n"
                                      "groups:\n  web: {provider: mumbai, count: 1}\n")

    result = cli("catalog", "refresh", "mumbai", "--spec", str(spec))

    assert result.returncode == 0, result.stderr
    assert "1 prices (1 with spot) in 1 region: ap-south-1 (1)" in result.stdout
    regions = {json.loads(r["body"])["Filters"][0]["Value"] for r in price_list.requests}
    assert regions == {"us-east-1", "eu-west-1", "ap-south-1"}  # the book's regions, and the entry's own


def test_refusals_are_one_line_exit_2_and_change_nothing(home: Path, moto_server: FaultyMotoServer,
                                                         price_list: FakePriceList,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYsecret"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", price_list.url)
    empty = cli("catalog", "refresh", "aws")  # an answer with no product: saved, it would hide the snapshot
    assert empty.returncode == 2 and empty.stderr.strip() == (
        "error: aws: the cloud gave no price for any size asked for (no prices were changed)")

    price_list.add("us-east-1", "t3.micro", "0.0111000000")
    price_list.require_key = "AKIAOTHERKEY"

    refused = cli("catalog", "refresh", "aws")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "error: aws pricing GetProducts: UnrecognizedClientException: the credentials were refused or may not read "
        "the Price List API (pricing:GetProducts) (no prices were changed)"]
    assert secret not in refused.stderr + refused.stdout

    down = cli("catalog", "refresh", "aws", env={"AWS_ENDPOINT_URL_PRICING": f"http://127.0.0.1:{closed_port()}"})
    assert down.returncode == 2 and "Traceback" not in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1
    assert "error: aws pricing GetProducts: could not connect to the endpoint http://127.0.0.1:" in down.stderr

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    none = cli("catalog", "refresh", "aws", env={"AWS_EC2_METADATA_DISABLED": "true"})
    assert none.returncode == 2 and len(none.stderr.strip().splitlines()) == 1
    assert "error: aws pricing GetProducts: no AWS credentials found" in none.stderr

    unknown = cli("catalog", "refresh", "nosuch")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == ("error: unknown provider type 'nosuch' (known: aws, gce, libcloud, local); "
                                      "or name an entry of a spec with --spec FILE")
    assert not refreshed_path("aws").exists()
    assert price_book("aws").source != SOURCE  # type: ignore[union-attr]  # the shipped snapshot, as it was
