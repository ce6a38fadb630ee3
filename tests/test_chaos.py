"""Chaos, bounded for CI: SIGKILL the CLI at 20+ random points of up / scale / down of a 10-node
infrastructure, on the local provider and on AWS (moto over HTTP), resume each time, and check that the
database, the provider and the spec agree: nothing leaked, nothing lost, nothing made twice.

The seed is printed (and taken from CHAOS_SEED when set) so a failure can be replayed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.chaos_harness import run_chaos

KILLS = int(os.environ.get("CHAOS_KILLS", "20"))


@pytest.mark.parametrize("provider", ["local", "aws"])
def test_no_leak_no_loss_no_duplicate_under_sigkill(provider: str, tmp_path: Path) -> None:
    if provider == "aws":
        pytest.importorskip("moto.server")
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1_000_000))
    print(f"chaos seed {seed} ({provider}); replay with CHAOS_SEED={seed}")
    tally = run_chaos(provider, KILLS, seed, tmp_path, nodes=10, log=print)
    print(tally.row())
    assert tally.kills >= KILLS, f"only {tally.kills} kills landed (seed {seed})"
    assert (tally.leaked, tally.lost, tally.duplicated) == (0, 0, 0), f"seed {seed}: {tally.problems}"
    assert tally.resumes == tally.checks and not tally.problems, f"seed {seed}: {tally.problems}"
