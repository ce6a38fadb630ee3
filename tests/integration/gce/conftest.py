"""The gce tests: the gce provider against a Compute API fake on 127.0.0.1 (gce_wire).

A fixture two files here share belongs in this file (those used everywhere: tests/conftest.py; moto:
tests/integration/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gce_wire import FakeGce

# what would point the driver at a real project: unset for every test
ENV = ["GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_PROJECT", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT",
       "GOOGLE_DATACENTER", "CLOUDSDK_COMPUTE_ZONE"]


@pytest.fixture(scope="module")
def gce_server() -> Iterator[FakeGce]:
    """The Compute API fake (gce_wire), for the whole module; ``fake`` resets it for each test."""
    fake = FakeGce()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake(gce_server: FakeGce, monkeypatch: pytest.MonkeyPatch) -> FakeGce:
    gce_server.reset()
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return gce_server
