"""boto3's stock `autoscaling` client on MixedInstancesPolicy.InstancesDistribution, on `cloudherd serve` with the
local cloud (which plays a spot market): the group's instances are bought on-demand and spot as AWS's rule says,
DescribeAutoScalingGroups answers the distribution back with AWS's defaults, an update changes what new instances
are bought as, and what cannot be taken is refused in AWS's shape."""

from __future__ import annotations

import math
from collections import Counter
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


def aws_mix(desired: int, base: int = 0, percent: int = 100) -> dict[str, int]:
    """AWS's documented rule (API_InstancesDistribution): OnDemandBaseCapacity instances on-demand first, then
    OnDemandPercentageAboveBaseCapacity of the capacity above the base, rounded up; the rest spot."""
    base_part = min(base, desired)
    on_demand = base_part + math.ceil((desired - base_part) * percent / 100)
    return {k: v for k, v in (("on-demand", on_demand), ("spot", desired - on_demand)) if v}


def group(client: Any, name: str = "g") -> dict[str, Any]:
    return client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def nodes(served: Served, name: str = "g") -> list[dict[str, Any]]:
    """The group's live nodes, read from cloudherd's native API (their ``market`` is what they were bought as)."""
    with served.client(served.token()) as api:
        [infra] = [i for i in api.get("/v1/infrastructures").json() if i["name"].startswith(f"asg-{name}-")]
        return [n for n in api.get(f"/v1/infrastructures/{infra['id']}/nodes").json() if n["state"] != "terminated"]


def settled(served: Served, client: Any, count: int) -> list[dict[str, Any]] | None:
    """The nodes, once ``count`` of them are ready and as many instances are InService (else None)."""
    found = nodes(served)
    ready = [n for n in found if n["state"] == "ready"]
    in_service = [i for i in group(client)["Instances"] if i["LifecycleState"] == "InService"]
    return found if len(found) == len(ready) == len(in_service) == count else None


def markets(found: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(str(n["market"]) for n in found))


def test_the_distribution_decides_each_instance_market(served: Served) -> None:
    client = autoscaling_client(served)
    client.create_launch_configuration(LaunchConfigurationName="web", ImageId="debian-12", InstanceType="small")
    client.create_auto_scaling_group(
        AutoScalingGroupName="g", LaunchConfigurationName="web", MinSize=0, MaxSize=6, DesiredCapacity=4,
        AvailabilityZones=["local"],
        MixedInstancesPolicy={"InstancesDistribution": {"OnDemandBaseCapacity": 1,
                                                        "OnDemandPercentageAboveBaseCapacity": 50,
                                                        "SpotMaxPrice": "0.05"}})
    shown = group(client)
    assert shown["MixedInstancesPolicy"] == {"InstancesDistribution": {
        "OnDemandAllocationStrategy": "prioritized", "OnDemandBaseCapacity": 1,
        "OnDemandPercentageAboveBaseCapacity": 50, "SpotAllocationStrategy": "lowest-price", "SpotInstancePools": 2,
        "SpotMaxPrice": "0.05"}}  # AWS's defaults filled in; no launch template (cloudherd's extension)
    assert shown["LaunchConfigurationName"] == "web"

    first = wait_until(lambda: settled(served, client, 4), timeout=180, what="4 instances in service")
    assert markets(first) == aws_mix(4, base=1, percent=50) == {"on-demand": 3, "spot": 1}

    # no on-demand above the base from now on: the new instances are bought as spot, and the on-demand ones above
    # the base are moved to spot in turn (AWS: "gradually terminated and relaunched as Spot Instances")
    client.update_auto_scaling_group(AutoScalingGroupName="g", DesiredCapacity=6, MixedInstancesPolicy={
        "InstancesDistribution": {"OnDemandPercentageAboveBaseCapacity": 0}})
    distribution = group(client)["MixedInstancesPolicy"]["InstancesDistribution"]
    assert distribution["OnDemandPercentageAboveBaseCapacity"] == 0
    assert distribution["OnDemandBaseCapacity"] == 1 and distribution["SpotMaxPrice"] == "0.05"  # not given: kept
    wanted = aws_mix(6, base=1, percent=0)
    assert wanted == {"on-demand": 1, "spot": 5}
    last = wait_until(lambda: (found := settled(served, client, 6)) and markets(found) == wanted and found,
                      timeout=240, what=f"6 instances in service, bought as {wanted}")
    before = {n["id"] for n in first}
    assert all(n["market"] == "spot" for n in last if n["id"] not in before)  # every new one bought as spot

    # back to all on-demand above the base: what is bought next is on-demand
    client.update_auto_scaling_group(AutoScalingGroupName="g", MixedInstancesPolicy={
        "InstancesDistribution": {"OnDemandPercentageAboveBaseCapacity": 100, "SpotMaxPrice": ""}})
    distribution = group(client)["MixedInstancesPolicy"]["InstancesDistribution"]
    assert distribution["OnDemandPercentageAboveBaseCapacity"] == 100 and "SpotMaxPrice" not in distribution
    victim = next(n for n in last if n["market"] == "spot")
    client.terminate_instance_in_auto_scaling_group(InstanceId=f"i-{victim['id']}",
                                                    ShouldDecrementDesiredCapacity=False)
    again = wait_until(lambda: (found := settled(served, client, 6)) and victim["id"] not in {n["id"] for n in found}
                       and found, timeout=180, what="the terminated instance replaced")
    [fresh] = [n for n in again if n["id"] not in {n["id"] for n in last}]
    assert fresh["market"] == "on-demand"


def test_strategies_kept_as_given_and_what_cannot_be_taken_refused(served: Served) -> None:
    client = autoscaling_client(served)
    client.create_launch_configuration(LaunchConfigurationName="web", ImageId="debian-12")
    refused = {"AutoScalingGroupName": "bad", "LaunchConfigurationName": "web", "MinSize": 0, "MaxSize": 2}

    def refusal(distribution: dict[str, Any], **more: Any) -> tuple[str, str]:
        return aws_refusal(client.create_auto_scaling_group, **refused, **more,
                           MixedInstancesPolicy={"InstancesDistribution": distribution})

    path = "mixedInstancesPolicy.instancesDistribution"
    assert refusal({"OnDemandPercentageAboveBaseCapacity": 101}) == (
        "ValidationError", f"1 validation error detected: Value '101' at '{path}.onDemandPercentageAboveBaseCapacity' "
                           "failed to satisfy constraint: Member must have value less than or equal to 100")
    assert refusal({"OnDemandPercentageAboveBaseCapacity": -1}) == (
        "ValidationError", f"1 validation error detected: Value '-1' at '{path}.onDemandPercentageAboveBaseCapacity' "
                           "failed to satisfy constraint: Member must have value greater than or equal to 0")
    assert refusal({"OnDemandBaseCapacity": -2}) == (
        "ValidationError", f"1 validation error detected: Value '-2' at '{path}.onDemandBaseCapacity' failed to "
                           "satisfy constraint: Member must have value greater than or equal to 0")
    assert refusal({"SpotAllocationStrategy": "cheapest"}) == (
        "ValidationError", "The specified SpotAllocationStrategy is not valid. Valid options are [capacity-optimized, "
                           "capacity-optimized-prioritized, lowest-price, price-capacity-optimized].")
    assert refusal({"OnDemandAllocationStrategy": "capacity-optimized"}) == (
        "ValidationError", "The specified OnDemandAllocationStrategy is not valid. Valid options are [lowest-price, "
                           "prioritized].")
    assert refusal({"SpotInstancePools": 21})[1].endswith("Member must have value less than or equal to 20")
    assert refusal({"SpotAllocationStrategy": "capacity-optimized", "SpotInstancePools": 3}) == (
        "ValidationError", "SpotInstancePools option is only available with the lowest-price allocation strategy.")
    for price in ("cheap", "0.0001", "-1"):
        code, message = refusal({"SpotMaxPrice": price})
        assert code == "ValidationError" and message.startswith(f"The specified SpotMaxPrice '{price}' is not valid")
    code, message = aws_refusal(client.create_auto_scaling_group, **refused, MixedInstancesPolicy={
        "LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateName": "web-lt"},
                           "Overrides": [{"InstanceType": "m5.large"}, {"InstanceType": "c5.large"}]},
        "InstancesDistribution": {"OnDemandPercentageAboveBaseCapacity": 0}})
    assert code == "ValidationError" and message.startswith("MixedInstancesPolicy.LaunchTemplate is not served")
    assert "Give LaunchConfigurationName" in message
    without = {k: v for k, v in refused.items() if k != "LaunchConfigurationName"}
    code, message = aws_refusal(client.create_auto_scaling_group, **without, MixedInstancesPolicy={
        "InstancesDistribution": {"OnDemandPercentageAboveBaseCapacity": 0}})
    assert code == "ValidationError" and message.startswith("LaunchConfigurationName is required")
    assert client.describe_auto_scaling_groups()["AutoScalingGroups"] == []  # every refusal left nothing behind

    # the strategies cloudherd does not act on: kept, answered exactly as given, and said so in an activity
    client.create_auto_scaling_group(
        AutoScalingGroupName="g", LaunchConfigurationName="web", MinSize=0, MaxSize=2, DesiredCapacity=0,
        AvailabilityZones=["local"], MixedInstancesPolicy={"InstancesDistribution": {
            "SpotAllocationStrategy": "price-capacity-optimized", "OnDemandAllocationStrategy": "lowest-price",
            "OnDemandPercentageAboveBaseCapacity": 25}})
    assert group(client)["MixedInstancesPolicy"]["InstancesDistribution"] == {
        "OnDemandAllocationStrategy": "lowest-price", "OnDemandBaseCapacity": 0,
        "OnDemandPercentageAboveBaseCapacity": 25, "SpotAllocationStrategy": "price-capacity-optimized"}
    causes = [a["Cause"] for a in client.describe_scaling_activities(AutoScalingGroupName="g")["Activities"]]
    assert any("SpotAllocationStrategy price-capacity-optimized" in c and "not acted on" in c for c in causes)

    # an update changes only what it gives, and is checked whole: pools need the lowest-price strategy
    assert aws_refusal(client.update_auto_scaling_group, AutoScalingGroupName="g", MixedInstancesPolicy={
        "InstancesDistribution": {"SpotInstancePools": 4}}) == (
        "ValidationError", "SpotInstancePools option is only available with the lowest-price allocation strategy.")
    client.update_auto_scaling_group(AutoScalingGroupName="g", MixedInstancesPolicy={"InstancesDistribution": {
        "SpotAllocationStrategy": "lowest-price", "SpotInstancePools": 4}})
    assert group(client)["MixedInstancesPolicy"]["InstancesDistribution"] == {
        "OnDemandAllocationStrategy": "lowest-price", "OnDemandBaseCapacity": 0,
        "OnDemandPercentageAboveBaseCapacity": 25, "SpotAllocationStrategy": "lowest-price", "SpotInstancePools": 4}
    code, message = aws_refusal(client.update_auto_scaling_group, AutoScalingGroupName="g", MixedInstancesPolicy={
        "LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateId": "lt-0123456789abcdef0"}}})
    assert code == "ValidationError" and message.startswith("MixedInstancesPolicy.LaunchTemplate is not served")
    assert aws_refusal(client.update_auto_scaling_group, AutoScalingGroupName="g", MixedInstancesPolicy={
        "InstancesDistribution": {"OnDemandPercentageAboveBaseCapacity": 200}})[0] == "ValidationError"
    assert group(client)["MixedInstancesPolicy"]["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 25

    # a launch template beside the launch configuration is refused, not dropped
    for call in (client.update_auto_scaling_group, client.create_auto_scaling_group):
        code, message = aws_refusal(call, AutoScalingGroupName="lt", LaunchConfigurationName="web", MinSize=0,
                                    MaxSize=1, LaunchTemplate={"LaunchTemplateName": "web-lt"})
        assert (code, message.split(":")[0]) == ("ValidationError", "LaunchTemplate is not served")

    # a group made without the policy answers none, and takes one by UpdateAutoScalingGroup
    client.create_auto_scaling_group(AutoScalingGroupName="plain", LaunchConfigurationName="web", MinSize=0,
                                     MaxSize=1, DesiredCapacity=0, AvailabilityZones=["local"])
    assert "MixedInstancesPolicy" not in group(client, "plain")
    client.update_auto_scaling_group(AutoScalingGroupName="plain", MixedInstancesPolicy={"InstancesDistribution": {
        "OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0}})
    assert group(client, "plain")["MixedInstancesPolicy"]["InstancesDistribution"][
        "OnDemandPercentageAboveBaseCapacity"] == 0
