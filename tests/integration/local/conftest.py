"""The local tests: local nodes as machines: sshd, sandboxes, shares, networks, rootless nodes.

The fixtures shared in this folder (those used everywhere: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import require_sandbox


@pytest.fixture
def sandboxed(home: Path) -> Path:
    """Skips where this computer cannot sandbox nodes (not root, no sshd); never under CI, which runs as
    root with isolation on."""
    require_sandbox()
    return home
