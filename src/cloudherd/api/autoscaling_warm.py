"""The Auto Scaling API's warm pools over cloudherd's own (:mod:`cloudherd.engine.warm_pool`): PutWarmPool,
DescribeWarmPool, DeleteWarmPool.  Mixed into :class:`cloudherd.api.autoscaling.AutoScaling`.

A warm pool is kept with its group in AWS's words and written into the group's spec as its ``warm_pool``, whose
size is AWS's: ``MinSize``, or more when ``MaxGroupPreparedCapacity`` (else the group's max) leaves room above the
desired capacity — reckoned by each pass from the group's size then (the spec's ``warm_pool.prepared``).
Hibernated pools and reuse on scale-in are refused, not ignored: cloudherd has neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloudherd.api.autoscaling_base import GroupParts
from cloudherd.api.autoscaling_values import GROUP, AwsError, Instance
from cloudherd.lifecycle import NodeState
from cloudherd.state.models import ScalingGroup as GroupRow

POOL_STATES = {"Stopped": "stopped", "Running": "running"}


def spec_pool(pool: Mapping[str, Any], max_size: int) -> dict[str, Any]:
    """The spec's ``warm_pool``: AWS's MinSize as its least size, the prepared capacity (MaxGroupPreparedCapacity,
    else the group's max) as its ``prepared``, so that the pool follows the desired capacity as it changes."""
    prepared = pool.get("MaxGroupPreparedCapacity")
    ceiling = max_size if prepared is None or prepared == -1 else int(prepared)
    return {"size": int(pool.get("MinSize") or 0), "prepared": ceiling,
            "state": POOL_STATES[pool.get("PoolState") or "Stopped"]}


def _whole(fields: Mapping[str, str | None], key: str, low: int) -> int | None:
    raw = fields.get(key)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.lstrip("-").isdigit()) or (int(raw) < low and int(raw) != -1):
        raise AwsError("ValidationError", f"{key} {raw!r}: a whole number from {low}")
    return int(raw)


class WarmPoolActions(GroupParts):
    """A group's warm pool: kept in AWS's words, written into its spec as its ``warm_pool``, its instances listed."""

    def put_warm_pool(self, group: str, fields: Mapping[str, str | None]) -> None:
        row = self._group(group)
        state = fields.get("PoolState") or "Stopped"
        if state not in POOL_STATES:
            raise AwsError("ValidationError", f"PoolState {state!r}: Stopped or Running (cloudherd has no hibernation)")
        if (fields.get("InstanceReusePolicy.ReuseOnScaleIn") or "false").lower() == "true":
            raise AwsError("ValidationError", "InstanceReusePolicy.ReuseOnScaleIn: not served (a node scaled in ends)")
        pool = {"MinSize": _whole(fields, "MinSize", 0) or 0,
                "MaxGroupPreparedCapacity": _whole(fields, "MaxGroupPreparedCapacity", 0), "PoolState": state}
        self._rewrite_pool(row, pool)

    def warm_pool(self, group: str) -> tuple[dict[str, Any] | None, list[Instance]]:
        row = self._group(group)
        pool = (row.choices or {}).get("warm_pool")
        infra = self.store.infrastructure(row.infrastructure_id)
        members = [n for n in infra.nodes if n.warm and n.group_name == GROUP and n.state != NodeState.TERMINATED]
        lifecycle = {NodeState.STOPPED: "Warmed:Stopped", NodeState.READY: "Warmed:Running"}
        return pool, [Instance(id=f"i-{n.id}", group=row.name, cloud=n.provider, instance_type=None,
                               launch_configuration=row.launch_configuration,
                               lifecycle=lifecycle.get(NodeState(n.state), "Warmed:Pending"),
                               health="Healthy" if n.state in lifecycle else "Unhealthy" if n.state in (
                                   NodeState.FAILED, NodeState.DEAD) else "Healthy",
                               node=n.name, address=n.address, protected=bool(n.protected)) for n in members]

    def delete_warm_pool(self, group: str) -> None:
        row = self._group(group)
        if not (row.choices or {}).get("warm_pool"):
            raise AwsError("ValidationError", f"No warm pool found for Auto Scaling group {group}")
        self._rewrite_pool(row, None)

    def _rewrite_pool(self, row: GroupRow, pool: dict[str, Any] | None) -> None:
        choices = {k: v for k, v in (row.choices or {}).items() if k != "warm_pool"}
        self._save_parts(row, choices={**choices, "warm_pool": pool} if pool is not None else choices)
