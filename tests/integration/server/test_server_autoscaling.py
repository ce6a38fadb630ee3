"""boto3's stock `autoscaling` client against a running `cloudherd serve` (Phantom's way of scripting a
multi-cloud domain), on two local clouds: real nodes, real SigV4, AWS's error codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from server_harness import Served, serving

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(home, tmp_path, {"hotel": "local", "sierra": "local"}, interval=1) as running:
        yield running


def autoscaling(served: Served, keys: dict[str, str], path: str = "/autoscaling", **override: str) -> Any:
    return boto3.client("autoscaling", endpoint_url=served.url + path, region_name="us-east-1",
                        aws_access_key_id=override.get("key", keys["access_key_id"]),
                        aws_secret_access_key=override.get("secret", keys["secret_access_key"]))


def group(client: Any, name: str) -> dict[str, Any]:
    return dict(client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0])


def in_service(client: Any, name: str, count: int) -> list[dict[str, Any]] | None:
    found = [i for i in group(client, name)["Instances"] if i["LifecycleState"] == "InService"
             and i["HealthStatus"] == "Healthy"]
    return found if len(found) == count and len(group(client, name)["Instances"]) == count else None


def error_code(call: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"], caught.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_a_domain_across_two_clouds_kept_at_its_size(served: Served) -> None:
    client = autoscaling(served, served.aws_keys())
    client.create_launch_configuration(LaunchConfigurationName="web@hotel", ImageId="debian-12", InstanceType="small")
    client.create_launch_configuration(LaunchConfigurationName="web@sierra", ImageId="bookworm", InstanceType="tiny")
    names = [lc["LaunchConfigurationName"] for lc in client.describe_launch_configurations()["LaunchConfigurations"]]
    assert names == ["web@hotel", "web@sierra"]
    # Phantom's clients send one zone; the clouds tag decides
    client.create_auto_scaling_group(
        AutoScalingGroupName="Domain1", LaunchConfigurationName="web@hotel", MinSize=0, MaxSize=5, DesiredCapacity=3,
        AvailabilityZones=["hotel"], Tags=[{"Key": "clouds", "Value": "hotel:1,sierra:2", "PropagateAtLaunch": False,
                                           "ResourceId": "Domain1", "ResourceType": "auto-scaling-group"}])
    running = wait_until(lambda: in_service(client, "Domain1", 3), timeout=180, what="3 instances InService")
    assert sorted(i["AvailabilityZone"] for i in running) == ["hotel", "sierra", "sierra"]
    described = client.describe_auto_scaling_instances()["AutoScalingInstances"]
    assert {i["InstanceId"] for i in described} == {i["InstanceId"] for i in running}
    assert all(i["AutoScalingGroupName"] == "Domain1" for i in described)
    assert client.describe_tags(Filters=[{"Name": "auto-scaling-group", "Values": ["Domain1"]}])["Tags"][0][
        "Value"] == "hotel:1,sierra:2"
    # terminate without decrement: replaced in the same cloud
    victim = next(i for i in running if i["AvailabilityZone"] == "hotel")
    answer = client.terminate_instance_in_auto_scaling_group(InstanceId=victim["InstanceId"],
                                                             ShouldDecrementDesiredCapacity=False)
    assert answer["Activity"]["AutoScalingGroupName"] == "Domain1"
    replaced = wait_until(lambda: (r := in_service(client, "Domain1", 3)) and victim["InstanceId"] not in
                          {i["InstanceId"] for i in r} and r, timeout=180, what="the victim replaced")
    assert sorted(i["AvailabilityZone"] for i in replaced) == ["hotel", "sierra", "sierra"]
    assert group(client, "Domain1")["DesiredCapacity"] == 3
    # with decrement: gone and not replaced
    other = next(i for i in replaced if i["AvailabilityZone"] == "sierra")
    client.terminate_instance_in_auto_scaling_group(InstanceId=other["InstanceId"], ShouldDecrementDesiredCapacity=True)
    left = wait_until(lambda: in_service(client, "Domain1", 2), timeout=180, what="two instances left")
    assert other["InstanceId"] not in {i["InstanceId"] for i in left}
    assert group(client, "Domain1")["DesiredCapacity"] == 2
    # change the desired size (within the caps)
    client.set_desired_capacity(AutoScalingGroupName="Domain1", DesiredCapacity=1)
    wait_until(lambda: in_service(client, "Domain1", 1), timeout=180, what="one instance")
    assert error_code(client.set_desired_capacity, AutoScalingGroupName="Domain1", DesiredCapacity=9) == (
        "ValidationError", 400)
    client.update_auto_scaling_group(AutoScalingGroupName="Domain1", MinSize=2)
    wait_until(lambda: in_service(client, "Domain1", 2), timeout=180, what="raised to the new minimum")
    assert group(client, "Domain1")["MinSize"] == 2
    # in use, then deleted with force
    assert error_code(client.delete_launch_configuration, LaunchConfigurationName="web@hotel") == ("ResourceInUse", 400)
    assert error_code(client.delete_auto_scaling_group, AutoScalingGroupName="Domain1")[0] == "ResourceInUse"
    client.delete_auto_scaling_group(AutoScalingGroupName="Domain1", ForceDelete=True)
    assert group(client, "Domain1")["Status"] == "Delete in progress" or \
        not client.describe_auto_scaling_groups()["AutoScalingGroups"]
    client.delete_launch_configuration(LaunchConfigurationName="web@hotel")  # the deleting group needs it no more
    wait_until(lambda: not client.describe_auto_scaling_groups()["AutoScalingGroups"], timeout=180,
               what="the group deleted")
    client.delete_launch_configuration(LaunchConfigurationName="web@sierra")
    assert client.describe_launch_configurations()["LaunchConfigurations"] == []


def test_aws_error_codes(served: Served) -> None:
    keys = served.aws_keys()
    client = autoscaling(served, keys, path="/")
    assert client.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert error_code(autoscaling(served, keys, secret="x" * 40).describe_auto_scaling_groups) == (
        "SignatureDoesNotMatch", 403)
    assert error_code(autoscaling(served, keys, key="CHIANOSUCHKEY0000000").describe_auto_scaling_groups) == (
        "InvalidClientTokenId", 403)
    client.create_launch_configuration(LaunchConfigurationName="lc@hotel", ImageId="debian-12", InstanceType="small")
    assert error_code(client.create_launch_configuration, LaunchConfigurationName="lc@hotel", ImageId="x",
                      InstanceType="small") == ("AlreadyExists", 400)
    assert error_code(client.create_launch_configuration, LaunchConfigurationName="lc@nowhere", ImageId="x",
                      InstanceType="small")[0] == "ValidationError"
    assert error_code(client.set_desired_capacity, AutoScalingGroupName="missing", DesiredCapacity=1)[0] == \
        "ValidationError"
    assert error_code(client.create_auto_scaling_group, AutoScalingGroupName="g", LaunchConfigurationName="nope",
                      MinSize=0, MaxSize=1)[0] == "ValidationError"
    assert error_code(client.create_auto_scaling_group, AutoScalingGroupName="g", LaunchConfigurationName="lc@hotel",
                      MinSize=2, MaxSize=1)[0] == "ValidationError"
    client.create_auto_scaling_group(AutoScalingGroupName="g", LaunchConfigurationName="lc@hotel", MinSize=0,
                                     MaxSize=1, DesiredCapacity=0)
    assert error_code(client.create_auto_scaling_group, AutoScalingGroupName="g", LaunchConfigurationName="lc@hotel",
                      MinSize=0, MaxSize=1) == ("AlreadyExists", 400)
    assert error_code(client.terminate_instance_in_auto_scaling_group, InstanceId="i-nothing",
                      ShouldDecrementDesiredCapacity=True)[0] == "ValidationError"
    # another user's keys see none of it
    served.cli("user", "add", "eve")
    theirs = autoscaling(served, served.aws_keys("eve"))
    assert theirs.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert theirs.describe_launch_configurations()["LaunchConfigurations"] == []
    client.delete_auto_scaling_group(AutoScalingGroupName="g")  # empty: no force needed
    wait_until(lambda: not client.describe_auto_scaling_groups()["AutoScalingGroups"], timeout=120,
               what="the empty group deleted")
    # a revoked key is refused
    served.cli("token", "revoke", keys["access_key_id"])
    assert error_code(client.describe_auto_scaling_groups)[0] == "InvalidClientTokenId"
