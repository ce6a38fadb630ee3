"""AWS's ``MixedInstancesPolicy`` on CreateAutoScalingGroup and UpdateAutoScalingGroup, over cloudherd's market
(the spec's ``market:``, :class:`cloudherd.spec.parts.Market`; the engine buys by it: :mod:`cloudherd.engine.market`).

Its ``InstancesDistribution`` is kept with the group in AWS's words (the fields given; an update changes only the
fields it gives, as AWS's does) and written into the group's spec: ``OnDemandBaseCapacity`` (AWS's default 0) as
``on_demand_base``, ``OnDemandPercentageAboveBaseCapacity`` (AWS's default 100) as ``on_demand_percent``,
``SpotMaxPrice`` as ``max_price`` (an empty string removes it: up to the on-demand price, AWS's default).  A
distribution that makes every instance on-demand (the percentage 100, whatever the base) is the on-demand market.
DescribeAutoScalingGroups answers the distribution with AWS's defaults filled in.

``OnDemandAllocationStrategy``, ``SpotAllocationStrategy`` and ``SpotInstancePools`` are checked against AWS's
values, kept and answered back exactly as given, and not acted on: they choose among instance types and pools,
and cloudherd buys a group's machines of one type in one place at a time (its placement's order).  A call that
gives one says so in an event of the group's (a scaling activity).

cloudherd's extension: the policy is given *beside* ``LaunchConfigurationName`` (AWS takes a MixedInstancesPolicy
only instead of it, with a launch template inside).  cloudherd makes a group's machines from launch
configurations, so ``MixedInstancesPolicy.LaunchTemplate`` (with its ``Overrides``) is refused, naming what to
give instead, and so are ``DistributionSegments`` (capacity reservations cloudherd does not buy).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from cloudherd.api.autoscaling_values import AwsError

PREFIX = "MixedInstancesPolicy."
DISTRIBUTION = "InstancesDistribution"
CHOICE = "distribution"  # the group's choices' key: the fields given, in AWS's words
SPOT_STRATEGIES = ("capacity-optimized", "capacity-optimized-prioritized", "lowest-price", "price-capacity-optimized")
ON_DEMAND_STRATEGIES = ("lowest-price", "prioritized")
STRATEGIES = {"OnDemandAllocationStrategy": ON_DEMAND_STRATEGIES, "SpotAllocationStrategy": SPOT_STRATEGIES}
# AWS's ranges of the whole numbers (None: no bound but the Query API's 32-bit integer)
WHOLE = {"OnDemandBaseCapacity": (0, None), "OnDemandPercentageAboveBaseCapacity": (0, 100),
         "SpotInstancePools": (0, 20)}
FIELDS = ("OnDemandAllocationStrategy", "OnDemandBaseCapacity", "OnDemandPercentageAboveBaseCapacity",
          "SpotAllocationStrategy", "SpotInstancePools", "SpotMaxPrice")  # AWS's order
NOT_ACTED_ON = ("OnDemandAllocationStrategy", "SpotAllocationStrategy", "SpotInstancePools")
INT32 = 2**31 - 1
MIN_PRICE, MAX_PRICE = Decimal("0.001"), Decimal(100_000)  # AWS's least; the spec's most (US dollars an hour)
POOLS_DEFAULT = 2  # SpotInstancePools' default, with the lowest-price strategy (its only one)

LAUNCH_TEMPLATE = ("MixedInstancesPolicy.LaunchTemplate is not served: cloudherd makes an Auto Scaling group's "
                   "instances from a launch configuration (its image and instance type, an entry per cloud), not "
                   "from launch templates and instance-type overrides. Give LaunchConfigurationName (made by "
                   "CreateLaunchConfiguration) beside a MixedInstancesPolicy that holds only its "
                   "InstancesDistribution.")
NEEDS_LAUNCH = ("LaunchConfigurationName is required: cloudherd makes an Auto Scaling group's instances from a "
                "launch configuration, and takes MixedInstancesPolicy (only its InstancesDistribution) beside it.")


def mixed_choices(params: Mapping[str, str]) -> dict[str, Any]:
    """The ``MixedInstancesPolicy.*`` parameters of a call as the group's choice (``{"distribution": {field:
    value}}``, each field checked alone), or nothing when none is given.  What cloudherd cannot honour is refused."""
    given = {key[len(PREFIX):]: value for key, value in params.items() if key.startswith(PREFIX)}
    if not given:
        return {}
    if any(key.split(".", 1)[0] == "LaunchTemplate" for key in given):
        raise AwsError("ValidationError", LAUNCH_TEMPLATE)
    fields: dict[str, str] = {}
    for key, value in sorted(given.items()):
        part, _, field = key.partition(".")
        if part == DISTRIBUTION and not field and value == "":
            continue  # an empty structure, sent by hand: nothing given
        if part != DISTRIBUTION or not field:
            raise AwsError("ValidationError", f"{_shown(PREFIX + key)} is not a field of MixedInstancesPolicy "
                                              f"(served: {DISTRIBUTION}, with {', '.join(FIELDS)})")
        if field == "DistributionSegments" and value == "":
            continue  # an empty list: remove segments, and there are none
        if field.startswith("DistributionSegments"):
            raise AwsError("ValidationError", "MixedInstancesPolicy.InstancesDistribution.DistributionSegments is not "
                                              "served: cloudherd buys on-demand and spot instances, no capacity "
                                              "reservations. Give OnDemandBaseCapacity and "
                                              "OnDemandPercentageAboveBaseCapacity instead.")
        if field not in FIELDS:
            raise AwsError("ValidationError", f"{_shown(PREFIX + key)} is not a field of InstancesDistribution "
                                              f"(one of {', '.join(FIELDS)})")
        fields[field] = value
    return {CHOICE: read_distribution(fields)}


def read_distribution(fields: Mapping[str, str]) -> dict[str, Any]:
    """InstancesDistribution's fields as the Query API gives them (text), each checked and typed as AWS's."""
    found: dict[str, Any] = {}
    for field, raw in fields.items():
        if field in WHOLE:
            found[field] = _whole(field, raw, *WHOLE[field])
        elif field in STRATEGIES:
            if raw not in STRATEGIES[field]:
                raise AwsError("ValidationError", f"The specified {field} is not valid. Valid options are "
                                                  f"[{', '.join(STRATEGIES[field])}].")
            found[field] = raw
        else:  # SpotMaxPrice: a price, or "" (remove it)
            found[field] = _price(raw)
    return found


def with_distribution(kept: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """A group's choices after a call: ``given`` over ``kept``, the distribution field by field (the fields a call
    does not give are left as they were; an empty SpotMaxPrice removes it), and checked whole."""
    choices = {**kept, **given}
    if CHOICE not in given:
        return choices
    merged = {**(kept.get(CHOICE) or {}), **given[CHOICE]}
    if merged.get("SpotMaxPrice") == "":
        del merged["SpotMaxPrice"]
    strategy = merged.get("SpotAllocationStrategy", "lowest-price")
    if merged.get("SpotInstancePools") and strategy != "lowest-price":
        raise AwsError("ValidationError", "SpotInstancePools option is only available with the lowest-price "
                                          "allocation strategy.")
    choices[CHOICE] = merged
    return choices


def shown_distribution(kept: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """The distribution as DescribeAutoScalingGroups answers it, AWS's defaults filled in (none: no policy)."""
    if kept is None:
        return ()
    strategy = kept.get("SpotAllocationStrategy", "lowest-price")
    defaults = {"OnDemandAllocationStrategy": "prioritized", "OnDemandBaseCapacity": 0,
                "OnDemandPercentageAboveBaseCapacity": 100, "SpotAllocationStrategy": strategy,
                "SpotInstancePools": POOLS_DEFAULT if strategy == "lowest-price" else None}
    shown = {field: kept.get(field, defaults.get(field)) for field in FIELDS}
    return tuple((field, value) for field, value in shown.items() if value is not None)


def spec_market(kept: Mapping[str, Any], max_size: int) -> dict[str, Any]:
    """The spec's ``market`` of a distribution: on-demand when it makes every instance so, else spot with the base
    (at most the group's max: a base above it means the same) and the percentage above it."""
    percent = int(kept.get("OnDemandPercentageAboveBaseCapacity", 100))
    if percent >= 100:
        return {"type": "on-demand"}
    market: dict[str, Any] = {"type": "spot", "on_demand_base": min(int(kept.get("OnDemandBaseCapacity", 0)), max_size),
                              "on_demand_percent": percent}
    if kept.get("SpotMaxPrice"):
        market["max_price"] = float(kept["SpotMaxPrice"])
    return market


def distribution_note(group: str, given: Mapping[str, Any]) -> str | None:
    """What a call gave that is kept and not acted on, in words (an event of the group's), or None."""
    distribution = given.get(CHOICE) or {}
    held = [f"{field} {distribution[field]}" for field in NOT_ACTED_ON if field in distribution]
    if not held:
        return None
    return (f"Auto Scaling group {group}: {', '.join(held)} kept as given, not acted on: cloudherd buys a group's "
            "instances of one type in one place at a time (its placement's order); OnDemandBaseCapacity and "
            "OnDemandPercentageAboveBaseCapacity decide which are on-demand and which spot")


def _path(field: str) -> str:
    """AWS's name of the field in its validation messages."""
    return f"mixedInstancesPolicy.instancesDistribution.{field[0].lower()}{field[1:]}"


def _whole(field: str, raw: str, low: int, high: int | None) -> int:
    digits = raw.removeprefix("-")
    if not digits or not digits.isascii() or not digits.isdigit():
        raise AwsError("ValidationError", f"{PREFIX}{DISTRIBUTION}.{field} must be a whole number, got "
                                          f"'{_shown(raw)}'")
    value = int(raw) if len(digits) <= 12 else (-1 if raw.startswith("-") else INT32 + 1) * 10**12  # past any bound
    raw = _shown(raw)
    if value < low:
        raise AwsError("ValidationError", f"1 validation error detected: Value '{raw}' at '{_path(field)}' failed "
                                          f"to satisfy constraint: Member must have value greater than or equal to "
                                          f"{low}")
    most = INT32 if high is None else high
    if value > most:
        raise AwsError("ValidationError", f"1 validation error detected: Value '{raw}' at '{_path(field)}' failed "
                                          f"to satisfy constraint: Member must have value less than or equal to "
                                          f"{most}")
    return value


def _price(raw: str) -> str:
    if raw == "":
        return raw
    if len(raw) > 255:
        raise AwsError("ValidationError", f"1 validation error detected: Value at '{_path('SpotMaxPrice')}' failed "
                                          "to satisfy constraint: Member must have length less than or equal to 255")
    try:
        price = Decimal(raw) if raw.isascii() and raw.strip() == raw else None
    except InvalidOperation:
        price = None
    if price is None or not price.is_finite() or not MIN_PRICE <= price <= MAX_PRICE:
        raise AwsError("ValidationError", f"The specified SpotMaxPrice '{_shown(raw)}' is not valid: a price in US "
                                          f"dollars an hour from {MIN_PRICE} (to {MAX_PRICE:,}), or an empty string "
                                          "to remove it.")
    return raw


def _shown(text: str) -> str:
    return text if len(text) <= 60 else f"{text[:40]}… ({len(text)} characters)"
