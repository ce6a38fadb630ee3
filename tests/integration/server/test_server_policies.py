"""boto3's stock `autoscaling` client puts, describes, executes and deletes scaling policies on `cloudherd serve`:
a target-tracking policy becomes the group's own (the manager follows it), simple and step policies run when
ExecutePolicy asks, with AWS's adjustment types, cooldowns and error codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import Served, autoscaling_client, aws_refusal, serving

pytest.importorskip("boto3")


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(home, tmp_path, {"local": "local"}, interval=30) as running:
        yield running


def desired(client: Any) -> int:
    return int(client.describe_auto_scaling_groups(AutoScalingGroupNames=["g"])["AutoScalingGroups"][0][
        "DesiredCapacity"])


def test_scaling_policies_through_boto3(served: Served) -> None:
    client = autoscaling_client(served)
    client.create_launch_configuration(LaunchConfigurationName="web", ImageId="debian-12")
    client.create_auto_scaling_group(AutoScalingGroupName="g", LaunchConfigurationName="web", MinSize=0, MaxSize=4,
                                     DesiredCapacity=0, AvailabilityZones=["local"])

    # a warm-up of an hour: no node counts towards the cpu average during this test, so that the manager's
    # passes (which follow the policy) change no size behind the test's back on a busy machine
    put = client.put_scaling_policy(
        AutoScalingGroupName="g", PolicyName="keep-cpu", PolicyType="TargetTrackingScaling",
        TargetTrackingConfiguration={"PredefinedMetricSpecification": {
            "PredefinedMetricType": "ASGAverageCPUUtilization"}, "TargetValue": 50.0}, EstimatedInstanceWarmup=3600)
    assert put["PolicyARN"].endswith(":autoScalingGroupName/g:policyName/keep-cpu")
    with served.client(served.token()) as api:  # the group's spec now has the policy: the manager follows it
        [infra] = [i for i in api.get("/v1/infrastructures").json() if i["name"].startswith("asg-g-")]
        [nodes] = api.get(f"/v1/infrastructures/{infra['id']}/groups").json()
        # AWS's default termination policy, in cloudherd's words, is the group's too
        assert nodes["policies"] == ["target tracking: cpu at 50",
                                     "scale-in: oldest-release, then closest-to-next-hour, then newest first"]
    assert aws_refusal(client.put_scaling_policy, AutoScalingGroupName="g", PolicyName="net",
                   PolicyType="TargetTrackingScaling", TargetTrackingConfiguration={
                       "PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageNetworkIn"},
                       "TargetValue": 5.0})[0] == "ValidationError"

    client.put_scaling_policy(AutoScalingGroupName="g", PolicyName="add-two", PolicyType="SimpleScaling",
                              AdjustmentType="ChangeInCapacity", ScalingAdjustment=2, Cooldown=600)
    client.execute_policy(AutoScalingGroupName="g", PolicyName="add-two", HonorCooldown=False)
    assert desired(client) == 2
    code, message = aws_refusal(client.execute_policy, AutoScalingGroupName="g", PolicyName="add-two",
                                HonorCooldown=True)
    assert code == "ScalingActivityInProgress" and "cooldown (600s)" in message and desired(client) == 2

    client.put_scaling_policy(
        AutoScalingGroupName="g", PolicyName="surge", PolicyType="StepScaling",
        AdjustmentType="PercentChangeInCapacity", MinAdjustmentMagnitude=1,
        StepAdjustments=[{"MetricIntervalLowerBound": 0.0, "MetricIntervalUpperBound": 10.0, "ScalingAdjustment": 50},
                         {"MetricIntervalLowerBound": 10.0, "ScalingAdjustment": 100}])
    client.execute_policy(AutoScalingGroupName="g", PolicyName="surge", MetricValue=85.0, BreachThreshold=80.0)
    assert desired(client) == 3  # 5 past the threshold: +50% of 2
    client.execute_policy(AutoScalingGroupName="g", PolicyName="surge", MetricValue=95.0, BreachThreshold=80.0)
    assert desired(client) == 4  # 15 past: +100%, bounded by MaxSize
    assert aws_refusal(client.execute_policy, AutoScalingGroupName="g", PolicyName="surge")[0] == "ValidationError"
    assert aws_refusal(client.execute_policy, AutoScalingGroupName="g", PolicyName="keep-cpu")[0] == "ValidationError"

    policies = client.describe_policies(AutoScalingGroupName="g")["ScalingPolicies"]
    assert [(p["PolicyName"], p["PolicyType"]) for p in policies] == [
        ("add-two", "SimpleScaling"), ("keep-cpu", "TargetTrackingScaling"), ("surge", "StepScaling")]
    surge = policies[2]
    assert [(s.get("MetricIntervalLowerBound"), s.get("MetricIntervalUpperBound"), s["ScalingAdjustment"])
            for s in surge["StepAdjustments"]] == [(0.0, 10.0, 50), (10.0, None, 100)]
    assert policies[1]["TargetTrackingConfiguration"]["TargetValue"] == 50.0
    only = client.describe_policies(AutoScalingGroupName="g", PolicyTypes=["SimpleScaling"])["ScalingPolicies"]
    assert [p["PolicyName"] for p in only] == ["add-two"]

    client.delete_policy(AutoScalingGroupName="g", PolicyName="keep-cpu")
    assert [p["PolicyName"] for p in client.describe_policies(AutoScalingGroupName="g")["ScalingPolicies"]] == [
        "add-two", "surge"]
    assert aws_refusal(client.delete_policy, AutoScalingGroupName="g", PolicyName="keep-cpu")[0] == "ValidationError"
    with served.client(served.token()) as api:
        [nodes] = api.get(f"/v1/infrastructures/{infra['id']}/groups").json()
        assert nodes["policies"] == ["scale-in: oldest-release, then closest-to-next-hour, then newest first"]
    client.delete_auto_scaling_group(AutoScalingGroupName="g", ForceDelete=True)


def test_scheduled_actions_through_boto3(served: Served) -> None:
    client = autoscaling_client(served)
    client.create_launch_configuration(LaunchConfigurationName="web", ImageId="debian-12")
    client.create_auto_scaling_group(AutoScalingGroupName="g", LaunchConfigurationName="web", MinSize=0, MaxSize=4,
                                     DesiredCapacity=0, AvailabilityZones=["local"])
    client.put_scheduled_update_group_action(AutoScalingGroupName="g", ScheduledActionName="workday",
                                             Recurrence="0 8 * * mon-fri", TimeZone="Europe/Budapest", MinSize=1,
                                             DesiredCapacity=3)
    failed = client.batch_put_scheduled_update_group_action(AutoScalingGroupName="g", ScheduledUpdateGroupActions=[
        {"ScheduledActionName": "night", "Recurrence": "0 20 * * *", "MinSize": 0, "MaxSize": 1, "DesiredCapacity": 0},
        {"ScheduledActionName": "launch", "StartTime": "2030-01-01T08:00:00Z", "DesiredCapacity": 4},
        {"ScheduledActionName": "bad", "Recurrence": "0 25 * * *", "DesiredCapacity": 1},
    ])["FailedScheduledUpdateGroupActions"]
    assert [(f["ScheduledActionName"], f["ErrorCode"]) for f in failed] == [("bad", "ValidationError")]
    assert "outside 0-23" in failed[0]["ErrorMessage"]

    actions = client.describe_scheduled_actions(AutoScalingGroupName="g")["ScheduledUpdateGroupActions"]
    assert [(a["ScheduledActionName"], a.get("Recurrence"), a.get("DesiredCapacity")) for a in actions] == [
        ("launch", None, 4), ("night", "0 20 * * *", 0), ("workday", "0 8 * * mon-fri", 3)]
    assert actions[0]["StartTime"].year == 2030 and actions[2]["TimeZone"] == "Europe/Budapest"
    with served.client(served.token()) as api:  # the group's spec has them: the manager fires them
        [infra] = [i for i in api.get("/v1/infrastructures").json() if i["name"].startswith("asg-g-")]
        [nodes] = api.get(f"/v1/infrastructures/{infra['id']}/groups").json()
        assert "schedule workday: cron 0 8 * * mon-fri (Europe/Budapest) → min 1, desired 3" in nodes["policies"]

    code, message = aws_refusal(client.put_scheduled_update_group_action, AutoScalingGroupName="g",
                            ScheduledActionName="tz", Recurrence="0 8 * * *", TimeZone="Mars/Olympus",
                            DesiredCapacity=1)
    assert code == "ValidationError" and "no time zone 'Mars/Olympus'" in message

    client.delete_scheduled_action(AutoScalingGroupName="g", ScheduledActionName="launch")
    failed = client.batch_delete_scheduled_action(AutoScalingGroupName="g", ScheduledActionNames=["night", "nope"])[
        "FailedScheduledActions"]
    assert [f["ScheduledActionName"] for f in failed] == ["nope"]
    left = client.describe_scheduled_actions(AutoScalingGroupName="g")["ScheduledUpdateGroupActions"]
    assert [a["ScheduledActionName"] for a in left] == ["workday"]
    assert aws_refusal(client.delete_scheduled_action, AutoScalingGroupName="g",
                   ScheduledActionName="launch")[0] == "ValidationError"
    client.delete_auto_scaling_group(AutoScalingGroupName="g", ForceDelete=True)
