"""The Auto Scaling API's lifecycle hooks over cloudherd's own (:mod:`cloudherd.engine.hooks`): PutLifecycleHook,
DescribeLifecycleHooks, DeleteLifecycleHook, CompleteLifecycleAction, RecordLifecycleActionHeartbeat and
DescribeLifecycleHookTypes.  Mixed into :class:`cloudherd.api.autoscaling.AutoScaling`.

A hook is kept with its group in AWS's words (with its notification metadata, shown back) and written into the
group's spec as one of its ``hooks``; the manager holds the group's nodes by it.  This server sends no
notification (it has no SNS or SQS): a hook is completed by CompleteLifecycleAction, or by its timeout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from cloudherd.api.autoscaling_base import GroupParts
from cloudherd.api.autoscaling_values import AwsError, _check_name
from cloudherd.state.models import HookWait
from cloudherd.state.models import ScalingGroup as GroupRow
from cloudherd.times import utcnow

TRANSITIONS = {"autoscaling:EC2_INSTANCE_LAUNCHING": "launch", "autoscaling:EC2_INSTANCE_TERMINATING": "terminate"}
RESULTS = ("CONTINUE", "ABANDON")
GLOBAL_TIMEOUT = 172800  # AWS: a hold ends after 100 heartbeat timeouts or 48 hours, whichever is shorter


def spec_hooks(hooks: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The kept hooks as the group's spec has them."""
    return [{"name": name, "on": TRANSITIONS[h["LifecycleTransition"]], "timeout": f"{h['HeartbeatTimeout']}s",
             "default": h["DefaultResult"].lower()} for name, h in hooks.items()]


def _read_hook(fields: Mapping[str, str | None], before: Mapping[str, Any] | None) -> dict[str, Any]:
    """PutLifecycleHook's fields, checked, over the hook's earlier ones (an update keeps what it does not give)."""
    kept = dict(before or {})
    transition = fields.get("LifecycleTransition") or kept.get("LifecycleTransition")
    if transition not in TRANSITIONS:
        raise AwsError("ValidationError", f"LifecycleTransition {transition!r}: one of {', '.join(TRANSITIONS)}")
    raw = fields.get("HeartbeatTimeout")
    timeout = kept.get("HeartbeatTimeout", 3600)
    if raw:
        if not raw.isascii() or not raw.isdigit() or not 30 <= int(raw) <= 7200:
            raise AwsError("ValidationError", f"HeartbeatTimeout {raw!r}: a whole number of seconds from 30 to 7200")
        timeout = int(raw)
    default = (fields.get("DefaultResult") or kept.get("DefaultResult") or "ABANDON").upper()
    if default not in RESULTS:
        raise AwsError("ValidationError", f"DefaultResult {default!r}: CONTINUE or ABANDON")
    metadata = fields.get("NotificationMetadata", kept.get("NotificationMetadata"))
    return {"LifecycleTransition": transition, "HeartbeatTimeout": timeout, "DefaultResult": default,
            "NotificationMetadata": metadata, "NotificationTargetARN": fields.get("NotificationTargetARN")
            or kept.get("NotificationTargetARN"), "RoleARN": fields.get("RoleARN") or kept.get("RoleARN")}


class HookActions(GroupParts):
    """Lifecycle hooks of a group: kept in AWS's words, written into its spec, their holds completed or kept alive."""

    def put_hook(self, group: str, name: str, fields: Mapping[str, str | None]) -> None:
        _check_name(name, "LifecycleHookName")
        row = self._group(group)
        choices = dict(row.choices or {})
        hooks = dict(choices.get("hooks") or {})
        hooks[name] = _read_hook(fields, hooks.get(name))
        self._save_parts(row, choices={**choices, "hooks": hooks})

    def hooks(self, group: str, names: Sequence[str] = ()) -> list[tuple[str, dict[str, Any]]]:
        row = self._group(group)
        kept = (row.choices or {}).get("hooks") or {}
        return [(name, hook) for name, hook in kept.items() if not names or name in names]

    def delete_hook(self, group: str, name: str) -> None:
        row = self._group(group)
        choices = dict(row.choices or {})
        hooks = dict(choices.get("hooks") or {})
        if name not in hooks:
            raise AwsError("ValidationError", f"No Lifecycle Hook found for name '{name}' in group '{group}'")
        del hooks[name]
        self._save_parts(row, choices={**choices, "hooks": hooks})

    def complete_action(self, group: str, name: str, result: str, instance_id: str | None,
                        token: str | None) -> None:
        if result not in RESULTS:
            raise AwsError("ValidationError", f"LifecycleActionResult {result!r}: CONTINUE or ABANDON")
        row = self._group(group)
        wait = self._hold(row, name, instance_id, token)
        self.store.complete_wait(wait.id, result, f"CompleteLifecycleAction ({self.owner})",
                                 f"i-{wait.node_id}: {wait.transition} hook {name}: {result} (CompleteLifecycleAction)")
        self.poke(row.infrastructure_id)

    def heartbeat(self, group: str, name: str, instance_id: str | None, token: str | None) -> None:
        row = self._group(group)
        wait = self._hold(row, name, instance_id, token)
        timeout = ((row.choices or {}).get("hooks") or {}).get(name, {}).get("HeartbeatTimeout", 3600)
        if utcnow() - wait.started_at > timedelta(seconds=min(100 * timeout, GLOBAL_TIMEOUT)):
            raise AwsError("ValidationError", f"the lifecycle action of {name} is past its global timeout")
        self.store.extend_wait(wait.id, utcnow() + timedelta(seconds=timeout))

    def _hold(self, row: GroupRow, name: str, instance_id: str | None, token: str | None) -> HookWait:
        if not instance_id and not token:
            raise AwsError("ValidationError", "give InstanceId or LifecycleActionToken")
        for wait in self.store.hook_waits(row.infrastructure_id):
            if wait.hook == name and (f"i-{wait.node_id}" == instance_id or wait.token == token):
                return wait
        which = f"instance ID {instance_id}" if instance_id else f"token {token}"
        raise AwsError("ValidationError", f"No active Lifecycle Action found with {which}")
