"""Notifications on a real `cloudherd serve`: boto3's (and boto 2's) Auto Scaling notification actions over a
webhook named by its topic ARN, delivered signed by the server's sender to a receiver on 127.0.0.1; a test
notification queued while the receiver is away survives a restart of serve; /v1/notifications and `cloudherd
notify` through the server."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from helpers import cli, wait_until
from server_harness import Served, autoscaling_client, aws_refusal, serving
from webhook_receiver import Receiver

from cloudherd.webhooks import Verifier

pytest.importorskip("boto3")

TOPIC = "arn:aws:sns:us-east-1:123456789012:fleet-events"
LAUNCH, TERMINATE = "autoscaling:EC2_INSTANCE_LAUNCH", "autoscaling:EC2_INSTANCE_TERMINATE"
TYPES = [LAUNCH, "autoscaling:EC2_INSTANCE_LAUNCH_ERROR", TERMINATE, "autoscaling:EC2_INSTANCE_TERMINATE_ERROR",
         "autoscaling:TEST_NOTIFICATION"]


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(home, tmp_path, {"local": "local"}, interval=1) as running:
        yield running


def _add_topic_webhook(served: Served, receiver: Receiver) -> str:
    made = json.loads(served.cli("notify", "add", receiver.url, "--topic", TOPIC, "--json").stdout)
    receiver.verifier = Verifier(made["secret"])
    return str(made["webhook"]["id"])


def _events(receiver: Receiver, kind: str) -> list[dict[str, Any]]:
    return [p for p in receiver.accepted() if (p.get("aws") or {}).get("Event") == kind]


def _deliveries(served: Served) -> list[dict[str, Any]]:
    return list(json.loads(served.cli("notify", "deliveries", "--json").stdout))


def test_notification_configurations_through_boto3(served: Served) -> None:
    client = autoscaling_client(served)
    assert client.describe_auto_scaling_notification_types()["AutoScalingNotificationTypes"] == TYPES
    client.create_launch_configuration(LaunchConfigurationName="web", ImageId="debian-12")
    client.create_auto_scaling_group(AutoScalingGroupName="g", LaunchConfigurationName="web", MinSize=0, MaxSize=2,
                                     DesiredCapacity=0, AvailabilityZones=["local"])
    code, message = aws_refusal(client.put_notification_configuration, AutoScalingGroupName="g", TopicARN=TOPIC,
                                NotificationTypes=[LAUNCH])
    assert code == "ValidationError" and f"cloudherd notify add URL --topic {TOPIC}" in message
    receiver = Receiver()
    _add_topic_webhook(served, receiver)
    receiver.start()
    try:
        code, message = aws_refusal(client.put_notification_configuration, AutoScalingGroupName="g",
                                    TopicARN=TOPIC, NotificationTypes=["autoscaling:EC2_INSTANCE_NAPPING"])
        assert code == "ValidationError" and "EC2_INSTANCE_NAPPING" in message
        assert aws_refusal(client.put_notification_configuration, AutoScalingGroupName="nope", TopicARN=TOPIC,
                           NotificationTypes=[LAUNCH])[0] == "ValidationError"
        client.put_notification_configuration(AutoScalingGroupName="g", TopicARN=TOPIC,
                                              NotificationTypes=[LAUNCH, TERMINATE])
        assert client.describe_notification_configurations(AutoScalingGroupNames=["g"])[
            "NotificationConfigurations"] == [
            {"AutoScalingGroupName": "g", "TopicARN": TOPIC, "NotificationType": LAUNCH},
            {"AutoScalingGroupName": "g", "TopicARN": TOPIC, "NotificationType": TERMINATE}]
        [test] = wait_until(lambda: _events(receiver, "autoscaling:TEST_NOTIFICATION"), timeout=60,
                            what="the test notification a configuration sends")
        assert test["aws"]["AutoScalingGroupName"] == "g"

        client.set_desired_capacity(AutoScalingGroupName="g", DesiredCapacity=1)
        [launched] = wait_until(lambda: _events(receiver, LAUNCH), timeout=120, what="EC2_INSTANCE_LAUNCH")
        assert launched["kind"] == "made" and launched["aws"]["AutoScalingGroupName"] == "g"
        client.set_desired_capacity(AutoScalingGroupName="g", DesiredCapacity=0)
        [ended] = wait_until(lambda: _events(receiver, TERMINATE), timeout=120, what="EC2_INSTANCE_TERMINATE")
        assert ended["kind"] == "retired"
        assert set(receiver.answered_ok().values()) == {1}

        client.delete_notification_configuration(AutoScalingGroupName="g", TopicARN=TOPIC)
        assert client.describe_notification_configurations()["NotificationConfigurations"] == []
        assert aws_refusal(client.delete_notification_configuration, AutoScalingGroupName="g",
                           TopicARN=TOPIC)[0] == "ValidationError"
    finally:
        receiver.stop()


def test_a_pending_notification_survives_a_restart_of_serve(served: Served) -> None:
    client = autoscaling_client(served)
    client.create_launch_configuration(LaunchConfigurationName="web", ImageId="debian-12")
    client.create_auto_scaling_group(AutoScalingGroupName="g", LaunchConfigurationName="web", MinSize=0, MaxSize=1,
                                     DesiredCapacity=0, AvailabilityZones=["local"])
    receiver = Receiver()  # away: the server's attempts are refused
    _add_topic_webhook(served, receiver)
    client.put_notification_configuration(AutoScalingGroupName="g", TopicARN=TOPIC, NotificationTypes=[LAUNCH])
    wait_until(lambda: any(d["attempts"] >= 1 for d in _deliveries(served)), timeout=60, what="a refused attempt")
    served.stop()
    [pending] = _deliveries(served)
    assert pending["state"] == "pending" and "Connect" in pending["last_error"]
    receiver.start()
    try:
        served.start()
        wait_until(lambda: _events(receiver, "autoscaling:TEST_NOTIFICATION"), timeout=60,
                   what="the pending notification delivered after the restart")
        assert list(receiver.answered_ok()) == [pending["delivery_id"]]
    finally:
        receiver.stop()


def test_notifications_over_the_native_api_and_the_cli_through_the_server(served: Served) -> None:
    token = served.token()
    receiver = Receiver()
    with served.client(token) as api:
        answer = api.post("/v1/notifications", json={"url": receiver.url, "events": ["node.made", "scale"]})
        assert answer.status_code == 201, answer.text
        receiver.verifier = Verifier(answer.json()["secret"])
        hook_id = answer.json()["webhook"]["id"]
        refused = api.post("/v1/notifications", json={"url": receiver.url, "events": ["node.mad"]})
        assert refused.status_code == 400 and "did you mean node.made?" in refused.text
        [listed] = api.get("/v1/notifications").json()
        assert listed["id"] == hook_id and listed["routes"] == [
            {"infrastructure": None, "events": ["node.made", "scale"], "auto_scaling_group": None}]
        assert "secret" not in json.dumps(listed)
    remote = {"CLOUDHERD_SERVER": served.url, "CLOUDHERD_TOKEN": token, "CLOUDHERD_HOME": str(served.home.parent)}
    receiver.start()
    try:
        done = cli("notify", "test", env=remote)
        assert done.returncode == 0, done.stderr
        assert f"{hook_id}  {receiver.url}: HTTP 200" in done.stdout
        [test] = receiver.accepted()
        assert test["kind"] == "test" and test["webhook"] == hook_id
    finally:
        receiver.stop()
    nothing = cli("notify", "retry", hook_id, env=remote)
    assert nothing.returncode == 0 and "no notification was given up" in nothing.stderr, nothing.stderr
    done = cli("notify", "remove", hook_id, env=remote)
    assert done.returncode == 0, done.stderr
    assert json.loads(cli("notify", "list", "--json", env=remote).stdout) == []
    missing = cli("notify", "remove", hook_id, env=remote)
    assert missing.returncode != 0 and f"no webhook '{hook_id}'" in missing.stderr
    missing = cli("notify", "retry", hook_id, env=remote)
    assert missing.returncode != 0 and f"no webhook '{hook_id}'" in missing.stderr


def test_boto2_puts_and_deletes_a_notification_configuration(served: Served) -> None:
    with warnings.catch_warnings():  # boto 2 predates Python 3.11's import machinery and says so
        warnings.simplefilter("ignore")
        boto_autoscale = pytest.importorskip("boto.ec2.autoscale")
        from boto.regioninfo import RegionInfo
    keys = served.aws_keys()
    url = urlparse(served.url)
    con = boto_autoscale.AutoScaleConnection(
        aws_access_key_id=keys["access_key_id"], aws_secret_access_key=keys["secret_access_key"], is_secure=False,
        port=url.port, debug=0, region=RegionInfo(name="nimbus", endpoint=url.hostname))
    con.host = url.hostname
    client = autoscaling_client(served)
    client.create_launch_configuration(LaunchConfigurationName="web", ImageId="debian-12")
    client.create_auto_scaling_group(AutoScalingGroupName="g", LaunchConfigurationName="web", MinSize=0, MaxSize=1,
                                     DesiredCapacity=0, AvailabilityZones=["local"])
    _add_topic_webhook(served, Receiver())
    con.put_notification_configuration("g", TOPIC, [LAUNCH])
    assert [c["NotificationType"] for c in client.describe_notification_configurations()[
        "NotificationConfigurations"]] == [LAUNCH]
    con.delete_notification_configuration("g", TOPIC)
    assert client.describe_notification_configurations()["NotificationConfigurations"] == []
