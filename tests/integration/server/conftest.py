"""The server tests: a real `cloudherd serve` process (server_harness).

The fixtures shared in this folder (those used everywhere: tests/conftest.py)."""

from __future__ import annotations

import pytest
from server_harness import Served


@pytest.fixture(scope="module")
def token(served: Served) -> str:
    """A token of the module's ``served`` server (a module-scoped ``served`` fixture in the test file)."""
    return served.token()
