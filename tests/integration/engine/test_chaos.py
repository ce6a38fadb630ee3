"""Chaos, bounded for CI: SIGKILL the CLI at 6+ random points (CHAOS_KILLS; bench/chaos.py runs 100) of
up / scale / down of a 10-node infrastructure, on the local provider and on AWS (moto over HTTP), resume
each time, and check that the database, the provider and the spec agree: nothing leaked, nothing lost,
nothing made twice.

The heal cycle: a node's sshd is SIGKILLed (a dead node), ``manage --once`` (one reconcile pass heals
it) is SIGKILLed at a random point, and another ``manage --once`` resumes; the same ground truth, plus
``count`` ready nodes of which the dead node is not one.  CHAOS_HEAL_KILLS sets how many passes are
killed (2 per provider in CI, ~20 s each, to keep CI under its bound; more for a heavier run, or
bench/chaos.py --heal-kills).

The seed is printed (and taken from CHAOS_SEED when set) so a failure can be replayed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from chaos_harness import AMI, Chaos, Tally, run_chaos, run_heal_chaos, run_rolling_chaos

KILLS = int(os.environ.get("CHAOS_KILLS", "6"))
HEAL_KILLS = int(os.environ.get("CHAOS_HEAL_KILLS", "2"))
ROLL_KILLS = int(os.environ.get("CHAOS_ROLL_KILLS", "3"))


def _seed(provider: str) -> int:
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1_000_000))
    print(f"chaos seed {seed} ({provider}); replay with CHAOS_SEED={seed}")
    return seed


def _clean(tally: Tally, seed: int) -> None:
    assert (tally.leaked, tally.lost, tally.duplicated) == (0, 0, 0), f"seed {seed}: {tally.problems}"
    assert tally.resumes <= tally.checks and not tally.problems, f"seed {seed}: {tally.problems}"


@pytest.mark.parametrize("provider", ["local", "aws"])
@pytest.mark.scenario
def test_no_leak_no_loss_no_duplicate_under_sigkill(provider: str, tmp_path: Path) -> None:
    if provider == "aws":
        pytest.importorskip("moto.server")
    seed = _seed(provider)
    tally = run_chaos(provider, KILLS, seed, tmp_path, nodes=10, log=print)
    print(tally.row())
    assert tally.kills >= KILLS, f"only {tally.kills} kills landed (seed {seed})"
    assert tally.resumes == tally.checks, f"seed {seed}: {tally.problems}"
    _clean(tally, seed)


@pytest.mark.parametrize("provider", ["local", "aws"])
@pytest.mark.scenario
def test_heal_under_sigkill(provider: str, tmp_path: Path) -> None:
    if provider == "aws":
        pytest.importorskip("moto.server")
    seed = _seed(provider)
    tally = run_heal_chaos(provider, HEAL_KILLS, seed, tmp_path, nodes=6, log=print)
    print(tally.row())
    assert tally.heal_kills >= HEAL_KILLS, f"only {tally.heal_kills} heal passes were killed (seed {seed})"
    assert tally.heals == tally.resumes, f"seed {seed}: {tally.problems}"
    _clean(tally, seed)


@pytest.mark.parametrize("provider", ["local", pytest.param("aws", marks=pytest.mark.scenario)])
def test_rolling_release_under_sigkill(provider: str, tmp_path: Path) -> None:
    """A rolling release killed at random points and resumed: nothing leaked, lost or doubled, every node on
    the release in the end, and never fewer serving nodes than the group's size (max_surge 1, unavailable 0)."""
    if provider == "aws":
        pytest.importorskip("moto.server")
    seed = _seed(provider)
    tally = run_rolling_chaos(provider, ROLL_KILLS, seed, tmp_path, nodes=6, log=print)
    print(tally.row())
    assert tally.kills >= ROLL_KILLS, f"only {tally.kills} kills landed (seed {seed})"
    assert tally.rollouts == tally.resumes, f"seed {seed}: {tally.problems}"
    assert tally.fewest_serving is not None and tally.fewest_serving >= 6, f"seed {seed}: {tally.problems}"
    _clean(tally, seed)


def test_the_ground_truth_reads_every_page_of_machines(tmp_path: Path) -> None:
    """EC2 (and moto) answer DescribeInstances 100 reservations at a time: the harness must see the 101st
    machine, or a long chaos run on AWS reports machines as lost that are there."""
    import boto3

    with Chaos("aws", tmp_path, seed=1) as chaos:
        ec2 = boto3.client("ec2", endpoint_url=chaos.env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        tags = [{"ResourceType": "instance", "Tags": [{"Key": "cloudherd:infra", "Value": "inf-many"}]}]
        made = [ec2.run_instances(ImageId=AMI, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                  TagSpecifications=tags)["Instances"][0]["InstanceId"] for _ in range(101)]
        first_page = ec2.describe_instances()
        assert "NextToken" in first_page, "moto answered in one page: this test no longer shows paging"
        assert set(chaos._machines({"inf-many"})) == set(made)
        ec2.terminate_instances(InstanceIds=made)
