"""Fixtures every integration area shares: moto's EC2 (``moto_server``, and its URL as ``moto``).

Each area's own fixtures are in its folder's conftest.py; those used everywhere (``home``, ``server``: the
local nodes' SSH server, the stores, ``postgres``) in tests/conftest.py; harnesses in tests/support/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto_faults import FaultyMotoServer, moto_aws


@pytest.fixture
def moto_server() -> Iterator[FaultyMotoServer]:
    """moto's EC2 over real HTTP behind the fault injector, the AWS environment pointing at it (see moto_faults)."""
    pytest.importorskip("moto.server")
    with moto_aws(seed=3) as running:
        yield running


@pytest.fixture
def moto(moto_server: FaultyMotoServer) -> str:
    """The endpoint URL of :func:`moto_server`."""
    return moto_server.url
