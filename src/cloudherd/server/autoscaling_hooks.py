"""The Query API's lifecycle-hook and warm-pool actions (the models: :mod:`cloudherd.api.autoscaling_hooks`,
:mod:`cloudherd.api.autoscaling_warm`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from cloudherd.api.autoscaling import AutoScaling
from cloudherd.api.autoscaling_hooks import GLOBAL_TIMEOUT, TRANSITIONS
from cloudherd.server.autoscaling_params import Params, _members, _required
from cloudherd.server.autoscaling_xml import x, xml_list

_HOOK_FIELDS = ("LifecycleTransition", "HeartbeatTimeout", "DefaultResult", "NotificationMetadata",
                "NotificationTargetARN", "RoleARN")


def _hook_xml(group: str, name: str, hook: Mapping[str, Any]) -> str:
    return "<member>" + "".join([
        x("LifecycleHookName", name), x("AutoScalingGroupName", group),
        x("LifecycleTransition", hook["LifecycleTransition"]),
        x("NotificationTargetARN", hook.get("NotificationTargetARN")),
        x("RoleARN", hook.get("RoleARN")), x("NotificationMetadata", hook.get("NotificationMetadata")),
        x("HeartbeatTimeout", hook["HeartbeatTimeout"]),
        x("GlobalTimeout", min(100 * int(hook["HeartbeatTimeout"]), GLOBAL_TIMEOUT)),
        x("DefaultResult", hook["DefaultResult"]),
    ]) + "</member>"


async def put_lifecycle_hook(model: AutoScaling, p: Params) -> str:
    await asyncio.to_thread(model.put_hook, _required(p, "AutoScalingGroupName"), _required(p, "LifecycleHookName"),
                            {k: p.get(k) for k in _HOOK_FIELDS})
    return ""


async def describe_lifecycle_hooks(model: AutoScaling, p: Params) -> str:
    group = _required(p, "AutoScalingGroupName")
    found = await asyncio.to_thread(model.hooks, group, _members(p, "LifecycleHookNames"))
    return xml_list("LifecycleHooks", [_hook_xml(group, name, hook) for name, hook in found])


async def delete_lifecycle_hook(model: AutoScaling, p: Params) -> str:
    await asyncio.to_thread(model.delete_hook, _required(p, "AutoScalingGroupName"), _required(p, "LifecycleHookName"))
    return ""


async def complete_lifecycle_action(model: AutoScaling, p: Params) -> str:
    await asyncio.to_thread(model.complete_action, _required(p, "AutoScalingGroupName"),
                            _required(p, "LifecycleHookName"), _required(p, "LifecycleActionResult"),
                            p.get("InstanceId"), p.get("LifecycleActionToken"))
    return ""


async def record_lifecycle_action_heartbeat(model: AutoScaling, p: Params) -> str:
    await asyncio.to_thread(model.heartbeat, _required(p, "AutoScalingGroupName"), _required(p, "LifecycleHookName"),
                            p.get("InstanceId"), p.get("LifecycleActionToken"))
    return ""


async def describe_lifecycle_hook_types(model: AutoScaling, p: Params) -> str:
    return xml_list("LifecycleHookTypes", [x("member", name) for name in TRANSITIONS])


HOOK_ACTIONS: Mapping[str, Callable[[AutoScaling, Params], Any]] = {
    "PutLifecycleHook": put_lifecycle_hook,
    "DescribeLifecycleHooks": describe_lifecycle_hooks,
    "DeleteLifecycleHook": delete_lifecycle_hook,
    "CompleteLifecycleAction": complete_lifecycle_action,
    "RecordLifecycleActionHeartbeat": record_lifecycle_action_heartbeat,
    "DescribeLifecycleHookTypes": describe_lifecycle_hook_types,
}


# -- warm pools (the model: cloudherd.api.autoscaling_warm) ------------------------------------------------

async def put_warm_pool(model: AutoScaling, p: Params) -> str:
    await asyncio.to_thread(model.put_warm_pool, _required(p, "AutoScalingGroupName"),
                            {k: p.get(k) for k in ("MinSize", "MaxGroupPreparedCapacity", "PoolState",
                                                   "InstanceReusePolicy.ReuseOnScaleIn")})
    return ""


async def describe_warm_pool(model: AutoScaling, p: Params) -> str:
    pool, members = await asyncio.to_thread(model.warm_pool, _required(p, "AutoScalingGroupName"))
    config = "" if pool is None else "<WarmPoolConfiguration>" + "".join([
        x("MaxGroupPreparedCapacity", pool.get("MaxGroupPreparedCapacity")), x("MinSize", pool.get("MinSize", 0)),
        x("PoolState", pool.get("PoolState", "Stopped")),
    ]) + "</WarmPoolConfiguration>"
    return config + xml_list("Instances", ["<member>" + "".join([
        x("InstanceId", i.id), x("AvailabilityZone", i.cloud), x("LifecycleState", i.lifecycle),
        x("HealthStatus", i.health), x("LaunchConfigurationName", i.launch_configuration),
        x("ProtectedFromScaleIn", i.protected),
    ]) + "</member>" for i in members])


async def delete_warm_pool(model: AutoScaling, p: Params) -> str:
    await asyncio.to_thread(model.delete_warm_pool, _required(p, "AutoScalingGroupName"))
    return ""


POOL_ACTIONS: Mapping[str, Callable[[AutoScaling, Params], Any]] = {
    "PutWarmPool": put_warm_pool,
    "DescribeWarmPool": describe_warm_pool,
    "DeleteWarmPool": delete_warm_pool,
}
