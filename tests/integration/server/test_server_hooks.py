"""boto3's stock `autoscaling` client puts, describes, completes and deletes lifecycle hooks on `cloudherd serve`:
a launching instance waits in Pending:Wait and a terminating one in Terminating:Wait until
CompleteLifecycleAction, with AWS's shapes and error codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from server_harness import Served, autoscaling_client, aws_refusal, serving

pytest.importorskip("boto3")

LAUNCHING, TERMINATING = "autoscaling:EC2_INSTANCE_LAUNCHING", "autoscaling:EC2_INSTANCE_TERMINATING"


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(home, tmp_path, {"local": "local"}, interval=1) as running:
        yield running


def states(client: Any) -> dict[str, str]:
    [group] = client.describe_auto_scaling_groups(AutoScalingGroupNames=["g"])["AutoScalingGroups"]
    return {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}


def test_lifecycle_hooks_through_boto3(served: Served) -> None:
    client = autoscaling_client(served)
    client.create_launch_configuration(LaunchConfigurationName="web", ImageId="debian-12")
    client.create_auto_scaling_group(AutoScalingGroupName="g", LaunchConfigurationName="web", MinSize=0, MaxSize=3,
                                     DesiredCapacity=0, AvailabilityZones=["local"])
    assert set(client.describe_lifecycle_hook_types()["LifecycleHookTypes"]) == {LAUNCHING, TERMINATING}
    client.put_lifecycle_hook(AutoScalingGroupName="g", LifecycleHookName="warm", LifecycleTransition=LAUNCHING,
                              HeartbeatTimeout=60, DefaultResult="ABANDON", NotificationMetadata="hello")
    [hook] = client.describe_lifecycle_hooks(AutoScalingGroupName="g")["LifecycleHooks"]
    assert {k: hook[k] for k in ("LifecycleHookName", "LifecycleTransition", "HeartbeatTimeout", "GlobalTimeout",
                                 "DefaultResult", "NotificationMetadata")} == {
        "LifecycleHookName": "warm", "LifecycleTransition": LAUNCHING, "HeartbeatTimeout": 60,
        "GlobalTimeout": 6000, "DefaultResult": "ABANDON", "NotificationMetadata": "hello"}
    assert aws_refusal(client.put_lifecycle_hook, AutoScalingGroupName="g", LifecycleHookName="bad",
                   LifecycleTransition="autoscaling:EC2_INSTANCE_NAPPING")[0] == "ValidationError"

    client.set_desired_capacity(AutoScalingGroupName="g", DesiredCapacity=1)
    wait_until(lambda: list(states(client).values()) == ["Pending:Wait"], timeout=120, what="held after launch")
    [instance] = states(client)
    client.record_lifecycle_action_heartbeat(AutoScalingGroupName="g", LifecycleHookName="warm", InstanceId=instance)
    client.complete_lifecycle_action(AutoScalingGroupName="g", LifecycleHookName="warm", InstanceId=instance,
                                     LifecycleActionResult="CONTINUE")
    wait_until(lambda: states(client) == {instance: "InService"}, timeout=60, what="in service once completed")
    code, message = aws_refusal(client.complete_lifecycle_action, AutoScalingGroupName="g", LifecycleHookName="warm",
                            InstanceId=instance, LifecycleActionResult="CONTINUE")
    assert code == "ValidationError" and message == f"No active Lifecycle Action found with instance ID {instance}"

    client.put_lifecycle_hook(AutoScalingGroupName="g", LifecycleHookName="drain", LifecycleTransition=TERMINATING,
                              HeartbeatTimeout=300, DefaultResult="CONTINUE")
    client.set_desired_capacity(AutoScalingGroupName="g", DesiredCapacity=0)
    wait_until(lambda: states(client) == {instance: "Terminating:Wait"}, timeout=60, what="held before its end")
    client.complete_lifecycle_action(AutoScalingGroupName="g", LifecycleHookName="drain", InstanceId=instance,
                                     LifecycleActionResult="CONTINUE")
    wait_until(lambda: states(client) == {}, timeout=60, what="ended once completed")

    client.delete_lifecycle_hook(AutoScalingGroupName="g", LifecycleHookName="warm")
    assert [h["LifecycleHookName"] for h in client.describe_lifecycle_hooks(AutoScalingGroupName="g")[
        "LifecycleHooks"]] == ["drain"]
    code, message = aws_refusal(client.delete_lifecycle_hook, AutoScalingGroupName="g", LifecycleHookName="warm")
    assert code == "ValidationError" and message == "No Lifecycle Hook found for name 'warm' in group 'g'"


def test_a_warm_pool_through_boto3(served: Served) -> None:
    client = autoscaling_client(served)
    client.create_launch_configuration(LaunchConfigurationName="web", ImageId="debian-12")
    client.create_auto_scaling_group(AutoScalingGroupName="g", LaunchConfigurationName="web", MinSize=0, MaxSize=3,
                                     DesiredCapacity=1, AvailabilityZones=["local"])
    assert aws_refusal(client.put_warm_pool, AutoScalingGroupName="g", PoolState="Hibernated")[0] == "ValidationError"
    assert aws_refusal(client.put_warm_pool, AutoScalingGroupName="g",
                   InstanceReusePolicy={"ReuseOnScaleIn": True})[0] == "ValidationError"
    client.put_warm_pool(AutoScalingGroupName="g", MinSize=0, MaxGroupPreparedCapacity=3, PoolState="Stopped")

    def pool() -> dict[str, str]:
        return {i["InstanceId"]: i["LifecycleState"] for i in client.describe_warm_pool(
            AutoScalingGroupName="g")["Instances"]}

    wait_until(lambda: list(pool().values()) == ["Warmed:Stopped"] * 2 and list(states(client).values()) == [
        "InService"], timeout=120, what="one instance in service, two warmed and stopped (3 prepared in all)")
    config = client.describe_warm_pool(AutoScalingGroupName="g")["WarmPoolConfiguration"]
    assert (config["MinSize"], config["MaxGroupPreparedCapacity"], config["PoolState"]) == (0, 3, "Stopped")
    prepared = set(pool()) | set(states(client))
    client.set_desired_capacity(AutoScalingGroupName="g", DesiredCapacity=2)  # one taken; 3 prepared still
    wait_until(lambda: len(states(client)) == 2 and set(states(client).values()) == {"InService"}
               and len(pool()) == 1 and set(pool()) | set(states(client)) == prepared,
               timeout=120, what="one warmed instance in service, the other still in the pool, none made")
    client.put_warm_pool(AutoScalingGroupName="g", MinSize=1, MaxGroupPreparedCapacity=2, PoolState="Stopped")
    wait_until(lambda: list(pool().values()) == ["Warmed:Stopped"] and len(states(client)) == 2, timeout=120,
               what="the pool at its MinSize above a group at its prepared capacity")

    client.delete_warm_pool(AutoScalingGroupName="g", ForceDelete=True)
    wait_until(lambda: pool() == {}, timeout=60, what="the pool's instances ended")
    assert "WarmPoolConfiguration" not in client.describe_warm_pool(AutoScalingGroupName="g")
    assert aws_refusal(client.delete_warm_pool, AutoScalingGroupName="g")[0] == "ValidationError"
