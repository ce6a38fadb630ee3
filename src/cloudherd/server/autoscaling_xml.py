"""The Auto Scaling Query API's answers, in AWS's XML: one function per kind of value."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cloudherd.api import phantom
from cloudherd.api.autoscaling import NOT_XML, Instance, LaunchConfig, ScalingGroupView, Tag
from cloudherd.server.errors import xml_text as _text
from cloudherd.times import as_utc

# -- writing answers --------------------------------------------------------------------------------------

def x(tag: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, datetime):
        moment = as_utc(value)  # AWS writes UTC, with a Z
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    else:
        text = _text(str(value))
    return f"<{tag}>{text}</{tag}>"


def xml_list(tag: str, items: Sequence[str]) -> str:
    return f"<{tag}>{''.join(items)}</{tag}>"


def arn(kind: str, name: str) -> str:
    key = NOT_XML.sub("\ufffd", name)  # a lone surrogate has no UTF-8 for uuid5 to hash (written out as U+FFFD)
    return f"arn:aws:autoscaling:cloudherd:000000000000:{kind}:{uuid.uuid5(uuid.NAMESPACE_URL, key)}:" \
           f"{'launchConfigurationName' if kind == 'launchConfiguration' else 'autoScalingGroupName'}/{name}"


def launch_xml(lc: LaunchConfig) -> str:
    return "<member>" + "".join([
        x("LaunchConfigurationName", lc.name), x("LaunchConfigurationARN", arn("launchConfiguration", lc.name)),
        x("ImageId", lc.image), x("InstanceType", lc.instance_type or ""), x("KeyName", lc.key_name),
        xml_list("SecurityGroups", [x("member", g) for g in lc.security_groups]), x("UserData", lc.user_data),
        "<BlockDeviceMappings/>", "<InstanceMonitoring><Enabled>false</Enabled></InstanceMonitoring>",
        x("CreatedTime", lc.created_at),
    ]) + "</member>"


def instance_xml(i: Instance, *, with_group: bool) -> str:
    return "<member>" + "".join([
        x("InstanceId", i.id), x("AutoScalingGroupName", i.group) if with_group else "",
        x("AvailabilityZone", i.cloud), x("LifecycleState", i.lifecycle), x("HealthStatus", i.health),
        x("LaunchConfigurationName", i.launch_configuration), x("InstanceType", i.instance_type),
        x("ProtectedFromScaleIn", i.protected),
    ]) + "</member>"


def tag_xml(t: Tag) -> str:
    return "<member>" + "".join([
        x("ResourceId", t.group), x("ResourceType", "auto-scaling-group"), x("Key", t.key), x("Value", t.value),
        x("PropagateAtLaunch", t.propagate),
    ]) + "</member>"


def group_xml(g: ScalingGroupView) -> str:
    return "<member>" + "".join([
        x("AutoScalingGroupName", g.name), x("AutoScalingGroupARN", arn("autoScalingGroup", g.name)),
        x("LaunchConfigurationName", phantom.shared_name(g.launch_configuration) if phantom.is_domain(g.tags)
           else g.launch_configuration), mixed_xml(g.distribution), x("MinSize", g.min_size), x("MaxSize", g.max_size),
        x("DesiredCapacity", g.desired), x("DefaultCooldown", 300),
        xml_list("AvailabilityZones", [x("member", z) for z in g.zones]), "<LoadBalancerNames/>",
        "<TargetGroupARNs/>", x("HealthCheckType", "EC2"), x("HealthCheckGracePeriod", 0),
        xml_list("Instances", [instance_xml(i, with_group=False) for i in g.instances]), x("CreatedTime", g.created_at),
        xml_list("SuspendedProcesses", ["<member>" + x("ProcessName", name) + x("SuspensionReason", why) + "</member>"
                                        for name, why in g.suspended]),
        "<EnabledMetrics/>", xml_list("Tags", [tag_xml(t) for t in g.tags]),
        xml_list("TerminationPolicies", [x("member", p) for p in g.termination]),
        x("NewInstancesProtectedFromScaleIn", g.new_protected),
        x("Status", g.status),
    ]) + "</member>"


def mixed_xml(distribution: Sequence[tuple[str, object]]) -> str:
    """A group's MixedInstancesPolicy: its InstancesDistribution only (cloudherd's groups have no launch template)."""
    if not distribution:
        return ""
    return ("<MixedInstancesPolicy><InstancesDistribution>" + "".join(x(field, value) for field, value in distribution)
            + "</InstancesDistribution></MixedInstancesPolicy>")


def policy_arn(group: str, name: str) -> str:
    key = NOT_XML.sub("\ufffd", f"{group}/{name}")
    return (f"arn:aws:autoscaling:cloudherd:000000000000:scalingPolicy:{uuid.uuid5(uuid.NAMESPACE_URL, key)}:"
            f"autoScalingGroupName/{group}:policyName/{name}")


def policy_xml(group: str, name: str, policy: dict[str, Any]) -> str:
    """A scaling policy as DescribePolicies answers it (what was put, in AWS's names)."""
    kind = policy["type"]
    parts = [x("AutoScalingGroupName", group), x("PolicyName", name), x("PolicyARN", policy_arn(group, name)),
             x("PolicyType", kind), x("Enabled", True), "<Alarms/>"]
    if kind == "TargetTrackingScaling":
        metric = policy["metric"]
        spec = (f"<PredefinedMetricSpecification>{x('PredefinedMetricType', 'ASGAverageCPUUtilization')}"
                "</PredefinedMetricSpecification>" if policy.get("predefined")
                else f"<CustomizedMetricSpecification>{x('MetricName', metric)}{x('Namespace', 'cloudherd')}"
                     f"{x('Statistic', 'Average')}</CustomizedMetricSpecification>")
        parts += [f"<TargetTrackingConfiguration>{spec}{x('TargetValue', policy['target'])}"
                  f"{x('DisableScaleIn', bool(policy.get('disable_scale_in')))}</TargetTrackingConfiguration>",
                  x("EstimatedInstanceWarmup", policy.get("warmup"))]
    else:
        parts += [x("AdjustmentType", policy["adjustment_type"]), x("ScalingAdjustment", policy.get("adjustment")),
                  x("Cooldown", policy.get("cooldown")), x("MinAdjustmentMagnitude", policy.get("min_magnitude")),
                  x("EstimatedInstanceWarmup", policy.get("warmup"))]
        if kind == "StepScaling":
            parts.append(xml_list("StepAdjustments", ["<member>" + "".join([
                x("MetricIntervalLowerBound", step.get("lower")), x("MetricIntervalUpperBound", step.get("upper")),
                x("ScalingAdjustment", step["adjustment"])]) + "</member>" for step in policy["steps"]]))
    return "<member>" + "".join(parts) + "</member>"


def schedule_xml(group: str, action: dict[str, Any]) -> str:
    """A scheduled action as DescribeScheduledActions answers it."""
    name = action["name"]
    key = NOT_XML.sub("\ufffd", f"{group}/{name}")
    when = datetime.fromisoformat(action["at"]) if action.get("at") else None
    return "<member>" + "".join([
        x("AutoScalingGroupName", group), x("ScheduledActionName", name),
        x("ScheduledActionARN", f"arn:aws:autoscaling:cloudherd:000000000000:scheduledUpdateGroupAction:"
                                f"{uuid.uuid5(uuid.NAMESPACE_URL, key)}:autoScalingGroupName/{group}:"
                                f"scheduledActionName/{name}"),
        x("Time", when), x("StartTime", when), x("Recurrence", action.get("cron")), x("MinSize", action.get("min")),
        x("MaxSize", action.get("max")), x("DesiredCapacity", action.get("desired")),
        x("TimeZone", action.get("timezone")),
    ]) + "</member>"


def failures_xml(tag: str, failed: Sequence[tuple[str, str]]) -> str:
    """A batch call's refusals: each action's name, and why."""
    return xml_list(tag, ["<member>" + x("ScheduledActionName", name) + x("ErrorCode", "ValidationError")
                          + x("ErrorMessage", why) + "</member>" for name, why in failed])
