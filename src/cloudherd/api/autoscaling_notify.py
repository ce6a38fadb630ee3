"""The Auto Scaling API's notifications over cloudherd's webhooks (:mod:`cloudherd.api.notify`):
PutNotificationConfiguration, DescribeNotificationConfigurations, DeleteNotificationConfiguration and
DescribeAutoScalingNotificationTypes.  Mixed into :class:`cloudherd.api.autoscaling.AutoScaling`.

This server has no SNS: a topic ARN names a webhook added with ``cloudherd notify add URL --topic ARN``.  A
configuration routes the group's events of the chosen types to it (:data:`cloudherd.webhooks.AWS_TYPES`:
EC2_INSTANCE_LAUNCH is a node made, _TERMINATE a node retired, _LAUNCH_ERROR an error of a pass, _TERMINATE_ERROR a
node that could not be ended); as AWS does, putting one sends a TEST_NOTIFICATION at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from cloudherd import webhooks
from cloudherd.api.autoscaling_base import GroupParts
from cloudherd.api.autoscaling_values import AwsError, _check_name
from cloudherd.state.models import Webhook

NOTIFICATION_TYPES = tuple(webhooks.AWS_TYPES)
TEST_TYPE = "autoscaling:TEST_NOTIFICATION"


class NotifyActions(GroupParts):
    """A group's notification configurations: one route per group and topic, of the chosen types."""

    def _topic(self, topic: str) -> Webhook:
        _check_name(topic, "TopicARN")
        hook = self.store.webhook_by_topic(self.owner, topic)
        if hook is None:
            raise AwsError("ValidationError", f"no webhook for the topic {topic}: this server has no SNS; add one "
                                              f"with `cloudherd notify add URL --topic {topic}`")
        return hook

    def put_notification(self, group: str, topic: str, types: Sequence[str]) -> str:
        """The group's configuration for ``topic`` (replacing the one it had), and a test notification queued to
        it; the test's delivery id."""
        row = self._group(group)
        if not types:
            raise AwsError("ValidationError", "NotificationTypes names at least one type "
                                              "(DescribeAutoScalingNotificationTypes lists them)")
        bad = [t for t in types if t not in webhooks.AWS_TYPES]
        if bad:
            raise AwsError("ValidationError", f"NotificationTypes: {bad[0]!r} is not one of "
                                              f"{', '.join(NOTIFICATION_TYPES)}")
        hook = self._topic(topic)
        chosen = list(dict.fromkeys(types))
        self.store.put_group_route(hook.id, row.infrastructure_id, group, chosen)
        from cloudherd.api.notify import test_payload

        message = f"Auto Scaling group {group}: notifications to {topic} configured"
        payload = test_payload(hook.id, message=message, origin="PutNotificationConfiguration",
                               aws={"Event": TEST_TYPE, "AutoScalingGroupName": group, "Description": message})
        payload.update(infrastructure_id=row.infrastructure_id, matched=[TEST_TYPE])
        return self.store.enqueue(hook.id, payload, row.infrastructure_id)

    def notifications(self, groups: Sequence[str] = ()) -> list[tuple[str, str, str]]:
        """(group, topic, type) of the owner's groups (of ``groups`` only, when given), one per type."""
        live = {g.name: g.infrastructure_id for g in self.store.scaling_groups(self.owner, list(groups))}
        found: list[tuple[str, str, str]] = []
        for route, hook in self.store.group_routes(self.owner, list(groups)):
            if route.scaling_group is None or live.get(route.scaling_group) != route.infrastructure_id:
                continue  # a deleted group's, or one of that name before it
            found.extend((route.scaling_group, hook.topic or "", kind) for kind in route.kinds.get("list") or [])
        return found

    def delete_notification(self, group: str, topic: str) -> None:
        self._group(group)
        hook = self._topic(topic)
        if not self.store.delete_group_route(hook.id, group):
            raise AwsError("ValidationError", f"no notification configuration of group '{group}' for {topic}")
