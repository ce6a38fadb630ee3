"""What the benchmarks share: the cloudherd command as a user runs it, and a throw-away home for it."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def cloudherd_command() -> list[str]:
    """The ``cloudherd`` console script beside this Python, else ``python -m cloudherd``."""
    script = Path(sys.executable).with_name("cloudherd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cloudherd"]


def throwaway_env(folder: Path) -> dict[str, str]:
    """The environment with HOME, CLOUDHERD_HOME and CLOUDHERD_DB inside ``folder`` (nothing of the user's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDHERD_")}
    home = folder / "home"
    home.mkdir()
    (folder / "cloudherd").mkdir(mode=0o700)
    env.update(HOME=str(home), CLOUDHERD_HOME=str(folder / "cloudherd"),
               CLOUDHERD_DB=f"sqlite:///{folder / 'cloudherd' / 'state.db'}")
    env.pop("XDG_DATA_HOME", None)
    return env
