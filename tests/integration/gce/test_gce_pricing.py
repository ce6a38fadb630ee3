"""``cloudherd catalog refresh gce``: Compute Engine's prices reckoned from a Cloud Billing Catalog API fake
(tests/support/gce_billing_wire.py, rates this test chooses) and the machine types of the Compute API fake
(gce_wire), both over HTTP to the real clients; what the user sees is the command line and ``price_book``."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

pytest.importorskip("google.cloud.compute_v1")

from gce_billing_wire import FakeBilling
from gce_wire import FakeGce
from helpers import cli, write_spec

from cloudherd.providers.base import AuthError
from cloudherd.providers.gce import pricing
from cloudherd.providers.prices import price_book, refreshed_path

TODAY = date.today().isoformat()
KEY = "AIzaSyFAKE-billing-key-0123456789"


@pytest.fixture
def compute() -> Iterator[FakeGce]:
    fake = FakeGce()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def billing() -> Iterator[FakeBilling]:
    fake = FakeBilling(require_key=KEY)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def spec_of(folder: Path, compute: FakeGce, billing_url: str) -> Path:
    entry = {"type": "gce", "project": compute.project, "zone": "us-central1-a", "endpoint": compute.url,
             "anonymous": True, "pricing_endpoint": billing_url, "pricing_api_key_env": "BILLING_KEY"}
    return write_spec(folder, f"name: priced\nproviders:\n  gcp: {json.dumps(entry)}\n"
                              "groups:\n  web: {provider: gcp, count: 1}\n")


def test_refresh_reckons_each_machine_type_from_its_familys_rates(home: Path, tmp_path: Path, compute: FakeGce,
                                                                   billing: FakeBilling) -> None:
    billing.add_part("E2", "Core", "us-central1", "0.02")
    billing.add_part("E2", "Ram", "us-central1", "0.003")
    billing.add_part("E2", "Core", "us-central1", "0.006", spot=True)
    billing.add_part("E2", "Ram", "us-central1", "0.0008", spot=True)
    billing.add_part("N2", "Core", "us-central1", "0.03")
    billing.add_part("N2", "Ram", "us-central1", "0.004")
    billing.add_part("E2", "Core", "europe-west1", "0.022", area="Belgium")
    billing.add_part("E2", "Ram", "europe-west1", "0.0033", area="Belgium")
    billing.add_sku("Micro Instance with burstable CPU running in Americas", ["us-central1"], "h", ("0", "0.0076"),
                    group="F1Micro")
    # what cloudherd never launches, at prices that would show if they were taken
    billing.add_sku("E2 Custom Instance Core running in Americas", ["us-central1"], "h", ("0", "9.99"))
    billing.add_sku("E2 Sole Tenancy Instance Core running in Americas", ["us-central1"], "h", ("0", "9.99"))
    billing.add_sku("Commitment v1: E2 Cpu in Americas for 1 Year", ["us-central1"], "h", ("0", "9.99"),
                    usage="Commit1Yr")
    billing.add_sku("N2 Instance Core running in Americas", ["us-central1"], "h", ("0", "9.99"), family="License")
    spec = spec_of(tmp_path / "s", compute, billing.url)

    result = cli("catalog", "refresh", "gcp", "--spec", str(spec), env={"BILLING_KEY": KEY})

    assert result.returncode == 0, result.stderr
    assert f"gce prices of {TODAY}: 12 prices (5 with spot) in 2 regions: europe-west1 (5), us-central1 (7)" \
           in result.stdout
    assert "not priced in us-central1 by the cloud (left out): n1-standard-1, n1-standard-2" in result.stderr
    assert KEY not in result.stdout + result.stderr
    assert len(billing.requests) == 5  # 13 SKUs, 3 a page: every page asked for
    assert all(r["headers"].get("x-goog-api-key") == KEY and "key" not in r["query"] for r in billing.requests)

    book = price_book("gce")
    assert book is not None and book.taken == date.today() and "Cloud Billing Catalog API" in book.source
    expected = {  # vCPUs (a shared-core type: the fraction Google bills) times core, plus GiB times RAM
        "e2-micro": (0.25 * 0.02 + 1 * 0.003, 0.25 * 0.006 + 1 * 0.0008), "e2-small": (0.5 * 0.02 + 2 * 0.003, None),
        "e2-medium": (1 * 0.02 + 4 * 0.003, None), "e2-standard-2": (2 * 0.02 + 8 * 0.003, None),
        "e2-standard-4": (4 * 0.02 + 16 * 0.003, None), "n2-standard-2": (2 * 0.03 + 8 * 0.004, None),
        "f1-micro": (0.0076, None)}
    for size, (hourly, spot) in expected.items():
        price = book.price("us-central1", size)
        assert price is not None and price.hourly == pytest.approx(hourly, abs=1e-9), size
        if spot is not None:
            assert price.spot == pytest.approx(spot, abs=1e-9)
    assert book.price("us-central1", "n2-standard-2").spot is None  # type: ignore[union-attr]  # no spot SKU
    assert book.price("europe-west1", "e2-standard-2").hourly == pytest.approx(2 * 0.022 + 8 * 0.0033)  # type: ignore[union-attr]
    assert book.price("europe-west1", "n2-standard-2") is None
    assert book.default_size == "e2-small"

    shown = cli("catalog", "prices", "gce", "--region", "us-central1", "--size", "^e2-micro$")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"gce prices of {TODAY}"
    assert any(line.split()[:4] == ["us-central1", "e2-micro", "0.0080", "0.0023"] for line in lines), lines


def test_refusals_are_one_line_exit_2_and_change_nothing(home: Path, tmp_path: Path, compute: FakeGce,
                                                         billing: FakeBilling) -> None:
    billing.add_part("E2", "Core", "us-central1", "0.02")
    spec = spec_of(tmp_path / "s", compute, billing.url)

    wrong = cli("catalog", "refresh", "gcp", "--spec", str(spec), env={"BILLING_KEY": "AIzaSy-not-the-key-42"})
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr
    assert wrong.stderr.startswith(f"error: gce pricing ({billing.url}): INVALID_ARGUMENT: API key not valid")
    assert "AIzaSy-not-the-key-42" not in wrong.stderr

    unset = cli("catalog", "refresh", "gcp", "--spec", str(spec))
    assert unset.returncode == 2
    assert unset.stderr.strip() == ("error: gce provider gcp: the environment has no BILLING_KEY (pricing_api_key_env) "
                                    "(no prices were changed)")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    down = cli("catalog", "refresh", "gcp", "--spec", str(spec_of(tmp_path / "d", compute, closed)),
               env={"BILLING_KEY": KEY})
    assert down.returncode == 2
    assert down.stderr.strip() == f"error: gce pricing ({closed}): could not connect (no prices were changed)"

    no_credentials = write_spec(tmp_path / "n", "name: priced\nproviders:\n  gcp: {type: gce, project: p, "
                                                "zone: us-central1-a, credentials: /nonexistent/key.json}\n"
                                                "groups:\n  web: {provider: gcp, count: 1}\n")
    none = cli("catalog", "refresh", "gcp", "--spec", str(no_credentials))
    assert none.returncode == 2 and len(none.stderr.strip().splitlines()) == 1
    assert "the credentials file /nonexistent/key.json does not exist" in none.stderr

    not_there = cli("catalog", "refresh", "nosuch", "--spec", str(spec))
    assert not_there.returncode == 2 and not_there.stderr.strip() == (
        f"error: {spec}: no provider entry 'nosuch' (its entries: gcp)")
    assert not refreshed_path("gce").exists()


def test_without_an_api_key_the_credentials_bearer_token_is_sent(home: Path, compute: FakeGce) -> None:
    from google.oauth2.credentials import Credentials

    billing = FakeBilling(require_token="ya29.a-token-of-the-entry")
    billing.start()
    try:
        billing.add_part("E2", "Core", "us-central1", "0.02")
        billing.add_part("E2", "Ram", "us-central1", "0.003")
        settings = {"project": compute.project, "zone": "us-central1-a", "endpoint": compute.url,
                    "pricing_endpoint": billing.url, "credentials": Credentials("ya29.a-token-of-the-entry")}
        book = asyncio.run(pricing.refresh(settings, [], ["e2-standard-2"]))
        assert book.price("us-central1", "e2-standard-2").hourly == pytest.approx(0.064)  # type: ignore[union-attr]
        assert {r["headers"]["authorization"] for r in billing.requests} == {"Bearer ya29.a-token-of-the-entry"}

        billing.require_token = "ya29.another-token"
        with pytest.raises(AuthError) as refused:
            asyncio.run(pricing.refresh(settings, [], []))
        assert str(refused.value) == (
            f"gce pricing ({billing.url}): UNAUTHENTICATED: the credentials were refused or may not read the Cloud "
            "Billing Catalog API: give an API key (pricing_api_key_env) or credentials that may")
    finally:
        billing.stop()
