"""Firewall rules: each (infra, group) gets ``cloudherd-<infra>-<group>`` in the network, its name the target
tag of the group's instances (see the package notes); the network interface instances are made with."""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cloudherd.providers.base import TAG_GROUP, TAG_INFRA, NotFoundError, PortsHandle, has_tags
from cloudherd.providers.gce.api import CONCURRENCY, GceApi
from cloudherd.providers.gce.labels import instance_name
from cloudherd.providers.toolkit import SSH_PORT, check_ports, gather_all

RULE_PREFIX = "cloudherd-"
RULE_MARK = "cloudherd ports of "  # starts the description of the firewall rules cloudherd made


class GceNetwork(GceApi):
    """The firewall rules of groups and the network instances join."""

    def supports(self, capability: str) -> bool:
        if capability == "ports":
            return bool(self.settings.get("firewall", True))
        return super().supports(capability)

    async def open_ports(self, group_tags: Mapping[str, str], ports: Sequence[int]) -> PortsHandle:
        """The group's firewall rule (see the package notes), made when missing, newly listed ports added."""
        wanted = sorted({SSH_PORT, *check_ports(ports, "gce")})
        name = rule_name(group_tags)
        own = {k: str(group_tags[k]) for k in (TAG_INFRA, TAG_GROUP) if k in group_tags}
        compute = self._compute
        deadline = time.monotonic() + self.operation_timeout

        def run() -> builtins.list[int]:
            from google.api_core import exceptions as gx

            client = self._client("FirewallsClient")
            try:
                current = client.get(project=self.project, firewall=name, timeout=self.request_timeout, retry=None)
            except gx.NotFound:
                current = None
            if current is not None:
                have = sorted({int(p) for a in current.allowed for p in a.ports if p.isdigit()})
                if set(wanted) <= set(have):
                    return have
                have = sorted({*have, *wanted})
                patch = compute.Firewall(allowed=[compute.Allowed(I_p_protocol="tcp", ports=[str(p) for p in have])])
                op = client.patch_unary(project=self.project, firewall=name, firewall_resource=patch,
                                        timeout=self.request_timeout, retry=None)
                self._wait(op, "firewalls.patch", deadline)
                return have
            rule = compute.Firewall(
                name=name, network=self._network(), direction="INGRESS", target_tags=[name],
                description=RULE_MARK + json.dumps(own, sort_keys=True),
                allowed=[compute.Allowed(I_p_protocol="tcp", ports=[str(p) for p in wanted])],
                source_ranges=[str(r) for r in self.settings.get("source_ranges") or ["0.0.0.0/0"]],
            )
            try:
                op = client.insert_unary(project=self.project, firewall_resource=rule, timeout=self.request_timeout,
                                         retry=None)
            except gx.Conflict:  # made meanwhile by another create
                return wanted
            self._wait(op, "firewalls.insert", deadline)
            return wanted

        opened = await self._run("firewalls.insert", run)
        return PortsHandle(name, name, "firewall", own, tuple(opened))

    async def close_ports(self, group_tags: Mapping[str, str]) -> None:
        """Delete the group's firewall rule once no instance carries it (a live one keeps it)."""
        await self._close_rules({rule_name(group_tags)})

    async def list_ports(self, tags: Mapping[str, str]) -> builtins.list[PortsHandle]:
        def run() -> builtins.list[Any]:
            return list(self._client("FirewallsClient").list(project=self.project, timeout=self.request_timeout,
                                                             retry=None))

        handles = []
        for rule in await self._run("firewalls.list", run):
            own = _rule_tags(rule.description or "")
            if own is None or not has_tags(own, tags):
                continue
            ports = tuple(sorted({int(p) for a in rule.allowed for p in a.ports if p.isdigit()}))
            handles.append(PortsHandle(rule.name, rule.name, "firewall", own, ports))
        return sorted(handles, key=lambda h: h.name)

    async def _close_rules(self, rules: Iterable[str]) -> None:
        listed = await self._run("instances.list", lambda: self._list_raw({}))
        used = {t for i in listed for t in (i.tags.items if i.tags else [])}
        deadline = time.monotonic() + self.operation_timeout

        def delete(name: str) -> None:
            from google.api_core import exceptions as gx

            try:
                op = self._client("FirewallsClient").delete_unary(project=self.project, firewall=name,
                                                                  timeout=self.request_timeout, retry=None)
            except gx.NotFound:
                return
            with contextlib.suppress(NotFoundError):
                self._wait(op, "firewalls.delete", deadline)

        free = sorted(set(rules) - used)
        await gather_all([functools.partial(self._run, "firewalls.delete", functools.partial(delete, name))
                          for name in free], CONCURRENCY)

    def _network(self) -> str:
        network = str(self.settings.get("network") or "default")
        return network if "/" in network else f"projects/{self.project}/global/networks/{network}"

    def _nic(self) -> Any:
        compute = self._compute
        nic = compute.NetworkInterface(network=self._network())
        subnetwork = self.settings.get("subnetwork")
        if subnetwork:
            subnetwork = str(subnetwork)
            nic.subnetwork = (subnetwork if "/" in subnetwork
                              else f"projects/{self.project}/regions/{self.region}/subnetworks/{subnetwork}")
        if self.settings.get("external_ip", True):
            nic.access_configs = [compute.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")]
        return nic


def rule_name(group_tags: Mapping[str, str]) -> str:
    """The firewall rule (and target tag) of a group: ``cloudherd-<infra>-<group>``, a valid GCE name."""
    parts = [str(group_tags.get(TAG_INFRA) or ""), str(group_tags.get(TAG_GROUP) or "")]
    return instance_name(RULE_PREFIX + ("-".join(p for p in parts if p) or "default"))


def _rule_tags(description: str) -> dict[str, str] | None:
    """The group tags a cloudherd rule's description holds; None for rules that are not cloudherd's."""
    if not description.startswith(RULE_MARK):
        return None
    try:
        found = json.loads(description[len(RULE_MARK):])
    except ValueError:
        return None
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else None
