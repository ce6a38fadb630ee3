"""The Query API's actions on instances and processes (the model: :mod:`cloudherd.api.autoscaling_instances`):
SetInstanceProtection, EnterStandby, ExitStandby, SetInstanceHealth, AttachInstances, DetachInstances,
SuspendProcesses, ResumeProcesses, DescribeScalingActivities, DescribeScalingProcessTypes,
DescribeTerminationPolicyTypes, DescribeAdjustmentTypes; and the group options CreateAutoScalingGroup and
UpdateAutoScalingGroup take for them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from cloudherd.api.autoscaling import AutoScaling, AwsError, Instance
from cloudherd.api.autoscaling_instances import TERMINATION, Activity, termination_of
from cloudherd.api.autoscaling_policies import ADJUSTMENTS
from cloudherd.inputs import whole
from cloudherd.lifecycle import AWS_PROCESS_NAMES
from cloudherd.server.autoscaling_params import Params, _bool, _members, _required
from cloudherd.server.autoscaling_xml import x, xml_list
from cloudherd.times import utcnow

MAX_ACTIVITIES = 100  # DescribeScalingActivities' MaxRecords, at most


def group_choices(p: Params) -> dict[str, Any]:
    """TerminationPolicies and NewInstancesProtectedFromScaleIn as given (checked); what is not given is absent."""
    choices: dict[str, Any] = {}
    policies = _members(p, "TerminationPolicies")
    if policies:
        termination_of(policies)
        choices["termination"] = policies
    if "NewInstancesProtectedFromScaleIn" in p:
        choices["protect_new"] = _bool(p, "NewInstancesProtectedFromScaleIn")
    return choices


def _activity_xml(activity: Activity) -> str:
    return "<member>" + "".join([
        x("ActivityId", activity.id), x("AutoScalingGroupName", activity.group), x("Description", activity.description),
        x("Cause", activity.cause), x("StartTime", activity.at), x("EndTime", activity.at),
        x("StatusCode", "Successful"), x("Progress", 100),
    ]) + "</member>"


def _moving(group: str, instances: list[Instance], what: str) -> str:
    """The activities EnterStandby and ExitStandby answer with: one per instance, in progress."""
    return xml_list("Activities", ["<member>" + "".join([
        x("ActivityId", str(uuid.uuid4())), x("AutoScalingGroupName", group),
        x("Description", f"{what}: {i.id}"), x("Cause", f"instance {i.id} was moved in response to a user request"),
        x("StartTime", utcnow()), x("StatusCode", "InProgress"), x("Progress", 50),
    ]) + "</member>" for i in instances])


async def set_instance_protection(model: AutoScaling, p: Params) -> str:
    protected = _required(p, "ProtectedFromScaleIn").lower() == "true"
    await asyncio.to_thread(model.set_protection, _required(p, "AutoScalingGroupName"), _members(p, "InstanceIds"),
                            protected)
    return ""  # an empty result element: boto3 expects it


async def enter_standby(model: AutoScaling, p: Params) -> str:
    group = _required(p, "AutoScalingGroupName")
    decrement = _required(p, "ShouldDecrementDesiredCapacity").lower() == "true"
    moved = await asyncio.to_thread(model.enter_standby, group, _members(p, "InstanceIds"), decrement)
    return _moving(group, moved, "Moving EC2 instance to Standby")


async def exit_standby(model: AutoScaling, p: Params) -> str:
    group = _required(p, "AutoScalingGroupName")
    moved = await asyncio.to_thread(model.exit_standby, group, _members(p, "InstanceIds"))
    return _moving(group, moved, "Moving EC2 instance out of Standby")


async def detach_instances(model: AutoScaling, p: Params) -> str:
    group = _required(p, "AutoScalingGroupName")
    decrement = _required(p, "ShouldDecrementDesiredCapacity").lower() == "true"
    moved = await asyncio.to_thread(model.detach, group, _members(p, "InstanceIds"), decrement)
    return _moving(group, moved, "Detaching EC2 instance")


async def attach_instances(model: AutoScaling, p: Params) -> None:
    await asyncio.to_thread(model.attach, _required(p, "AutoScalingGroupName"), _members(p, "InstanceIds"))


async def set_instance_health(model: AutoScaling, p: Params) -> None:
    status = _required(p, "HealthStatus")
    if status not in ("Healthy", "Unhealthy"):
        raise AwsError("ValidationError", f"HealthStatus {status!r}: Healthy or Unhealthy")
    await asyncio.to_thread(model.set_health, _required(p, "InstanceId"), status == "Healthy")


async def suspend_processes(model: AutoScaling, p: Params) -> None:
    await asyncio.to_thread(model.suspend_processes, _required(p, "AutoScalingGroupName"),
                            _members(p, "ScalingProcesses"))


async def resume_processes(model: AutoScaling, p: Params) -> None:
    await asyncio.to_thread(model.resume_processes, _required(p, "AutoScalingGroupName"),
                            _members(p, "ScalingProcesses"))


async def describe_scaling_activities(model: AutoScaling, p: Params) -> str:
    raw = p.get("MaxRecords") or str(MAX_ACTIVITIES)
    limit = whole(raw, 3)
    if limit is None or not 1 <= limit <= MAX_ACTIVITIES:
        raise AwsError("ValidationError", f"MaxRecords: a whole number from 1 to {MAX_ACTIVITIES}")
    found = await asyncio.to_thread(model.activities, p.get("AutoScalingGroupName"), limit)
    return xml_list("Activities", [_activity_xml(a) for a in found])


async def describe_scaling_process_types(model: AutoScaling, p: Params) -> str:
    return xml_list("Processes", ["<member>" + x("ProcessName", name) + "</member>" for name in AWS_PROCESS_NAMES])


async def describe_termination_policy_types(model: AutoScaling, p: Params) -> str:
    return xml_list("TerminationPolicyTypes", [x("member", name) for name in TERMINATION])


async def describe_adjustment_types(model: AutoScaling, p: Params) -> str:
    return xml_list("AdjustmentTypes", ["<member>" + x("AdjustmentType", name) + "</member>"
                                        for name in ADJUSTMENTS])


INSTANCE_ACTIONS: Mapping[str, Callable[[AutoScaling, Params], Any]] = {
    "SetInstanceProtection": set_instance_protection,
    "EnterStandby": enter_standby,
    "ExitStandby": exit_standby,
    "SetInstanceHealth": set_instance_health,
    "AttachInstances": attach_instances,
    "DetachInstances": detach_instances,
    "SuspendProcesses": suspend_processes,
    "ResumeProcesses": resume_processes,
    "DescribeScalingActivities": describe_scaling_activities,
    "DescribeScalingProcessTypes": describe_scaling_process_types,
    "DescribeTerminationPolicyTypes": describe_termination_policy_types,
    "DescribeAdjustmentTypes": describe_adjustment_types,
}
