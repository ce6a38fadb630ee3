"""boto3's stock `autoscaling` client on a group's instances and processes, on `cloudherd serve`: termination
policies and new-instance protection kept and followed, SetInstanceProtection, EnterStandby / ExitStandby,
SetInstanceHealth, SuspendProcesses / ResumeProcesses (kept across a restart of serve), DescribeScalingActivities
and the Describe*Types lists, with AWS's shapes and error codes."""

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


def group(client: Any) -> dict[str, Any]:
    return client.describe_auto_scaling_groups(AutoScalingGroupNames=["g"])["AutoScalingGroups"][0]


def states(client: Any) -> dict[str, str]:
    return {i["InstanceId"]: i["LifecycleState"] for i in group(client)["Instances"]}


def in_service(client: Any) -> set[str]:
    return {i for i, state in states(client).items() if state == "InService"}


def by_age(served: Served) -> list[str]:
    """The group's instance ids, oldest first (by their node's index, from the native API)."""
    with served.client(served.token()) as api:
        [infra] = [i for i in api.get("/v1/infrastructures").json() if i["name"].startswith("asg-g-")]
        nodes = api.get(f"/v1/infrastructures/{infra['id']}/nodes").json()
    return [f"i-{n['id']}" for n in sorted(nodes, key=lambda n: n["index"]) if n["state"] != "terminated"]


def test_protection_standby_and_termination_policies_through_boto3(served: Served) -> None:
    client = autoscaling_client(served)
    client.create_launch_configuration(LaunchConfigurationName="web", ImageId="debian-12")
    client.create_auto_scaling_group(AutoScalingGroupName="g", LaunchConfigurationName="web", MinSize=0, MaxSize=4,
                                     DesiredCapacity=3, AvailabilityZones=["local"],
                                     TerminationPolicies=["OldestInstance"])
    wait_until(lambda: len(in_service(client)) == 3, timeout=120, what="3 instances in service")
    shown = group(client)
    assert shown["TerminationPolicies"] == ["OldestInstance"] and shown["NewInstancesProtectedFromScaleIn"] is False
    oldest, middle, newest = by_age(served)

    client.set_instance_protection(AutoScalingGroupName="g", InstanceIds=[oldest], ProtectedFromScaleIn=True)
    assert {i["InstanceId"]: i["ProtectedFromScaleIn"] for i in group(client)["Instances"]} == {
        oldest: True, middle: False, newest: False}
    client.set_desired_capacity(AutoScalingGroupName="g", DesiredCapacity=2)  # the oldest unprotected one goes
    wait_until(lambda: set(states(client)) == {oldest, newest}, timeout=120, what="the middle instance gone")

    moved = client.enter_standby(AutoScalingGroupName="g", InstanceIds=[newest], ShouldDecrementDesiredCapacity=True)
    assert [a["StatusCode"] for a in moved["Activities"]] == ["InProgress"]
    wait_until(lambda: group(client)["DesiredCapacity"] == 1, timeout=60, what="the size down by one")
    assert states(client) == {oldest: "InService", newest: "Standby"}  # kept, nothing made for it
    code, message = aws_refusal(client.exit_standby, AutoScalingGroupName="g", InstanceIds=[oldest])
    assert code == "ValidationError" and message == f"The instance {oldest} is not in Standby."
    code, message = aws_refusal(client.set_instance_protection, AutoScalingGroupName="g", InstanceIds=["i-nothing"],
                            ProtectedFromScaleIn=True)
    assert code == "ValidationError" and message == "The instance i-nothing is not part of Auto Scaling group g."
    client.exit_standby(AutoScalingGroupName="g", InstanceIds=[newest])
    wait_until(lambda: group(client)["DesiredCapacity"] == 2, timeout=60, what="the size up by one")
    assert states(client) == {oldest: "InService", newest: "InService"}

    client.update_auto_scaling_group(AutoScalingGroupName="g", NewInstancesProtectedFromScaleIn=True,
                                     TerminationPolicies=["NewestInstance"])
    assert group(client)["NewInstancesProtectedFromScaleIn"] is True
    assert aws_refusal(client.update_auto_scaling_group, AutoScalingGroupName="g",
                   TerminationPolicies=["Cheapest"])[0] == "ValidationError"

    client.set_instance_health(InstanceId=newest, HealthStatus="Unhealthy")  # replaced, the size kept
    wait_until(lambda: newest not in states(client) and len(in_service(client)) == 2, timeout=120,
               what="the unhealthy instance replaced")
    [fresh] = in_service(client) - {oldest}
    assert {i["InstanceId"]: i["ProtectedFromScaleIn"] for i in group(client)["Instances"]}[fresh] is True
    causes = [a["Cause"] for a in client.describe_scaling_activities(AutoScalingGroupName="g")["Activities"]]
    assert any("(EnterStandby)" in c for c in causes) and any("(SetInstanceProtection)" in c for c in causes)
    assert "OldestInstance" in client.describe_termination_policy_types()["TerminationPolicyTypes"]
    assert {a["AdjustmentType"] for a in client.describe_adjustment_types()["AdjustmentTypes"]} == {
        "ChangeInCapacity", "ExactCapacity", "PercentChangeInCapacity"}


def test_suspended_processes_hold_across_a_restart_of_serve(served: Served) -> None:
    client = autoscaling_client(served)
    client.create_launch_configuration(LaunchConfigurationName="web", ImageId="debian-12")
    client.create_auto_scaling_group(AutoScalingGroupName="g", LaunchConfigurationName="web", MinSize=0, MaxSize=4,
                                     DesiredCapacity=1, AvailabilityZones=["local"])
    wait_until(lambda: len(in_service(client)) == 1, timeout=120, what="1 instance in service")
    processes = {p["ProcessName"] for p in client.describe_scaling_process_types()["Processes"]}
    assert {"Launch", "Terminate", "HealthCheck", "ReplaceUnhealthy", "AZRebalance", "ScheduledActions",
            "AlarmNotification", "AddToLoadBalancer", "InstanceRefresh"} == processes
    assert aws_refusal(client.suspend_processes, AutoScalingGroupName="g",
                   ScalingProcesses=["Teleport"])[0] == "ValidationError"

    client.suspend_processes(AutoScalingGroupName="g", ScalingProcesses=["Launch"])
    [held] = group(client)["SuspendedProcesses"]
    assert held["ProcessName"] == "Launch" and held["SuspensionReason"].startswith("User suspended at ")
    client.set_desired_capacity(AutoScalingGroupName="g", DesiredCapacity=2)
    wait_until(lambda: any("=2 → 2" in a["Cause"] for a in client.describe_scaling_activities(
        AutoScalingGroupName="g")["Activities"]), timeout=60, what="the new size taken by a pass")
    causes = [a["Cause"] for a in client.describe_scaling_activities(AutoScalingGroupName="g")["Activities"]]
    assert any("=2 → 2" in c and c.endswith(", in response to: nodes: set 2 requested") for c in causes), causes
    with served.client(served.token()) as api:  # the request, as an event of its own, says who asked and how
        [infra] = [i for i in api.get("/v1/infrastructures").json() if i["name"].startswith("asg-g-")]
        events = api.get(f"/v1/infrastructures/{infra['id']}/events", headers={"Accept": "application/json"}).json()
    asked = [e for e in events if e["kind"] == "request"]
    assert asked and asked[-1]["origin"].startswith("Auto Scaling SetDesiredCapacity (by ")
    assert len(states(client)) == 1  # launch suspended: nothing made

    served.stop()
    served.start()
    client = autoscaling_client(served)
    assert [p["ProcessName"] for p in group(client)["SuspendedProcesses"]] == ["Launch"]
    assert len(states(client)) == 1
    client.resume_processes(AutoScalingGroupName="g")  # all of them
    assert group(client)["SuspendedProcesses"] == []
    wait_until(lambda: len(in_service(client)) == 2, timeout=120, what="the second instance made once resumed")
