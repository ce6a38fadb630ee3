"""boto3's stock `autoscaling` client detaching and attaching instances on `cloudherd serve`: DetachInstances keeps
the machine running and shrinks the group (or launches a replacement), AttachInstances takes the machine into
another group under the same instance id and grows it; the refusals come in AWS's words.  The native routes do the
same for the CLI logged in to the server (its remote client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from server_harness import Served, autoscaling_client, aws_refusal, create, ready_nodes, serving

from cloudherd.api.remote import RemoteClient

pytest.importorskip("boto3")


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(home, tmp_path, {"local": "local"}, interval=1) as running:
        yield running


def group(client: Any, name: str) -> dict[str, Any]:
    return client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def states(client: Any, name: str) -> dict[str, str]:
    return {i["InstanceId"]: i["LifecycleState"] for i in group(client, name)["Instances"]}


def serving_count(client: Any, name: str, count: int) -> bool:
    shown = states(client, name)
    return len(shown) == count and set(shown.values()) == {"InService"}


def test_an_instance_detached_from_one_group_is_attached_to_another(served: Served) -> None:
    client = autoscaling_client(served)
    client.create_launch_configuration(LaunchConfigurationName="web", ImageId="debian-12")
    for name, size in (("a", 2), ("b", 1)):
        client.create_auto_scaling_group(AutoScalingGroupName=name, LaunchConfigurationName="web", MinSize=0,
                                         MaxSize=3, DesiredCapacity=size, AvailabilityZones=["local"])
    wait_until(lambda: serving_count(client, "a", 2) and serving_count(client, "b", 1), timeout=180,
               what="3 instances in service")
    first, second = sorted(states(client, "a"))

    moved = client.detach_instances(AutoScalingGroupName="a", InstanceIds=[first],
                                    ShouldDecrementDesiredCapacity=True)
    assert [(a["StatusCode"], a["Description"]) for a in moved["Activities"]] == [
        ("InProgress", f"Detaching EC2 instance: {first}")]
    wait_until(lambda: set(states(client, "a")) == {second}, timeout=120, what="the instance out of group a")
    assert group(client, "a")["DesiredCapacity"] == 1  # nothing launched in its place

    client.attach_instances(AutoScalingGroupName="b", InstanceIds=[first])
    wait_until(lambda: serving_count(client, "b", 2), timeout=120, what="the instance in service in group b")
    assert first in states(client, "b") and group(client, "b")["DesiredCapacity"] == 2  # the same id, counted

    code, message = aws_refusal(client.attach_instances, AutoScalingGroupName="a", InstanceIds=[second])
    assert (code, message) == ("ValidationError", f"The instance {second} is already part of an Auto Scaling group.")
    code, message = aws_refusal(client.detach_instances, AutoScalingGroupName="a", InstanceIds=[first],
                                ShouldDecrementDesiredCapacity=True)
    assert (code, message) == ("ValidationError", f"The instance {first} is not part of Auto Scaling group a.")
    client.update_auto_scaling_group(AutoScalingGroupName="a", MinSize=1)
    code, message = aws_refusal(client.detach_instances, AutoScalingGroupName="a", InstanceIds=[second],
                                ShouldDecrementDesiredCapacity=True)
    assert code == "ValidationError" and "would violate the min-size constraint" in message

    client.detach_instances(AutoScalingGroupName="a", InstanceIds=[second], ShouldDecrementDesiredCapacity=False)
    wait_until(lambda: serving_count(client, "a", 1) and second not in states(client, "a"), timeout=120,
               what="a new instance in the detached one's place")
    causes = [a["Cause"] for a in client.describe_scaling_activities(AutoScalingGroupName="a")["Activities"]]
    assert any(c.startswith("nodes: detached ") and c.endswith("(replaced)") for c in causes), causes
    client.attach_instances(AutoScalingGroupName="b", InstanceIds=[second])  # a machine is never left behind
    wait_until(lambda: serving_count(client, "b", 3), timeout=120, what="group b at three")
    for name in ("a", "b"):
        client.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)


def test_the_remote_client_detaches_and_attaches_through_the_native_routes(served: Served) -> None:
    token = served.token()
    api = served.client(token)
    infra_id = create(api, "members", count=2)
    remote = RemoteClient(served.url, token)
    try:
        [leaving] = remote.detach_nodes(infra_id, "members-web-1")
        machine = leaving.provider_id
        wait_until(lambda: [n["name"] for n in ready_nodes(api, infra_id)] == ["members-web-2"], timeout=120,
                   what="members-web-1 detached, the size down by one")
        refused = api.post(f"/v1/infrastructures/{infra_id}/groups/web/attach", json={"machines": []})
        assert refused.status_code == 422
        shown = remote.attach_machines(infra_id, "web", [machine or ""])  # a manager's pass does it, now or soon
        assert all(n.provider_id == machine for n in shown)
        wait_until(lambda: {n["provider_id"] for n in ready_nodes(api, infra_id)} >= {machine}, timeout=120,
                   what="the machine back as a ready node")
        back = next(n for n in ready_nodes(api, infra_id) if n["provider_id"] == machine)
        assert (back["id"], back["name"]) == (leaving.id, "members-web-3")
    finally:
        remote.close()


def test_the_remote_client_stops_and_starts_a_fleet_through_the_native_routes(served: Served) -> None:
    token = served.token()
    api = served.client(token)
    infra_id = create(api, "napping", count=2)
    machines = {n["provider_id"] for n in ready_nodes(api, infra_id)}
    remote = RemoteClient(served.url, token)
    try:
        remote.stop_machines(infra_id)  # the server's manager does it, now or soon
        wait_until(lambda: {n["state"] for n in api.get(f"/v1/infrastructures/{infra_id}/nodes").json()
                            if n["state"] != "terminated"} == {"stopped"}, timeout=120, what="both nodes stopped")
        remote.start_machines(infra_id)
        wait_until(lambda: {n["provider_id"] for n in ready_nodes(api, infra_id)} == machines, timeout=120,
                   what="the same two machines ready again")
        assert api.post("/v1/infrastructures/nothing-such/stop").status_code == 404
    finally:
        remote.close()
