"""The Auto Scaling API's scaling policies (PutScalingPolicy, DescribePolicies, DeletePolicy, ExecutePolicy) and
scheduled actions (PutScheduledUpdateGroupAction and the rest) over cloudherd's own.  Mixed into
:class:`cloudherd.api.autoscaling.AutoScaling`.

A scheduled action becomes a schedule of the group's spec (``Recurrence`` its cron, in ``TimeZone``; a
``StartTime`` alone its one-off time), which the manager fires (:func:`cloudherd.engine.autoscale.fire_schedules`).

A target-tracking policy (``ASGAverageCPUUtilization``, or a customized metric naming one of the metrics the
manager samples: ``cpu``, ``memory``, ``load1``) becomes a policy of the group's spec, which the manager's passes
follow (:mod:`cloudherd.engine.autoscale`).  A simple or step policy is kept and runs when ExecutePolicy asks:
AWS runs those from CloudWatch alarms, and this server has no CloudWatch (a step policy with its own alarm is
written in a spec instead).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cloudherd.api.autoscaling_base import GroupParts
from cloudherd.api.autoscaling_values import GROUP, AwsError, _check_name
from cloudherd.spec.parts import BUILTIN_METRICS, StepAdjustment
from cloudherd.times import utcnow

PREDEFINED = {"ASGAverageCPUUtilization": "cpu"}  # the predefined metrics measured here, and as what
TYPES = ("TargetTrackingScaling", "StepScaling", "SimpleScaling")
ADJUSTMENTS = ("ChangeInCapacity", "ExactCapacity", "PercentChangeInCapacity")
DEFAULT_COOLDOWN = 300


def _number(fields: Mapping[str, str | None], key: str, *, whole: bool = False) -> float | None:
    raw = fields.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise AwsError("ValidationError", f"{key}: {raw!r} is not a number") from None
    if not math.isfinite(value) or (whole and value != int(value)):
        raise AwsError("ValidationError", f"{key}: {raw!r} is not {'a whole number' if whole else 'a number'}")
    return value


def _whole(fields: Mapping[str, str | None], key: str) -> int | None:
    value = _number(fields, key, whole=True)
    return None if value is None else int(value)


def read_policy(kind: str, fields: Mapping[str, str | None], steps: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """A policy as PutScalingPolicy gives it, checked, as it is kept."""
    if kind not in TYPES:
        raise AwsError("ValidationError", f"PolicyType {kind!r}: one of {', '.join(TYPES)}")
    if kind == "TargetTrackingScaling":
        return _target_tracking(fields)
    adjustment_type = fields.get("AdjustmentType") or ""
    if adjustment_type not in ADJUSTMENTS:
        raise AwsError("ValidationError", f"AdjustmentType {adjustment_type!r}: one of {', '.join(ADJUSTMENTS)}")
    policy: dict[str, Any] = {"type": kind, "adjustment_type": adjustment_type,
                              "min_magnitude": _whole(fields, "MinAdjustmentMagnitude"),
                              "warmup": _whole(fields, "EstimatedInstanceWarmup")}
    if kind == "SimpleScaling":
        adjustment = _whole(fields, "ScalingAdjustment")
        if adjustment is None:
            raise AwsError("ValidationError", "ScalingAdjustment is required for a simple scaling policy")
        return {**policy, "adjustment": adjustment, "cooldown": _whole(fields, "Cooldown")}
    if not steps:
        raise AwsError("ValidationError", "StepAdjustments is required for a step scaling policy")
    policy["steps"] = [{"lower": _number(step, "MetricIntervalLowerBound"),
                        "upper": _number(step, "MetricIntervalUpperBound"),
                        "adjustment": _whole(step, "ScalingAdjustment")} for step in steps]
    if any(step["adjustment"] is None for step in policy["steps"]):
        raise AwsError("ValidationError", "each of StepAdjustments has a ScalingAdjustment")
    return policy


def _target_tracking(fields: Mapping[str, str | None]) -> dict[str, Any]:
    prefix = "TargetTrackingConfiguration."
    predefined = fields.get(prefix + "PredefinedMetricSpecification.PredefinedMetricType")
    custom = fields.get(prefix + "CustomizedMetricSpecification.MetricName")
    if predefined:
        if predefined not in PREDEFINED:
            raise AwsError("ValidationError", f"PredefinedMetricType {predefined!r} is not measured here (only "
                                              f"{', '.join(PREDEFINED)}; or a customized metric: "
                                              f"{', '.join(BUILTIN_METRICS)})")
        metric = PREDEFINED[predefined]
    elif custom in BUILTIN_METRICS:
        metric = custom
    else:
        raise AwsError("ValidationError", "TargetTrackingConfiguration names a PredefinedMetricType "
                                          f"({', '.join(PREDEFINED)}) or a CustomizedMetricSpecification whose "
                                          f"MetricName is one of {', '.join(BUILTIN_METRICS)}")
    target = _number(fields, prefix + "TargetValue")
    if target is None or target <= 0:
        raise AwsError("ValidationError", "TargetTrackingConfiguration.TargetValue: a number above 0")
    return {"type": "TargetTrackingScaling", "metric": metric, "predefined": bool(predefined), "target": target,
            "disable_scale_in": (fields.get(prefix + "DisableScaleIn") or "").lower() == "true",
            "warmup": _whole(fields, "EstimatedInstanceWarmup")}


def spec_policies(policies: Mapping[str, Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The target-tracking policies as the group's spec writes them (the manager follows those)."""
    return [{"metric": p["metric"], "target": p["target"], "disable_scale_in": bool(p.get("disable_scale_in")),
             **({"warmup": p["warmup"]} if p.get("warmup") is not None else {})}
            for p in (policies or {}).values() if p["type"] == "TargetTrackingScaling"]


class PolicyActions(GroupParts):
    """Scaling policies and scheduled actions: kept in AWS's words, the ones the manager follows in the spec."""

    def set_desired(self, name: str, desired: int) -> None:  # pragma: no cover - AutoScaling's
        raise NotImplementedError

    def put_policy(self, group: str, name: str, policy: dict[str, Any]) -> None:
        """PutScalingPolicy: the policy kept under its name (replacing one of that name), and the spec rewritten
        when it tracks a target."""
        _check_name(name, "PolicyName")
        row = self._group(group)
        self._save_parts(row, policies={**(row.policies or {}), name: policy})

    def policies(self, group: str | None, names: Sequence[str] = (),
                 types: Sequence[str] = ()) -> list[tuple[str, str, dict[str, Any]]]:
        """DescribePolicies: (group, name, policy), by group and name."""
        rows = [self._group(group)] if group else self.store.scaling_groups(self.owner)
        return [(row.name, name, policy) for row in sorted(rows, key=lambda r: r.name)
                for name, policy in sorted((row.policies or {}).items())
                if (not names or name in names) and (not types or policy["type"] in types)]

    def delete_policy(self, group: str, name: str) -> None:
        row = self._group(group)
        if name not in (row.policies or {}):
            raise AwsError("ValidationError", f"No scaling policy found for service namespace ec2 with policy "
                                              f"name {name} of AutoScalingGroup {group}")
        self._save_parts(row, policies={k: v for k, v in (row.policies or {}).items() if k != name})

    def execute_policy(self, group: str, name: str, *, honor_cooldown: bool, metric_value: float | None,
                       breach_threshold: float | None) -> int:
        """ExecutePolicy of a simple or step policy: the group's new desired size (a scale request), an event."""
        from cloudherd.engine.autoscale import since_scaled
        from cloudherd.engine.policies import adjusted

        row = self._group(group)
        policy = (row.policies or {}).get(name)
        if policy is None:
            raise AwsError("ValidationError", f"No scaling policy found for policy name {name} of AutoScalingGroup "
                                              f"{group}")
        if policy["type"] == "TargetTrackingScaling":
            raise AwsError("ValidationError", "ExecutePolicy is not supported for a target tracking scaling policy")
        current = self._view(row).desired
        adjustment = policy.get("adjustment")
        if policy["type"] == "StepScaling":
            adjustment = _step(policy, metric_value, breach_threshold)
        if honor_cooldown:
            since = since_scaled(self.store, row.infrastructure_id, GROUP, utcnow()).any_scaling
            cooldown = policy.get("cooldown") or DEFAULT_COOLDOWN
            if since is not None and since < cooldown:
                raise AwsError("ScalingActivityInProgress", f"the group scaled {since:.0f}s ago, within the "
                                                            f"policy's cooldown ({cooldown}s)")
        wanted = adjusted(policy["adjustment_type"], int(adjustment or 0), current, policy.get("min_magnitude"))
        desired = min(max(wanted, row.min_size), row.max_size)
        if desired != current:
            self.set_desired(group, desired)
            sign = "+" if desired > current else "-"
            self.store.add_event(row.infrastructure_id, f"scale-{'out' if desired > current else 'in'}",
                                 f"{GROUP}: policy {name} executed → {sign}{abs(desired - current)} "
                                 f"({current} → {desired})")
        return desired

    # -- scheduled actions ------------------------------------------------------------------------

    def put_schedules(self, group: str, actions: Sequence[Mapping[str, str | None]]) -> list[tuple[str, str]]:
        """Put scheduled actions (one, or BatchPut's): each checked as the spec checks a schedule, all written
        together; returns (name, why) of those refused (the others are written)."""
        row = self._group(group)
        schedules = dict(row.schedules or {})
        failed = []
        for action in actions:
            name = action.get("ScheduledActionName") or ""
            try:
                schedules[name] = read_schedule(action)
            except AwsError as exc:
                failed.append((name, exc.message))
        if len(failed) < len(actions):
            self._save_parts(row, schedules=schedules)
        return failed

    def schedules(self, group: str | None, names: Sequence[str] = ()) -> list[tuple[str, dict[str, Any]]]:
        """DescribeScheduledActions: (group, action), by group and name."""
        rows = [self._group(group)] if group else self.store.scaling_groups(self.owner)
        return [(row.name, action) for row in sorted(rows, key=lambda r: r.name)
                for name, action in sorted((row.schedules or {}).items()) if not names or name in names]

    def delete_schedules(self, group: str, names: Sequence[str]) -> list[tuple[str, str]]:
        """Delete scheduled actions; returns (name, why) of those not found."""
        row = self._group(group)
        schedules = dict(row.schedules or {})
        missing = [(name, "Could not find scheduled action") for name in names if name not in schedules]
        if len(missing) < len(names):
            self._save_parts(row, schedules={k: v for k, v in schedules.items() if k not in names})
        return missing

def read_schedule(action: Mapping[str, str | None]) -> dict[str, Any]:
    """A scheduled action as PutScheduledUpdateGroupAction gives it, as the spec's schedule (checked)."""
    from datetime import datetime

    from pydantic import ValidationError

    from cloudherd.spec.parts import Schedule

    name = action.get("ScheduledActionName") or ""
    recurrence, start = action.get("Recurrence"), action.get("StartTime") or action.get("Time")
    if recurrence and (start or action.get("EndTime")):
        raise AwsError("ValidationError", "StartTime and EndTime with a Recurrence are not supported here: the "
                                          "recurrence runs from now on (give one of them)")
    if action.get("EndTime") and not recurrence:
        raise AwsError("ValidationError", "EndTime goes with a Recurrence")
    fields: dict[str, Any] = {"name": name, "timezone": action.get("TimeZone") or "UTC"}
    if recurrence:
        fields["cron"] = recurrence
    elif start:
        try:
            fields["at"] = datetime.fromisoformat(start.replace("Z", "+00:00"))
        except ValueError:
            raise AwsError("ValidationError", f"StartTime {start!r} is not a time (ISO 8601)") from None
    for key, field in (("MinSize", "min"), ("MaxSize", "max"), ("DesiredCapacity", "desired")):
        value = _whole(action, key)
        if value is not None:
            fields[field] = value
    try:
        schedule = Schedule.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or name
        raise AwsError("ValidationError", f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    return schedule.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def _step(policy: Mapping[str, Any], metric_value: float | None, breach_threshold: float | None) -> int:
    if metric_value is None or breach_threshold is None:
        raise AwsError("ValidationError", "MetricValue and BreachThreshold are required to execute a step policy")
    excess = metric_value - breach_threshold
    for step in policy["steps"]:
        if StepAdjustment(lower_bound=step["lower"], upper_bound=step["upper"], adjustment=step["adjustment"]) \
                .holds(excess):
            return int(step["adjustment"])
    raise AwsError("ValidationError", f"no step adjustment of the policy holds {excess:g} past the breach threshold")
