"""The AWS Auto Scaling model (Phantom's way) over cloudherd's own: what the Query API face calls.

An Auto Scaling group is an infrastructure of one node group, made from a generated spec and attached, so
that the manager keeps it at its desired size: level-based, like every other infrastructure.  Phantom's
conventions hold.  Launch configurations called ``name@cloud`` that share ``name`` are one template with an
entry per cloud (a provider the server offers).  A group's clouds and their caps come from its ``clouds``
tag (``hotel:1,sierra:2``) when it has one, else from ``AvailabilityZones``, else from its launch
configuration's cloud; they become the group's placement, filled in that order (n-preserving).

Every action checks all it was given first (names, sizes against the server's ceiling, tags, the group's
generated spec) and then writes, in one transaction: a refused call leaves nothing behind.  What a user
writes reaches the generated spec as literal text (``$`` escaped, so that ``${VAR}`` names nothing of the
server's environment; user data always inline, never a path to a file on the server).

Errors are :class:`AwsError` with AWS's codes; the face renders them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from cloudherd.api import phantom
from cloudherd.api.autoscaling_hooks import HookActions, spec_hooks
from cloudherd.api.autoscaling_instances import InstanceActions, instance_lifecycle, termination_of
from cloudherd.api.autoscaling_mixed import (
    CHOICE,
    distribution_note,
    shown_distribution,
    spec_market,
    with_distribution,
)
from cloudherd.api.autoscaling_notify import NotifyActions
from cloudherd.api.autoscaling_policies import PolicyActions, spec_policies
from cloudherd.api.autoscaling_refresh import RefreshActions
from cloudherd.api.autoscaling_values import (
    CLOUDS_TAG,
    GROUP,
    MAX_FIELD,
    MAX_TAG_KEY,
    MAX_USER_DATA,
    NOT_XML,
    AwsError,
    Instance,
    LaunchConfig,
    ScalingGroupView,
    Tag,
    _by_group,
    _cap,
    _check_name,
    _check_sizes,
    _check_tag,
    _check_text,
    _check_zones,
    _decode_user_data,
    _field_of,
    _infra_name,
    _last_of_each,
    _literal,
    _split,
    _tag_key_ok,
    too_big,
    xml_refusal,
)
from cloudherd.api.autoscaling_warm import WarmPoolActions, spec_pool
from cloudherd.errors import SpecError
from cloudherd.inputs import GROUP_SIZE_LIMIT
from cloudherd.lifecycle import AWS_PROCESS_NAMES, NodeState
from cloudherd.paths import data_dir, private_dir
from cloudherd.state.models import Event as EventRow
from cloudherd.state.models import Infrastructure as InfraRow
from cloudherd.state.models import LaunchConfiguration as LaunchRow
from cloudherd.state.models import Node as NodeRow
from cloudherd.state.models import ScaleRequest as ScaleRow
from cloudherd.state.models import ScalingGroup as GroupRow
from cloudherd.state.repo import Store

__all__ = ["CLOUDS_TAG", "GROUP", "NOT_XML", "AutoScaling", "AwsError", "Instance", "LaunchConfig", "ScalingGroupView",
           "Tag", "too_big", "xml_refusal"]


@dataclass
class AutoScaling(PolicyActions, InstanceActions, HookActions, WarmPoolActions, RefreshActions, NotifyActions):
    """One caller's view: ``owner`` is the user, ``offered`` the server's providers (name → settings)."""

    store: Store
    owner: str
    offered: Mapping[str, Mapping[str, Any]]
    poke: Callable[[str | None], None] = lambda infra_id: None
    start_down: Callable[[str], None] = lambda infra_id: None
    ceiling: int = GROUP_SIZE_LIMIT  # the most instances a group may have (server.yml's max_group_size)

    # -- launch configurations ---------------------------------------------------------------------------

    def create_launch_configuration(self, name: str, image: str, instance_type: str | None,
                                    user_data: str | None = None, key_name: str | None = None,
                                    security_groups: Sequence[str] = ()) -> None:
        _check_name(name, "LaunchConfigurationName")
        if not image:
            raise AwsError("ValidationError", "ImageId is required")
        for field, value in (("ImageId", image), ("InstanceType", instance_type), ("KeyName", key_name),
                             *((f"SecurityGroups.member.{i}", g) for i, g in enumerate(security_groups, 1))):
            _check_text(field, value, MAX_FIELD)
        _check_text("UserData", user_data, MAX_USER_DATA)
        template, cloud = _split(name)
        if cloud is not None and cloud not in self.offered:
            raise AwsError("ValidationError", f"cloud '{cloud}' of {name} is not offered by this server "
                                              f"(offered: {', '.join(sorted(self.offered)) or 'none'})")
        decoded = _decode_user_data(user_data) if user_data else None
        row = self.store.add_launch_configuration(
            owner_id=self.owner, name=name, template=template, cloud=cloud, image=image,
            instance_type=instance_type, user_data=decoded,
            settings={"key_name": key_name, "security_groups": list(security_groups)})
        if row is None:
            raise AwsError("AlreadyExists", f"Launch Configuration by this name already exists - A launch "
                                            f"configuration already exists with the name {name}")

    def launch_configurations(self, names: Sequence[str] = ()) -> list[LaunchConfig]:
        return [_launch(r) for r in self.store.launch_configurations(self.owner, names)]

    def delete_launch_configuration(self, name: str) -> None:
        if not self.store.launch_configurations(self.owner, [name]):
            raise AwsError("ValidationError", f"Launch configuration name not found - {name}")
        # a group being deleted no longer needs it: its teardown runs from the spec it was made from
        users = [g.name for g in self.store.scaling_groups(self.owner)
                 if g.launch_configuration == name and not g.status]
        if users:
            raise AwsError("ResourceInUse", f"Cannot delete launch configuration {name} because it is attached "
                                            f"to AutoScalingGroup {users[0]}")
        self.store.delete_launch_configuration(self.owner, name)

    # -- groups ---------------------------------------------------------------------------------------

    async def create_group(self, name: str, launch_configuration: str, min_size: int, max_size: int,
                           desired: int | None, zones: Sequence[str], tags: Sequence[Tag],
                           choices: Mapping[str, Any] | None = None) -> None:
        """``choices``: TerminationPolicies and NewInstancesProtectedFromScaleIn (``termination``, ``protect_new``),
        MixedInstancesPolicy's InstancesDistribution (``distribution``: :mod:`.autoscaling_mixed`)."""
        from cloudherd.engine.locks import BusyError

        _check_name(name, "AutoScalingGroupName")
        self._check_ceiling(MinSize=min_size, MaxSize=max_size, DesiredCapacity=desired)
        launch = self._launch(launch_configuration)
        desired = min_size if desired is None else desired
        _check_sizes(min_size, max_size, desired)
        _check_zones(zones)
        for tag in tags:
            _check_tag(tag)
        if self.store.scaling_groups(self.owner, [name]):
            raise AwsError("AlreadyExists", f"AutoScalingGroup by this name already exists - A group with the "
                                            f"name {name} already exists")
        tag_list = [{"key": t.key, "value": t.value, "propagate": t.propagate} for t in _last_of_each(tags)]
        note = distribution_note(name, choices or {})
        choices = with_distribution({}, choices or {})
        text = self._checked_spec(name, launch, min_size, max_size, desired, list(zones), tag_list, choices=choices)
        try:
            infra_id = await _submit(self.store, _infra_name(self.owner, name), text, self.owner)
        except BusyError as exc:
            raise AwsError("ScalingActivityInProgress", str(exc)) from None
        try:
            with self.store.session() as s, s.begin():
                s.add(GroupRow(owner_id=self.owner, name=name, infrastructure_id=infra_id,
                               launch_configuration=launch_configuration, min_size=min_size, max_size=max_size,
                               zones={"list": list(zones)}, tags={"list": tag_list}, choices=choices or None))
                s.execute(update(InfraRow).where(InfraRow.id == infra_id).values(attached=True))
                s.add(EventRow(infrastructure_id=infra_id, kind="attach",
                               message=f"Auto Scaling group {name}: kept at {desired} by the manager"))
                if note:
                    s.add(EventRow(infrastructure_id=infra_id, kind="market", message=note))
        except IntegrityError:  # created meanwhile by a concurrent request: undo ours
            self.start_down(infra_id)
            raise AwsError("AlreadyExists", f"AutoScalingGroup by this name already exists - {name}") from None
        self.poke(infra_id)

    def groups(self, names: Sequence[str] = ()) -> list[ScalingGroupView]:
        rows = self.store.scaling_groups(self.owner, names)
        ids = [r.infrastructure_id for r in rows]
        infras = self.store.infrastructures_with_parts(ids)
        pending = self.store.pending_scale_requests_of(ids)
        return [_view(r, infras[r.infrastructure_id], pending.get(r.infrastructure_id, [])) for r in rows
                if r.infrastructure_id in infras]

    def update_group(self, name: str, *, launch_configuration: str | None = None, min_size: int | None = None,
                     max_size: int | None = None, desired: int | None = None,
                     zones: Sequence[str] | None = None, tags: list[dict[str, Any]] | None = None,
                     choices: Mapping[str, Any] | None = None) -> None:
        """UpdateAutoScalingGroup; ``tags`` (all of the group's) written in the same transaction, when given;
        ``choices``: the termination policies, new instances' protection or instances distribution given (the others
        are kept)."""
        self._check_ceiling(MinSize=min_size, MaxSize=max_size, DesiredCapacity=desired)
        row = self._group(name)
        view = self._view(row)
        min_size = view.min_size if min_size is None else min_size
        max_size = view.max_size if max_size is None else max_size
        if desired is None:  # AWS brings the desired size within new bounds
            desired = min(max(view.desired, min_size), max_size)
        _check_sizes(min_size, max_size, desired)
        launch_name = launch_configuration or row.launch_configuration
        launch = self._launch(launch_name)
        _check_zones(zones or ())
        zone_list = list(zones) if zones is not None else list(row.zones.get("list") or [])
        tag_list = list(row.tags.get("list") or []) if tags is None else tags
        kept = with_distribution(row.choices or {}, choices or {})
        text = self._checked_spec(row.name, launch, min_size, max_size, desired, zone_list, tag_list, choices=kept)
        self._write(row, text, desired if desired != view.desired else None, launch_configuration=launch_name,
                    min_size=min_size, max_size=max_size, zones={"list": zone_list}, tags={"list": tag_list},
                    choices=kept or None)
        note = distribution_note(row.name, choices or {})
        if note:
            self.store.add_event(row.infrastructure_id, "market", note)

    def set_desired(self, name: str, desired: int) -> None:
        self._check_ceiling(DesiredCapacity=desired)
        row = self._group(name)
        if phantom.is_domain(row.tags.get("list") or []):  # the n-preserving value: min and max move with it
            tags = phantom.with_minimum(row.tags.get("list") or [], desired)
            self.update_group(name, min_size=desired, max_size=desired, desired=desired, tags=tags)
            return
        if not row.min_size <= desired <= row.max_size:
            raise AwsError("ValidationError", f"New SetDesiredCapacity value {desired} is below min value "
                                              f"{row.min_size} for the AutoScalingGroup." if desired < row.min_size
                           else f"New SetDesiredCapacity value {desired} is above max value {row.max_size} for "
                                f"the AutoScalingGroup.")
        caps = next((t["value"] for t in row.tags.get("list") or [] if t["key"] == CLOUDS_TAG), None)
        if caps:
            limits = [_cap(part)[1] for part in caps.split(",") if part.strip()]
            if all(n is not None for n in limits) and desired > sum(n or 0 for n in limits):
                raise AwsError("ValidationError", f"desired capacity {desired} is more than the clouds' caps allow "
                                                  f"({caps})")
        # the size alone: a durable scale request (the manager's next pass applies it); the spec is unchanged
        self.store.add_scale_request(row.infrastructure_id, GROUP, "set", desired)
        self.poke(row.infrastructure_id)

    def delete_group(self, name: str, *, force: bool) -> None:
        row = self._group(name)
        if row.status:
            return  # already going
        view = self._view(row)
        if not force and not phantom.is_domain(row.tags.get("list") or []) and (view.desired or view.instances):
            raise AwsError("ResourceInUse", "You cannot delete an AutoScalingGroup while there are instances or "
                                            "pending Spot instance request(s) still in the group.")
        with self.store.session() as s, s.begin():
            s.execute(update(GroupRow).where(GroupRow.id == row.id).values(status="Delete in progress"))
            s.execute(update(InfraRow).where(InfraRow.id == row.infrastructure_id).values(attached=False))
            s.add(EventRow(infrastructure_id=row.infrastructure_id, kind="detach",
                           message=f"Auto Scaling group {name}: being deleted"))
        self.start_down(row.infrastructure_id)

    def forget_group(self, infra_id: str) -> None:
        """After the teardown of a deleted group: its name is free again."""
        for row in self.store.scaling_groups(self.owner):
            if row.infrastructure_id == infra_id:
                self.store.delete_scaling_group(row.id)

    # -- instances and tags -----------------------------------------------------------------------------

    def instances(self, ids: Sequence[str] = ()) -> list[Instance]:
        found = [i for g in self.groups() for i in g.instances]
        return [i for i in found if not ids or i.id in ids]

    def terminate_instance(self, instance_id: str, *, decrement: bool) -> Instance:
        for group in self.groups():
            for instance in group.instances:
                if instance.id == instance_id:
                    node_id = instance_id.removeprefix("i-")
                    if decrement:
                        row = self._group(group.name)
                        if group.desired - 1 < row.min_size:
                            raise AwsError("ValidationError", f"Currently, desiredSize equals minSize "
                                                              f"({row.min_size}). Terminating instance without "
                                                              "replacement will violate group's min size constraint. "
                                                              "Either set shouldDecrementDesiredCapacity flag to "
                                                              "false or lower group's min size.")
                        self.store.add_scale_request(group.infrastructure, GROUP, "remove", 1, [node_id])
                    else:
                        self.store.add_scale_request(group.infrastructure, GROUP, "replace", 0, [node_id])
                    self.poke(group.infrastructure)
                    return instance.model_copy(update={"lifecycle": "Terminating"})
        raise AwsError("ValidationError", f"Instance Id not found - No managed instance found for instance ID "
                                          f"{instance_id}")

    def put_tags(self, tags: Sequence[Tag]) -> None:
        for tag in tags:
            _check_tag(tag)

        def changed(row: GroupRow, batch: list[Tag]) -> list[dict[str, Any]]:
            kept = {t["key"]: t for t in row.tags.get("list") or []}
            for tag in batch:
                kept[tag.key] = {"key": tag.key, "value": tag.value, "propagate": tag.propagate}
            return list(kept.values())

        self._retag(tags, changed)

    def delete_tags(self, tags: Sequence[Tag]) -> None:
        for tag in tags:
            _check_text("Tags.Key", tag.key, MAX_TAG_KEY)

        def changed(row: GroupRow, batch: list[Tag]) -> list[dict[str, Any]]:
            gone = {t.key for t in batch}
            return [t for t in row.tags.get("list") or [] if t["key"] not in gone]

        self._retag(tags, changed)

    def _retag(self, tags: Sequence[Tag], changed: Callable[[GroupRow, list[Tag]], list[dict[str, Any]]]) -> None:
        """Every group's new tags checked (with the spec they make) before any is written; then all in one go."""
        writes = []
        for name, batch in _by_group(tags).items():
            row = self._group(name)
            view = self._view(row)
            tag_list = changed(row, batch)
            text = self._checked_spec(row.name, self._launch(row.launch_configuration), row.min_size, row.max_size,
                                      view.desired, list(row.zones.get("list") or []), tag_list)
            writes.append((row, text, tag_list))
        with self.store.session() as s, s.begin():
            for row, text, tag_list in writes:
                s.execute(update(GroupRow).where(GroupRow.id == row.id).values(tags={"list": tag_list}))
                s.execute(update(InfraRow).where(InfraRow.id == row.infrastructure_id).values(spec_text=text))
        for row, _, _ in writes:
            self.poke(row.infrastructure_id)

    def tags(self, groups: Sequence[str] = (), keys: Sequence[str] = (), values: Sequence[str] = ()) -> list[Tag]:
        found = [t for g in self.groups() for t in g.tags]
        return [t for t in found if (not groups or t.group in groups) and (not keys or t.key in keys)
                and (not values or t.value in values)]

    # -- helpers --------------------------------------------------------------------------------------

    def _launch(self, name: str) -> LaunchRow:
        rows = self.store.launch_configurations(self.owner, [name])
        if not rows:
            raise AwsError("ValidationError", f"Launch configuration name not found - {name}")
        return rows[0]

    def _group(self, name: str) -> GroupRow:
        rows = self.store.scaling_groups(self.owner, [name])
        if not rows:
            raise AwsError("ValidationError", f"AutoScalingGroup name not found - AutoScalingGroup '{name}' not found")
        return rows[0]

    def _write(self, row: GroupRow, text: str, desired: int | None, **fields: Any) -> None:
        """The group's new settings, its spec (checked already) and, when given, its new desired size: one
        transaction."""
        with self.store.session() as s, s.begin():
            s.execute(update(GroupRow).where(GroupRow.id == row.id).values(**fields))
            s.execute(update(InfraRow).where(InfraRow.id == row.infrastructure_id).values(spec_text=text))
            if desired is not None:
                s.add(ScaleRow(infrastructure_id=row.infrastructure_id, group_name=GROUP, kind="set", amount=desired,
                               victims={"nodes": []}))
        self.poke(row.infrastructure_id)

    def _check_ceiling(self, **sizes: int | None) -> None:
        for field, value in sizes.items():
            if value is not None and value > self.ceiling:
                raise AwsError("ValidationError", too_big(field, value, self.ceiling))

    def _checked_spec(self, name: str, launch: LaunchRow, min_size: int, max_size: int, desired: int,
                      zones: list[str], tags: list[dict[str, Any]], policies: Mapping[str, Any] | None = None,
                      schedules: Mapping[str, Any] | None = None, choices: Mapping[str, Any] | None = None) -> str:
        """The group's spec, made and loaded as the manager will load it: what it refuses is refused now,
        before anything is written.  ``policies``, ``schedules``: the group's new ones (else the ones it has)."""
        from cloudherd.spec.loader import load_spec_text

        stored = self.store.scaling_groups(self.owner, [name])
        if policies is None:
            policies = next((r.policies or {} for r in stored), {})
        if schedules is None:
            schedules = next((r.schedules or {} for r in stored), {})
        if choices is None:
            choices = next((r.choices or {} for r in stored), {})
        text = self._spec_text(name, launch, min_size, max_size, desired, zones, tags, policies, schedules, choices)
        try:
            load_spec_text(text, _spec_path(_infra_name(self.owner, name)))
        except SpecError as exc:
            raise AwsError("ValidationError", f"{_field_of(exc.path)}: {exc.message}") from None
        return text

    def _clouds(self, launch: LaunchRow, zones: list[str], tags: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
        caps = next((t["value"] for t in tags if t["key"] == CLOUDS_TAG), None)
        clouds: list[tuple[str, int | None]]
        if caps:
            clouds = [_cap(part) for part in caps.split(",") if part.strip()]
        elif zones and all(z in self.offered for z in zones):
            clouds = [(z, None) for z in zones]
        elif launch.cloud is not None:
            clouds = [(launch.cloud, None)]
        elif len(self.offered) == 1:
            clouds = [(next(iter(self.offered)), None)]
        else:
            raise AwsError("ValidationError", f"say which clouds the group uses: a '{CLOUDS_TAG}' tag "
                                              "(e.g. hotel:1,sierra:2), AvailabilityZones naming offered clouds "
                                              f"({', '.join(sorted(self.offered))}), or a launch configuration "
                                              "named name@cloud")
        for cloud, _ in clouds:
            if cloud not in self.offered:
                raise AwsError("ValidationError", f"cloud '{cloud}' is not offered by this server "
                                                  f"(offered: {', '.join(sorted(self.offered)) or 'none'})")
        return clouds

    def _spec_text(self, name: str, launch: LaunchRow, min_size: int, max_size: int, desired: int,
                   zones: list[str], tags: list[dict[str, Any]], policies: Mapping[str, Any],
                   schedules: Mapping[str, Any], choices: Mapping[str, Any]) -> str:
        clouds = self._clouds(launch, zones, tags)
        room = sum(cap for _, cap in clouds if cap is not None)
        if all(cap is not None for _, cap in clouds) and desired > room:
            raise AwsError("ValidationError", f"desired capacity {desired} is more than the clouds' caps allow "
                                              f"({room}: {', '.join(f'{c}:{n}' for c, n in clouds)})")
        entries = {r.cloud: r for r in self.store.template_entries(self.owner, launch.template)}
        placement = []
        for cloud, cap in clouds:
            entry = entries.get(cloud, launch)
            place: dict[str, Any] = {"provider": cloud, "image": _literal(entry.image)}
            if entry.instance_type:
                place["size"] = _literal(entry.instance_type)
            if cap is not None:
                place["max"] = cap
            placement.append(place)
        group: dict[str, Any] = {
            "provider": clouds[0][0], "image": _literal(launch.image), "count": desired, "min": min_size,
            "max": max_size, "placement": placement, "policy": "best_effort",
            "tags": {t["key"]: _literal(t["value"]) for t in tags if t["propagate"] and _tag_key_ok(t["key"])},
        }
        if launch.instance_type:
            group["size"] = _literal(launch.instance_type)
        scaling = {key: value for key, value in (("policies", spec_policies(policies)),
                                                  ("schedules", list(schedules.values())),
                                                  ("termination", termination_of(choices.get("termination") or [])),
                                                  ("protect_new", bool(choices.get("protect_new")))) if value}
        if choices.get("hooks"):
            group["hooks"] = spec_hooks(choices["hooks"])
        if choices.get("warm_pool"):
            group["warm_pool"] = spec_pool(choices["warm_pool"], max_size)
        if choices.get("update"):
            group["update"] = dict(choices["update"])
        if choices.get(CHOICE) is not None:
            group["market"] = spec_market(choices[CHOICE], max_size)
        if choices.get("refresh_marker"):  # an instance refresh's release: every instance behind it
            group["variables"] = {"instance_refresh": choices["refresh_marker"]}
        if scaling:
            group["scaling"] = scaling
        if launch.user_data:  # always inline: one line without a newline would be read as a file's path
            text = launch.user_data if "\n" in launch.user_data else launch.user_data + "\n"
            group["user_data"] = _literal(text)
        spec = {"name": _infra_name(self.owner, name),
                "providers": {c: dict(self.offered[c]) for c, _ in clouds},
                "groups": {GROUP: group}}
        return json.dumps(spec, indent=2) + "\n"  # JSON is YAML: the stored spec is readable as both

    def _view(self, row: GroupRow) -> ScalingGroupView:
        infra_id = row.infrastructure_id
        return _view(row, self.store.infrastructure(infra_id), self.store.pending_scale_requests(infra_id))


def _view(row: GroupRow, infra: InfraRow, pending: Sequence[ScaleRow]) -> ScalingGroupView:
    count = next((g.count for g in infra.groups if g.name == GROUP), 0)
    sets = [r for r in pending if r.kind == "set"]
    desired = sets[-1].amount if sets else count
    instances = tuple(_instance(n, row) for n in infra.nodes if n.state != NodeState.TERMINATED and not n.warm)
    tags = tuple(Tag(group=row.name, key=t["key"], value=t["value"], propagate=bool(t["propagate"]))
                 for t in row.tags.get("list") or [])
    zones = tuple(row.zones.get("list") or []) or tuple(sorted({i.cloud for i in instances}))
    held = next((g.suspended or {} for g in infra.groups if g.name == GROUP), {})
    aws_name = {process.value: name for name, process in AWS_PROCESS_NAMES.items()}
    choices = row.choices or {}
    return ScalingGroupView(name=row.name, infrastructure=infra.id, launch_configuration=row.launch_configuration,
                            min_size=row.min_size, max_size=row.max_size, desired=desired, zones=zones,
                            instances=instances, tags=tags, status=row.status, created_at=row.created_at,
                            suspended=tuple((aws_name.get(p, p), str(why)) for p, why in held.items()),
                            termination=tuple(choices.get("termination") or ["Default"]),
                            new_protected=bool(choices.get("protect_new")),
                            distribution=shown_distribution(choices.get(CHOICE)))


_LIFECYCLE = {
    NodeState.PENDING: "Pending", NodeState.CREATING: "Pending", NodeState.BOOTING: "Pending",
    NodeState.DEPLOYING: "Pending", NodeState.READY: "InService", NodeState.UNHEALTHY: "InService",
    NodeState.FAILED: "InService", NodeState.STOPPED: "InService", NodeState.DEAD: "InService",
    NodeState.TERMINATING: "Terminating", NodeState.WAITING: "Pending:Wait", NodeState.DRAINING: "Terminating:Wait",
}


def _instance(node: NodeRow, group: GroupRow) -> Instance:
    state = NodeState(node.state)
    sick = state in (NodeState.FAILED, NodeState.DEAD, NodeState.STOPPED) or node.health == "unhealthy"
    lifecycle = instance_lifecycle(state, node.standby) or _LIFECYCLE.get(state, "Pending")
    return Instance(id=f"i-{node.id}", group=group.name, cloud=node.provider, instance_type=None,
                    launch_configuration=group.launch_configuration, lifecycle=lifecycle,
                    health="Unhealthy" if sick else "Healthy", node=node.name, address=node.address,
                    protected=bool(node.protected))


def _launch(row: LaunchRow) -> LaunchConfig:
    settings = row.settings or {}
    user_data = base64.b64encode(row.user_data.encode()).decode() if row.user_data else None
    return LaunchConfig(name=row.name, image=row.image, instance_type=row.instance_type, user_data=user_data,
                        key_name=settings.get("key_name"), security_groups=tuple(settings.get("security_groups") or ()),
                        created_at=row.created_at)


async def _submit(store: Store, infra_name: str, text: str, owner: str) -> str:
    """Record the group's infrastructure from its generated spec (the manager makes it)."""
    from cloudherd.engine.apply import submit
    from cloudherd.spec.loader import load_spec_text

    path = _spec_path(infra_name)
    path.write_text(text)
    return await submit(load_spec_text(text, path), store, wait=5.0, owner_id=owner)


def _spec_path(infra_name: str) -> Path:
    return private_dir(data_dir() / "server" / "autoscaling") / f"{infra_name}.yml"
