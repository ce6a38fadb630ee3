"""The sample of slow scenario tests a CI run makes.

A test marked ``@pytest.mark.scenario`` is a slow end-to-end story (minutes of real sshd, moto, kill -9).
Run locally, every one runs.  Under ``CI=true`` a share of them runs, so that ``.ci/run`` stays within its
time budget on a slow machine; which share changes each day (the day salts the pick), so successive CI runs
cover them all.  ``CLOUDHERD_SCENARIOS`` says how many: ``all``, ``none``, or a share such as ``1/2`` or
``0.3``; CI's default is ``1/3``.  The pick of a day is the same in every run of that day.
"""

from __future__ import annotations

import os
import zlib
from datetime import UTC, datetime
from fractions import Fraction

import pytest

CI_SHARE = Fraction(1, 3)
MARKER = "scenario: a slow end-to-end test; CI=true runs a daily sample of them (see tests/support/scenarios.py)"


def share() -> Fraction:
    """The share of scenario tests to run, from CLOUDHERD_SCENARIOS (all when unset, except under CI)."""
    raw = os.environ.get("CLOUDHERD_SCENARIOS", "").strip().lower()
    if not raw:
        return CI_SHARE if os.environ.get("CI") == "true" else Fraction(1)
    if raw == "all":
        return Fraction(1)
    if raw == "none":
        return Fraction(0)
    try:
        value = Fraction(raw)
    except (ValueError, ZeroDivisionError):
        value = Fraction(-1)
    if not 0 <= value <= 1:
        raise pytest.UsageError(f"CLOUDHERD_SCENARIOS={raw!r}: give all, none, or a share from 0 to 1 (1/2, 0.3)")
    return value


def picked(nodeid: str, day: str, wanted: Fraction) -> bool:
    """Whether the test ``nodeid`` is in ``day``'s sample of ``wanted`` (a stable hash, not a random draw)."""
    return zlib.crc32(f"{day}:{nodeid}".encode()) % 10_000 < wanted * 10_000


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def select(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the scenario tests outside the day's sample (pytest reports them as deselected)."""
    wanted = share()
    if wanted == 1:
        return
    day = today()
    dropped = [i for i in items if i.get_closest_marker("scenario") and not picked(i.nodeid, day, wanted)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        gone = set(map(id, dropped))
        items[:] = [i for i in items if id(i) not in gone]


def header() -> str:
    wanted = share()
    if wanted == 1:
        return "scenario tests: all"
    return f"scenario tests: a {wanted} share, {today()}'s pick (CLOUDHERD_SCENARIOS=all runs them all)"
