"""The Auto Scaling API's calls on instances and processes, over cloudherd's own (:mod:`.client_choices`' rules):
SetInstanceProtection, EnterStandby, ExitStandby, SetInstanceHealth, AttachInstances, DetachInstances,
SuspendProcesses, ResumeProcesses, DescribeScalingActivities, and the ``Describe*Types`` lists.  Mixed into
:class:`cloudherd.api.autoscaling.AutoScaling`.

A group's termination policies and its new instances' protection (CreateAutoScalingGroup's and
UpdateAutoScalingGroup's ``TerminationPolicies`` and ``NewInstancesProtectedFromScaleIn``) are kept with the group
in AWS's words and written into its spec in cloudherd's (:data:`TERMINATION`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cloudherd.api.autoscaling_base import GroupParts
from cloudherd.api.autoscaling_values import GROUP, AwsError, Instance, ScalingGroupView
from cloudherd.lifecycle import AWS_PROCESS_NAMES, NodeState
from cloudherd.state.models import ScalingGroup as GroupRow

# AWS's termination policies as cloudherd's (AWS's default: the oldest launch configuration, then the instance
# closest to its next billed hour; its first step, balancing zones, is what a placement's order does here)
TERMINATION: Mapping[str, list[str]] = {
    "Default": ["oldest-release", "closest-to-next-hour"], "NewestInstance": ["newest"],
    "OldestInstance": ["oldest"], "OldestLaunchConfiguration": ["oldest-release"],
    "OldestLaunchTemplate": ["oldest-release"], "ClosestToNextInstanceHour": ["closest-to-next-hour"],
}
ACTIVITY_KINDS = frozenset({"scale", "scale-out", "scale-in", "scheduled", "standby", "protection", "processes",
                            "placement", "circuit-breaker", "membership", "market"})
ACTIVITY_NAMESPACE = uuid.UUID("6f1d6c2e-5a0b-4c55-9a55-2f0c6b1e7d10")  # activity ids: one per event, stable


@dataclass(frozen=True)
class Activity:
    """A scaling activity as DescribeScalingActivities shows it: an event of the group's."""

    id: str
    group: str
    description: str
    cause: str
    at: datetime


def termination_of(names: Sequence[str]) -> list[str]:
    """AWS's termination policy names, checked, as the spec's list."""
    unknown = [n for n in names if n not in TERMINATION]
    if unknown:
        raise AwsError("ValidationError", f"TerminationPolicies: {unknown[0]!r} is not served (one of "
                                          f"{', '.join(TERMINATION)})")
    return list(dict.fromkeys(p for n in names or ["Default"] for p in TERMINATION[n]))


def aws_processes(names: Sequence[str]) -> list[str]:
    """ScalingProcesses as cloudherd's process names (every one when none is given)."""
    unknown = [n for n in names if n not in AWS_PROCESS_NAMES]
    if unknown:
        raise AwsError("ValidationError", f"Process {unknown[0]!r} is not a valid scaling process (one of "
                                          f"{', '.join(AWS_PROCESS_NAMES)})")
    return [AWS_PROCESS_NAMES[n].value for n in names or AWS_PROCESS_NAMES]


class InstanceActions(GroupParts):
    """A group's instances and processes: protection, standby, health, suspensions, activities."""

    def groups(self, names: Sequence[str] = ()) -> list[ScalingGroupView]:  # pragma: no cover - AutoScaling's
        raise NotImplementedError

    def set_protection(self, group: str, instance_ids: Sequence[str], protected: bool) -> None:
        row = self._group(group)
        found = self._members(row, instance_ids)
        word = "protected from scale-in" if protected else "no longer protected from scale-in"
        self.store.set_protection(row.infrastructure_id, [i.id.removeprefix("i-") for i in found], protected,
                                  f"{', '.join(i.node for i in found)}: {word} (SetInstanceProtection)")

    def enter_standby(self, group: str, instance_ids: Sequence[str], decrement: bool) -> list[Instance]:
        row = self._group(group)
        view = self._view(row)
        found = self._members(row, instance_ids, view)
        for instance in found:
            if instance.lifecycle != "InService":
                raise AwsError("ValidationError", f"The instance {instance.id} is not in InService.")
        if decrement and view.desired - len(found) < row.min_size:
            raise AwsError("ValidationError", f"AutoScalingGroup {group} has min-size={row.min_size}, max-size="
                                              f"{row.max_size}, and desired-size={view.desired}. Moving "
                                              f"{len(found)} instance(s) to standby with decrement would violate "
                                              "the min-size constraint.")
        self.store.set_standby(row.infrastructure_id, GROUP, [i.id.removeprefix("i-") for i in found], True,
                               ("remove", len(found)) if decrement else None,
                               f"{GROUP}: {', '.join(i.node for i in found)} into standby (EnterStandby)")
        self.poke(row.infrastructure_id)
        return [i.model_copy(update={"lifecycle": "EnteringStandby"}) for i in found]

    def exit_standby(self, group: str, instance_ids: Sequence[str]) -> list[Instance]:
        row = self._group(group)
        view = self._view(row)
        found = self._members(row, instance_ids, view)
        for instance in found:
            if instance.lifecycle != "Standby":
                raise AwsError("ValidationError", f"The instance {instance.id} is not in Standby.")
        if view.desired + len(found) > row.max_size:
            raise AwsError("ValidationError", f"AutoScalingGroup {group} has max-size={row.max_size} and desired-"
                                              f"size={view.desired}. Moving {len(found)} instance(s) out of "
                                              "standby would violate the max-size constraint.")
        self.store.set_standby(row.infrastructure_id, GROUP, [i.id.removeprefix("i-") for i in found], False,
                               ("add", len(found)),
                               f"{GROUP}: {', '.join(i.node for i in found)} back in service (ExitStandby)")
        self.poke(row.infrastructure_id)
        return [i.model_copy(update={"lifecycle": "Pending"}) for i in found]

    def set_health(self, instance_id: str, healthy: bool) -> None:
        """Unhealthy: the instance is replaced (its group's size kept), as AWS does; Healthy changes nothing
        cloudherd's own checks do not confirm."""
        for group in self.groups():
            instance = next((i for i in group.instances if i.id == instance_id), None)
            if instance is None:
                continue
            if not healthy:
                self.store.add_scale_request(group.infrastructure, GROUP, "replace", 0, [instance_id[2:]])
                self.store.add_event(group.infrastructure, "health",
                                     f"{instance.node}: set Unhealthy (SetInstanceHealth): replaced")
                self.poke(group.infrastructure)
            return
        raise AwsError("ValidationError", f"Instance Id not found - No managed instance found for instance ID "
                                          f"{instance_id}")

    def detach(self, group: str, instance_ids: Sequence[str], decrement: bool) -> list[Instance]:
        """The instances out of the group, their machines kept running (the pass does it: :mod:`.membership`);
        without ``decrement`` new ones are launched in their place."""
        from cloudherd.engine.membership import DETACH

        row = self._group(group)
        view = self._view(row)
        found = self._members(row, instance_ids, view)
        counted = sum(1 for i in found if i.lifecycle != "Standby")
        if decrement and view.desired - counted < row.min_size:
            raise AwsError("ValidationError", f"AutoScalingGroup {group} has min-size={row.min_size}, max-size="
                                              f"{row.max_size}, and desired-size={view.desired}. Detaching "
                                              f"{len(found)} instance(s) with decrement would violate the min-size "
                                              "constraint.")
        self.store.add_scale_request(row.infrastructure_id, GROUP, DETACH, counted if decrement else 0,
                                     [i.id.removeprefix("i-") for i in found])
        self.poke(row.infrastructure_id)
        return [i.model_copy(update={"lifecycle": "Detaching"}) for i in found]

    def attach(self, group: str, instance_ids: Sequence[str]) -> None:
        """Running instances into the group: one detached before (by its id, kept) or a machine of the group's
        provider that no group holds; the desired capacity grows by as many."""
        from cloudherd.engine.membership import ATTACH

        row = self._group(group)
        view = self._view(row)
        if not instance_ids:
            raise AwsError("ValidationError", "InstanceIds names at least one instance")
        provider = next(g.provider for g in self.store.infrastructure(row.infrastructure_id).groups if g.name == GROUP)
        members = {i.id for g in self.groups() for i in g.instances}
        wanted = list(dict.fromkeys(instance_ids))
        machines = []
        for instance_id in wanted:  # only what the caller detached: a server's other machines are not theirs
            before = self.store.detached_node(instance_id.removeprefix("i-"), self.owner)
            if before is None and instance_id not in members:
                raise AwsError("ValidationError", f"Invalid Instance ID(s): [{instance_id}] specified: only an "
                                                  "instance detached from one of your groups can be attached")
            machines.append(before.provider_id or instance_id if before is not None else instance_id)
        held = self.store.machine_holders(provider, machines)
        taken = [i for i, m in zip(wanted, machines, strict=True) if i in members or m in held]
        if taken:
            raise AwsError("ValidationError", f"The instance {taken[0]} is already part of an Auto Scaling group.")
        if view.desired + len(machines) > row.max_size:
            raise AwsError("ValidationError", f"AutoScalingGroup {group} has max-size={row.max_size} and desired-"
                                              f"size={view.desired}. Attaching {len(machines)} instance(s) would "
                                              "violate the max-size constraint.")
        self.store.add_scale_request(row.infrastructure_id, GROUP, ATTACH, len(machines), machines=machines)
        self.poke(row.infrastructure_id)

    def _members(self, row: GroupRow, instance_ids: Sequence[str],
                 view: ScalingGroupView | None = None) -> list[Instance]:
        if not instance_ids:
            raise AwsError("ValidationError", "InstanceIds names at least one instance")
        by_id = {i.id: i for i in (view or self._view(row)).instances}
        missing = [i for i in instance_ids if i not in by_id]
        if missing:
            raise AwsError("ValidationError", f"The instance {missing[0]} is not part of Auto Scaling group "
                                              f"{row.name}.")
        return [by_id[i] for i in dict.fromkeys(instance_ids)]

    # -- processes and activities ------------------------------------------------------------------

    def suspend_processes(self, group: str, names: Sequence[str]) -> None:
        row = self._group(group)
        chosen = aws_processes(names)
        now = {**self._suspended(row), **{p: "User suspended at " + _now() for p in chosen}}
        self.store.set_suspended(row.infrastructure_id, GROUP, now,
                                 f"{GROUP}: suspended {', '.join(chosen)} (SuspendProcesses)")

    def resume_processes(self, group: str, names: Sequence[str]) -> None:
        row = self._group(group)
        chosen = set(aws_processes(names))
        held = self._suspended(row)
        self.store.set_suspended(row.infrastructure_id, GROUP, {p: w for p, w in held.items() if p not in chosen},
                                 f"{GROUP}: resumed {', '.join(p for p in held if p in chosen) or 'nothing'} "
                                 "(ResumeProcesses)")
        self.poke(row.infrastructure_id)

    def _suspended(self, row: GroupRow) -> dict[str, Any]:
        infra = self.store.infrastructure(row.infrastructure_id)
        return dict(next((g.suspended or {} for g in infra.groups if g.name == GROUP), {}))

    def activities(self, group: str | None, limit: int) -> list[Activity]:
        """The newest ``limit`` scaling activities, newest first, of one group or of all the caller's."""
        rows = [self._group(group)] if group else self.store.scaling_groups(self.owner)
        found = []
        for row in rows:
            events = self.store.events(row.infrastructure_id)
            by_id = {e.id: e for e in events}
            for event in events:
                if event.kind in ACTIVITY_KINDS:
                    found.append(Activity(str(uuid.uuid5(ACTIVITY_NAMESPACE, f"{row.infrastructure_id}/{event.id}")),
                                          row.name, _description(event.kind, event.message),
                                          _cause(event, by_id.get(event.cause_id or 0)), event.at))
        return sorted(found, key=lambda a: a.at, reverse=True)[:limit]


def _cause(event: Any, parent: Any) -> str:
    """An activity's Cause: what happened, and what it followed from (a policy's decision, a request)."""
    return f"{event.message}, in response to: {parent.message}" if parent is not None else str(event.message)


def _description(kind: str, message: str) -> str:
    return {"scale-out": "Launching instances", "scale-in": "Terminating instances",
            "standby": "Moving instances to or from standby", "scheduled": "Running a scheduled action",
            "processes": "Suspending or resuming processes", "protection": "Changing instance protection",
            "membership": "Attaching or detaching instances",
            "market": "Choosing the market instances are bought on (spot or on-demand)",
            }.get(kind, f"Changing the group's capacity: {message.split(':', 1)[-1].strip()}")


def _now() -> str:
    from cloudherd.times import utcnow

    return utcnow().strftime("%Y-%m-%d %H:%M:%S UTC")


def instance_lifecycle(state: NodeState, standby: bool) -> str | None:
    """A node in standby is AWS's ``Standby`` (None: as its state says)."""
    return "Standby" if standby and state not in (NodeState.TERMINATING, NodeState.TERMINATED) else None
