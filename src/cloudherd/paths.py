"""Where cloudherd keeps its files: one data folder per user, ``CLOUDHERD_HOME`` to move it."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir() -> Path:
    """The user's cloudherd folder (database, keys, local nodes), created on first use."""
    root = os.environ.get("CLOUDHERD_HOME") or platformdirs.user_data_dir("cloudherd", appauthor=False)
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
