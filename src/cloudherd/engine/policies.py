"""Scaling policies' decisions: a pure function of the samples, the group's size and bounds, and how long ago
the group was last scaled.  Nothing here reads or writes; :mod:`cloudherd.engine.autoscale` does.

Step scaling is an alarm (``datapoints_to_alarm`` of the last ``evaluation_periods`` samples past the threshold)
and the step that holds the newest sample's distance from the threshold; then a ``cooldown`` after the group's
last scaling of any kind.

Target tracking follows what AWS documents for it: out at once and in proportion (``ceil(size * value /
target)``), in slowly (only after ``scale_in_after`` samples in a row below the target, by one step of at most a
tenth of the group, sized by the highest of those samples), never past ``min`` / ``max``, and not within a
cooldown: no scale-out within ``scale_out_cooldown`` of the last scale-out, no scale-in within
``scale_in_cooldown`` of the group's last scaling of any kind (a manual one included).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cloudherd.spec.parts import Policy, StepScaling, TargetTracking


@dataclass(frozen=True)
class Decision:
    """A policy's answer: the group's new size, and why, in a line (``cpu 82 > 50 … → +2 (2 → 4)``)."""

    group: str
    desired: int
    reason: str

    def direction(self, current: int) -> str:
        return "out" if self.desired > current else "in"


@dataclass(frozen=True)
class Since:
    """Seconds since the group last scaled out, and since it last scaled at all (None: not in memory)."""

    scale_out: float | None = None
    any_scaling: float | None = None


def _shown(value: float) -> str:
    return f"{value:.4g}"


def target_tracking(group: str, policy: TargetTracking, values: Sequence[float], current: int,
                    low: int | None, high: int | None, since: Since) -> Decision | None:
    """The decision of ``policy`` for a group of ``current`` nodes, from the group's samples of its metric
    (``values``, newest last), or None: nothing to do, or not now."""
    if not values:
        return None
    value, target, floor = values[-1], policy.target, low or 0
    ceiling = high if high is not None else current
    if value > target:
        if since.scale_out is not None and since.scale_out < policy.scale_out_cooldown:
            return None
        desired = min(max(math.ceil(max(current, 1) * value / target), current), ceiling)
        if desired <= current:
            return None
        return Decision(group, desired, f"{policy.metric} {_shown(value)} > {_shown(target)} → "
                                        f"+{desired - current} ({current} → {desired})")
    if value >= target or policy.disable_scale_in or current <= floor:
        return None
    recent = values[-policy.scale_in_after:]
    if len(recent) < policy.scale_in_after or max(recent) >= target:
        return None
    if since.any_scaling is not None and since.any_scaling < policy.scale_in_cooldown:
        return None
    step = max(1, current // 10)
    desired = max(math.ceil(current * max(recent) / target), current - step, floor)
    if desired >= current:
        return None
    return Decision(group, desired, f"{policy.metric} {_shown(value)} < {_shown(target)} for {len(recent)} of "
                                    f"{len(recent)} samples → -{current - desired} ({current} → {desired})")


_COMPARE = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}


def step_scaling(group: str, policy: StepScaling, values: Sequence[float], current: int, low: int | None,
                 high: int | None, since: Since) -> Decision | None:
    """The decision of a step policy (see the module), or None: no alarm, no step that holds, or not now."""
    window = list(values[-policy.evaluation_periods:])
    needed = policy.datapoints_to_alarm or policy.evaluation_periods
    breaching = [v for v in window if _COMPARE[policy.comparison](float(v), policy.threshold)]
    if len(window) < needed or len(breaching) < needed:
        return None
    if since.any_scaling is not None and since.any_scaling < policy.cooldown:
        return None
    value = window[-1]
    step = next((s for s in policy.steps if s.holds(value - policy.threshold)), None)
    if step is None:
        return None
    wanted = adjusted(policy.adjustment_type, step.adjustment, current, policy.min_adjustment_magnitude)
    desired = max(min(wanted, high if high is not None else wanted), low or 0)
    if desired == current:
        return None
    sign = "+" if desired > current else "-"
    return Decision(group, desired, f"{policy.metric} {_shown(value)} {policy.comparison} {_shown(policy.threshold)} "
                                    f"for {len(breaching)} of {len(window)} samples → {sign}{abs(desired - current)} "
                                    f"({current} → {desired})")


def decide(group: str, policy: Policy, values: Sequence[float], current: int, low: int | None, high: int | None,
           since: Since) -> Decision | None:
    """The decision of any policy."""
    if isinstance(policy, StepScaling):
        return step_scaling(group, policy, values, current, low, high, since)
    return target_tracking(group, policy, values, current, low, high, since)


def describe(policy: Policy) -> str:
    """A policy in a line, for ``status`` and the dashboard."""
    if isinstance(policy, StepScaling):
        steps = ", ".join(f"{'+' if s.adjustment > 0 else ''}{s.adjustment}" for s in policy.steps)
        alarm = f"{policy.datapoints_to_alarm or policy.evaluation_periods} of {policy.evaluation_periods}"
        return f"step: {policy.metric} {policy.comparison} {_shown(policy.threshold)} ({alarm} samples): {steps}"
    return f"target tracking: {policy.metric} at {_shown(policy.target)}"


def adjusted(adjustment_type: str, adjustment: int, current: int, least: int | None) -> int:
    """The size an adjustment asks for, as AWS counts it: ``exact_capacity``, ``percent_change_in_capacity``
    (rounded towards zero, at least ``least`` nodes), else a change in capacity (AWS's CamelCase names too)."""
    kind = re.sub(r"(?<!^)([A-Z])", r"_\1", adjustment_type).lower()
    if kind == "exact_capacity":
        return adjustment
    if kind == "percent_change_in_capacity":
        change = current * adjustment / 100
        change = math.floor(change) if change > 0 else math.ceil(change)
        if least and abs(change) < least:
            change = least if adjustment > 0 else -least
        return current + change
    return current + adjustment
