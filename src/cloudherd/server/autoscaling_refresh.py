"""The Query API's instance refreshes (the model: :mod:`cloudherd.api.autoscaling_refresh`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from cloudherd.api.autoscaling import AutoScaling, AwsError
from cloudherd.server.autoscaling_params import Params, _members, _required
from cloudherd.server.autoscaling_xml import x, xml_list

_PREFERENCE_FIELDS = ("MinHealthyPercentage", "MaxHealthyPercentage", "InstanceWarmup", "SkipMatching",
                      "AutoRollback", "CheckpointDelay", "ScaleInProtectedInstances", "StandbyInstances", "BakeTime")


def _preferences(p: Params) -> dict[str, str | None]:
    found = {k: p.get(f"Preferences.{k}") for k in _PREFERENCE_FIELDS}
    found.update({k.removeprefix("Preferences."): v for k, v in p.items()
                  if k.startswith("Preferences.CheckpointPercentages")})
    for key in ("ScaleInProtectedInstances", "StandbyInstances"):
        if found.get(key) not in (None, "", "Ignore"):
            raise AwsError("ValidationError", f"Preferences.{key} {found[key]!r}: only Ignore is served (protected "
                                              "and standby instances are left as they are)")
    return {k: v for k, v in found.items() if v not in (None, "")}


def _refresh_xml(r: Mapping[str, Any]) -> str:
    prefs = r.get("preferences") or {}
    shown = "".join(x(k, prefs[k]) for k in ("MinHealthyPercentage", "MaxHealthyPercentage", "InstanceWarmup",
                                             "SkipMatching", "AutoRollback") if k in prefs)
    return "<member>" + "".join([
        x("InstanceRefreshId", r["id"]), x("AutoScalingGroupName", r["group"]), x("Status", r["status"]),
        x("StatusReason", r.get("reason")), x("StartTime", r.get("started")), x("EndTime", r.get("ended")),
        x("PercentageComplete", r.get("percent", 0)), f"<Preferences>{shown}</Preferences>", x("Strategy", "Rolling"),
    ]) + "</member>"


async def start_instance_refresh(model: AutoScaling, p: Params) -> str:
    if (p.get("Strategy") or "Rolling") != "Rolling":
        raise AwsError("ValidationError", f"Strategy {p.get('Strategy')!r}: Rolling")
    if any(k.startswith("DesiredConfiguration.") for k in p):
        raise AwsError("ValidationError", "DesiredConfiguration: launch templates are not served (update the group's "
                                          "launch configuration, then refresh)")
    refresh_id = await asyncio.to_thread(model.start_refresh, _required(p, "AutoScalingGroupName"), _preferences(p))
    return x("InstanceRefreshId", refresh_id)


async def describe_instance_refreshes(model: AutoScaling, p: Params) -> str:
    found = await asyncio.to_thread(model.refreshes, _required(p, "AutoScalingGroupName"),
                                    _members(p, "InstanceRefreshIds"))
    return xml_list("InstanceRefreshes", [_refresh_xml(r) for r in found])


async def cancel_instance_refresh(model: AutoScaling, p: Params) -> str:
    return x("InstanceRefreshId", await asyncio.to_thread(model.cancel_refresh, _required(p, "AutoScalingGroupName")))


async def rollback_instance_refresh(model: AutoScaling, p: Params) -> str:
    return x("InstanceRefreshId", await asyncio.to_thread(model.rollback_refresh,
                                                          _required(p, "AutoScalingGroupName")))


REFRESH_ACTIONS: Mapping[str, Callable[[AutoScaling, Params], Any]] = {
    "StartInstanceRefresh": start_instance_refresh,
    "DescribeInstanceRefreshes": describe_instance_refreshes,
    "CancelInstanceRefresh": cancel_instance_refresh,
    "RollbackInstanceRefresh": rollback_instance_refresh,
}
