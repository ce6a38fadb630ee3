"""The Query API's notification configurations (the model: :mod:`cloudherd.api.autoscaling_notify`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from cloudherd.api.autoscaling import AutoScaling
from cloudherd.api.autoscaling_notify import NOTIFICATION_TYPES
from cloudherd.server.autoscaling_params import Params, _members, _required
from cloudherd.server.autoscaling_xml import x, xml_list


async def put_notification_configuration(model: AutoScaling, p: Params) -> None:
    await asyncio.to_thread(model.put_notification, _required(p, "AutoScalingGroupName"), _required(p, "TopicARN"),
                            _members(p, "NotificationTypes"))


async def describe_notification_configurations(model: AutoScaling, p: Params) -> str:
    found = await asyncio.to_thread(model.notifications, _members(p, "AutoScalingGroupNames"))
    return xml_list("NotificationConfigurations", [
        "<member>" + x("AutoScalingGroupName", group) + x("TopicARN", topic) + x("NotificationType", kind)
        + "</member>" for group, topic, kind in found])


async def delete_notification_configuration(model: AutoScaling, p: Params) -> None:
    await asyncio.to_thread(model.delete_notification, _required(p, "AutoScalingGroupName"), _required(p, "TopicARN"))


async def describe_auto_scaling_notification_types(model: AutoScaling, p: Params) -> str:
    return xml_list("AutoScalingNotificationTypes", [f"<member>{kind}</member>" for kind in NOTIFICATION_TYPES])


NOTIFY_ACTIONS: Mapping[str, Callable[[AutoScaling, Params], Any]] = {
    "PutNotificationConfiguration": put_notification_configuration,
    "DescribeNotificationConfigurations": describe_notification_configurations,
    "DeleteNotificationConfiguration": delete_notification_configuration,
    "DescribeAutoScalingNotificationTypes": describe_auto_scaling_notification_types,
}
