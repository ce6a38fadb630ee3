"""boto3's stock `autoscaling` client refreshes a group's instances on `cloudherd serve`: StartInstanceRefresh
replaces every instance through cloudherd's health-gated rolling update, DescribeInstanceRefreshes follows it,
CancelInstanceRefresh and RollbackInstanceRefresh end one in progress, with AWS's statuses and error codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from server_harness import Served, autoscaling_client, aws_refusal, serving

pytest.importorskip("boto3")


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(home, tmp_path, {"local": "local"}, interval=1) as running:
        yield running


def in_service(client: Any) -> set[str]:
    [group] = client.describe_auto_scaling_groups(AutoScalingGroupNames=["g"])["AutoScalingGroups"]
    return {i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"}


def refresh(client: Any, refresh_id: str) -> dict[str, Any]:
    [found] = client.describe_instance_refreshes(AutoScalingGroupName="g", InstanceRefreshIds=[refresh_id])[
        "InstanceRefreshes"]
    return dict(found)


def test_an_instance_refresh_replaces_every_instance_and_can_be_cancelled_or_rolled_back(served: Served) -> None:
    client = autoscaling_client(served)
    client.create_launch_configuration(LaunchConfigurationName="web", ImageId="debian-12")
    client.create_auto_scaling_group(AutoScalingGroupName="g", LaunchConfigurationName="web", MinSize=0, MaxSize=4,
                                     DesiredCapacity=2, AvailabilityZones=["local"])
    wait_until(lambda: len(in_service(client)) == 2, timeout=120, what="2 instances in service")
    before = in_service(client)
    assert aws_refusal(client.start_instance_refresh, AutoScalingGroupName="g",
                   Preferences={"CheckpointPercentages": [50]})[0] == "ValidationError"

    first = client.start_instance_refresh(AutoScalingGroupName="g", Preferences={
        "MinHealthyPercentage": 50, "InstanceWarmup": 0, "AutoRollback": True})["InstanceRefreshId"]
    assert aws_refusal(client.start_instance_refresh, AutoScalingGroupName="g")[0] == "InstanceRefreshInProgress"
    wait_until(lambda: refresh(client, first)["Status"] == "Successful", timeout=240, what="the refresh done")
    shown = refresh(client, first)
    assert shown["PercentageComplete"] == 100 and shown["Preferences"]["MinHealthyPercentage"] == 50
    after = in_service(client)
    assert len(after) == 2 and not after & before  # every instance replaced, the size kept
    code, _ = aws_refusal(client.cancel_instance_refresh, AutoScalingGroupName="g")
    assert code == "ActiveInstanceRefreshNotFound"

    # held by a suspended InstanceRefresh process, a refresh stays in progress until it is cancelled
    client.suspend_processes(AutoScalingGroupName="g", ScalingProcesses=["InstanceRefresh"])
    second = client.start_instance_refresh(AutoScalingGroupName="g")["InstanceRefreshId"]
    assert refresh(client, second)["Status"] == "InProgress"
    assert client.cancel_instance_refresh(AutoScalingGroupName="g")["InstanceRefreshId"] == second
    assert refresh(client, second)["Status"] == "Cancelled"

    third = client.start_instance_refresh(AutoScalingGroupName="g")["InstanceRefreshId"]
    assert client.rollback_instance_refresh(AutoScalingGroupName="g")["InstanceRefreshId"] == third
    client.resume_processes(AutoScalingGroupName="g")
    wait_until(lambda: refresh(client, third)["Status"] == "RollbackSuccessful", timeout=120,
               what="the rollback applied")
    assert in_service(client) == after  # nothing was replaced: the instances of the first refresh stay
