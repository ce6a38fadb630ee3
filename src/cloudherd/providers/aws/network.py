"""Security groups: each (infra, group) gets ``cloudherd-<infra>-<group>``, open on TCP 22 and the group's ports
(see the package notes); made by ``open_ports`` / ``create``, deleted once no instance uses it."""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cloudherd.providers.aws.api import FILTER_BATCH, LIVE_STATES, Ec2Api
from cloudherd.providers.base import (
    TAG_GROUP,
    TAG_INFRA,
    InvalidRequestError,
    NotFoundError,
    PortsHandle,
    ProviderError,
)
from cloudherd.providers.toolkit import SSH_PORT, check_ports

log = logging.getLogger(__name__)

DEFAULT_CLEANUP_WAIT = 120.0
CLEANUP_POLL = 5.0
GROUP_PREFIX = "cloudherd-"
TAG_MANAGED = "cloudherd:managed"  # on the security groups cloudherd made (and may delete)
_GROUP_NAME_BAD = re.compile(r"[^A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]")


class Ec2Network(Ec2Api):
    """The VPC and subnet instances go to, and the security groups of their groups."""

    def __init__(self, name: str = "aws", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self.cleanup_wait = self._number("security_group_cleanup_wait", DEFAULT_CLEANUP_WAIT, minimum=0.0)
        allow = self.settings.get("allow_from") or ["0.0.0.0/0"]
        self.allow_from = [str(c) for c in ([allow] if isinstance(allow, str) else allow)]
        self._network_ids: tuple[str, str | None] | None = None

    def supports(self, capability: str) -> bool:
        if capability == "ports":
            return bool(self.settings.get("manage_security_group", True))
        return super().supports(capability)

    async def open_ports(self, group_tags: Mapping[str, str], ports: Sequence[int]) -> PortsHandle:
        """The group's security group, made when missing, open on TCP 22 and ``ports`` (see the package notes)."""
        wanted = check_ports(ports, "aws")
        group_id, _made = await self._security_group(group_tags, wanted)
        return PortsHandle(group_id, _group_name(group_tags), "security-group", _group_tags(group_tags),
                           tuple(sorted({SSH_PORT, *wanted})))

    async def close_ports(self, group_tags: Mapping[str, str]) -> None:
        """Delete the group's security group once no instance uses it (waiting a while for shutting-down
        ones); one still used by live instances stays."""
        vpc, _subnet = await self._network()
        found = await self._pages("describe_security_groups", "SecurityGroups", Filters=[
            {"Name": "group-name", "Values": [_group_name(group_tags)]}, {"Name": "vpc-id", "Values": [vpc]},
            {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}])
        if found:
            await self._cleanup_groups([str(g["GroupId"]) for g in found])

    async def list_ports(self, tags: Mapping[str, str]) -> builtins.list[PortsHandle]:
        filters = [{"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}]
        filters += [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
        found = await self._pages("describe_security_groups", "SecurityGroups", Filters=filters)
        handles = []
        for group in found:
            group_tags = {t["Key"]: t["Value"] for t in group.get("Tags", []) or []}
            ports = sorted({int(p["FromPort"]) for p in group.get("IpPermissions", []) if "FromPort" in p})
            handles.append(PortsHandle(str(group["GroupId"]), str(group.get("GroupName", "")), "security-group",
                                       _group_tags(group_tags), tuple(ports)))
        return sorted(handles, key=lambda h: h.name)

    def _subnet_setting(self) -> str | None:
        subnet = self.settings.get("subnet_id") or self.settings.get("subnet")
        return str(subnet) if subnet else None

    async def _network(self) -> tuple[str, str | None]:
        """(VPC id, subnet id or None for EC2's default subnet): the subnet's, the ``vpc`` or the default VPC."""
        if self._network_ids is not None:
            return self._network_ids
        subnet = self._subnet_setting()
        vpc = str(self.settings.get("vpc") or self.settings.get("vpc_id") or "") or None
        if subnet:
            found = (await self._call("describe_subnets", SubnetIds=[subnet])).get("Subnets", [])
            if not found:
                raise NotFoundError(f"aws: subnet {subnet} not found in {self.region}")
            if vpc and found[0]["VpcId"] != vpc:
                raise InvalidRequestError(f"aws: subnet {subnet} is not in the VPC {vpc}")
            vpc = str(found[0]["VpcId"])
        elif vpc:  # a VPC but no subnet: EC2 needs one, take its default-for-zone or first subnet
            subnets = (await self._call("describe_subnets", Filters=[{"Name": "vpc-id", "Values": [vpc]}])
                       ).get("Subnets", [])
            if not subnets:
                raise InvalidRequestError(f"aws: the VPC {vpc} has no subnet in {self.region}; set 'subnet'")
            best = min(subnets, key=lambda s: (not s.get("DefaultForAz"), s.get("AvailabilityZone", ""),
                                               s["SubnetId"]))
            subnet = str(best["SubnetId"])
        else:
            vpcs = (await self._call("describe_vpcs", Filters=[{"Name": "is-default", "Values": ["true"]}])
                    ).get("Vpcs", [])
            if not vpcs:
                raise InvalidRequestError(f"aws: no default VPC in {self.region}; set 'vpc' or 'subnet'")
            vpc = str(vpcs[0]["VpcId"])
        self._network_ids = (vpc, subnet)
        return self._network_ids

    async def _security_group(self, tags: Mapping[str, str], ports: Sequence[int]) -> tuple[str, bool]:
        """Find or make the group of (infra, group) and open SSH and ``ports`` on it: (group id, made now)."""
        name = _group_name(tags)
        vpc, _subnet = await self._network()
        lookup = [{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}]
        found = (await self._call("describe_security_groups", Filters=lookup)).get("SecurityGroups", [])
        made = False
        if found:
            group = found[0]
        else:
            group_tags = {**tags, "Name": name, TAG_MANAGED: "true"}
            try:
                created = await self._call(
                    "create_security_group", GroupName=name, VpcId=vpc,
                    Description=f"cloudherd: SSH and the listed ports of {name[len(GROUP_PREFIX):]}"[:255],
                    TagSpecifications=[{"ResourceType": "security-group",
                                        "Tags": [{"Key": k, "Value": v} for k, v in group_tags.items()]}])
                group, made = {"GroupId": created["GroupId"], "IpPermissions": []}, True
            except InvalidRequestError as exc:  # made meanwhile by another create
                if exc.code != "InvalidGroup.Duplicate":
                    raise
                group = (await self._call("describe_security_groups", Filters=lookup))["SecurityGroups"][0]
        group_id = str(group["GroupId"])
        missing = [(port, cidr) for port in sorted({SSH_PORT, *ports}) for cidr in self.allow_from
                   if not _allows(group.get("IpPermissions", []), port, cidr)]
        if missing:
            await self._authorize(group_id, missing)
        return group_id, made

    async def _authorize(self, group_id: str, rules: Sequence[tuple[int, str]]) -> None:
        try:
            await self._call("authorize_security_group_ingress", GroupId=group_id,
                             IpPermissions=[_permission(port, cidr) for port, cidr in rules])
        except InvalidRequestError as exc:  # one rule appeared meanwhile: add the others one by one
            if exc.code != "InvalidPermission.Duplicate":
                raise
            for port, cidr in rules:
                try:
                    await self._call("authorize_security_group_ingress", GroupId=group_id,
                                     IpPermissions=[_permission(port, cidr)])
                except InvalidRequestError as again:
                    if again.code != "InvalidPermission.Duplicate":
                        raise

    async def _managed_groups_of(self, ids: Sequence[str]) -> builtins.list[str]:
        """The cloudherd-made security groups the instances ``ids`` are in."""
        candidates: set[str] = set()
        for start in range(0, len(ids), FILTER_BATCH):
            batch = list(ids[start:start + FILTER_BATCH])
            items = await self._instances(Filters=[{"Name": "instance-id", "Values": batch}], MaxResults=1000)
            candidates |= {g["GroupId"] for i in items for g in i.get("SecurityGroups", [])
                           if str(g.get("GroupName", "")).startswith(GROUP_PREFIX)}
        if not candidates:
            return []
        groups = await self._pages("describe_security_groups", "SecurityGroups", Filters=[
            {"Name": "group-id", "Values": sorted(candidates)}, {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}])
        return sorted(str(g["GroupId"]) for g in groups)

    async def _cleanup_groups(self, group_ids: Sequence[str]) -> None:
        """Delete the groups no instance uses any more; wait a while for shutting-down ones.  Best effort."""
        deadline = time.monotonic() + self.cleanup_wait
        waiting = list(group_ids)
        try:
            while waiting:
                users = await self._instances(Filters=[
                    {"Name": "instance.group-id", "Values": waiting},
                    {"Name": "instance-state-name", "Values": [*LIVE_STATES, "shutting-down"]}], MaxResults=1000)
                live = {g["GroupId"] for i in users if i.get("State", {}).get("Name") in LIVE_STATES
                        for g in i.get("SecurityGroups", [])}
                leaving = {g["GroupId"] for i in users for g in i.get("SecurityGroups", [])} - live
                free = [g for g in waiting if g not in live and g not in leaving]
                busy = await self._delete_groups(free)  # still attached for a moment after the instances went
                waiting = [g for g in waiting if g in leaving or g in busy]
                if waiting and time.monotonic() + CLEANUP_POLL > deadline:
                    log.warning("aws: security groups %s still in use after %.0fs; left in place",
                                ", ".join(waiting), self.cleanup_wait)
                    return
                if waiting:
                    await asyncio.sleep(CLEANUP_POLL)
        except ProviderError as exc:
            log.warning("aws: could not clean up security groups %s: %s", ", ".join(waiting), exc)

    async def _delete_groups(self, group_ids: Sequence[str]) -> builtins.list[str]:
        """Delete each group (best effort): the ones still in use (DependencyViolation)."""
        busy: list[str] = []
        for group_id in group_ids:
            try:
                await self._call("delete_security_group", GroupId=group_id)
            except ProviderError as exc:
                if exc.code == "DependencyViolation":
                    busy.append(group_id)
                elif exc.code != "InvalidGroup.NotFound":
                    log.warning("aws: could not delete the security group %s: %s", group_id, exc)
        return busy


def _group_name(tags: Mapping[str, str]) -> str:
    """``cloudherd-<infra>-<group>`` in the characters EC2 allows in a VPC security group name."""
    parts = [tags.get(TAG_INFRA) or "", tags.get(TAG_GROUP) or ""]
    name = GROUP_PREFIX + "-".join(p for p in parts if p) if any(parts) else GROUP_PREFIX + "default"
    return _GROUP_NAME_BAD.sub("-", name)[:255]


def _group_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The tags that name a group: infra and group."""
    return {k: str(tags[k]) for k in (TAG_INFRA, TAG_GROUP) if k in tags}


def _permission(port: int, cidr: str) -> dict[str, Any]:
    permission: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
    if ":" in cidr:
        permission["Ipv6Ranges"] = [{"CidrIpv6": cidr, "Description": "cloudherd"}]
    else:
        permission["IpRanges"] = [{"CidrIp": cidr, "Description": "cloudherd"}]
    return permission


def _allows(permissions: Iterable[dict[str, Any]], port: int, cidr: str) -> bool:
    """Whether an ingress rule already lets ``cidr`` reach TCP ``port``."""
    for perm in permissions:
        protocol = str(perm.get("IpProtocol", ""))
        if protocol == "-1":
            in_range = True
        elif protocol in ("tcp", "6"):
            in_range = int(perm.get("FromPort", -1)) <= port <= int(perm.get("ToPort", -1))
        else:
            continue
        cidrs = {r.get("CidrIp") for r in perm.get("IpRanges", [])} | {r.get("CidrIpv6") for r in
                                                                         perm.get("Ipv6Ranges", [])}
        if in_range and cidr in cidrs:
            return True
    return False
