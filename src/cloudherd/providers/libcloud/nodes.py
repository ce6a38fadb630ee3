"""Nodes as instances: how tags travel with a node (``tagging``: metadata, tags or the node's name, see the
package notes), the login user, the state, and what this provider object asked for when it made a node."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloudherd.providers.base import TAG_GROUP, TAG_INFRA, CreateRequest, Instance, InstanceState, InvalidRequestError
from cloudherd.providers.libcloud.api import LibcloudApi
from cloudherd.providers.toolkit import boot_data

NAME_PREFIX = "ch--"
NAME_SEP = "--"
STATES = {name: InstanceState(state) for state, names in {
    "running": ("running", "rebooting", "reconfiguring", "migrating", "normal", "updating"),
    "pending": ("pending", "starting", "unknown"),
    "stopped": ("stopping", "stopped", "suspended", "paused"),
    "dead": ("error",), "terminated": ("terminated",),
}.items() for name in names}


class LibcloudNodes(LibcloudApi):
    """Tags, names and login users of the nodes this driver makes, and nodes described as instances."""

    def __init__(self, name: str = "libcloud", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self._remembered: dict[str, Asked] = {}  # id -> what this object asked for when it made the node

    def _tagging(self) -> str:
        if self.tagging != "auto":
            return self.tagging
        return "metadata" if "ex_metadata" in self._create_params else "name"

    def _cloud_name(self, name: str, tags: Mapping[str, str], tagging: str) -> str:
        if tagging != "name":
            return name
        return NAME_SEP.join([NAME_PREFIX.rstrip("-"), tags.get(TAG_INFRA, ""), tags.get(TAG_GROUP, ""), name])

    def _create_kwargs(self, request: CreateRequest, tags: Mapping[str, str], tagging: str,
                       location: Any) -> tuple[dict[str, Any], str | None]:
        """``create_node``'s keyword arguments, and the login user they set up (None: the image's own)."""
        params = self._create_params
        ssh_user = self.ssh_user
        options: dict[str, Any] = {}
        if tagging == "metadata":
            options["ex_metadata"] = dict(tags)
        elif tagging == "tags":
            options["ex_tags"] = dict(tags)
        if location is not None and "location" in params:
            options["location"] = location
        key = request.ssh_public_key.strip()
        userdata = next((p for p in ("ex_userdata", "ex_user_data") if p in params), None)
        login = False
        if key:
            features = getattr(self._kind, "features", {}).get("create_node", [])
            if "ssh_key" in features and "auth" in params:
                from libcloud.compute.base import NodeAuthSSHKey

                options["auth"] = NodeAuthSSHKey(key)
            elif self.cloud_init and userdata:
                login = True
                ssh_user = request.ssh_user
        if (login or request.user_data) and userdata:
            options[userdata] = boot_data(request, f"libcloud {self.driver_name}", login=login)
        elif request.user_data:
            raise InvalidRequestError(f"libcloud {self.driver_name}: this driver's create_node takes no user data, "
                                      "so the group's cloud-config cannot go to its machines")
        options.update(self.create_options)
        if self.driver_name == "openstack":
            options = openstack_references(options)
        return options, ssh_user

    def _instance(self, node: Any) -> Instance:
        node_id = str(node.id)
        cloud_name = str(node.name or node_id)
        asked = self._remembered.get(node_id) or Asked({}, None, None)
        name, name_tags = decode_name(cloud_name)
        tags = {**name_tags, **asked.tags, **node_tags(node.extra or {})}
        state_value = str(getattr(node.state, "value", node.state) or "unknown").lower()
        public = [str(ip) for ip in (node.public_ips or []) if ip]
        private = [str(ip) for ip in (node.private_ips or []) if ip]
        public.sort(key=lambda ip: ":" in ip)  # IPv4 first
        private.sort(key=lambda ip: ":" in ip)
        extra: dict[str, Any] = {"libcloud_state": state_value, "cloud_name": cloud_name, "public_ips": public,
                 "private_ips": private, "driver": self.driver_name}
        for key in ("flavorId", "imageId", "availability_zone", "instance_type", "image_id", "zone", "region"):
            value = (node.extra or {}).get(key)
            if isinstance(value, str | int | float):
                extra[key] = value
        return Instance(
            id=node_id, name=asked.name or name,
            state=STATES.get(state_value, InstanceState.PENDING), address=next(iter(public + private), None), port=22,
            private_address=private[0] if private else None, tags=tags, ssh_user=asked.ssh_user or self.ssh_user,
            extra=extra,
        )


@dataclass(frozen=True)
class Asked:
    """What a create asked for: the tags, the name (drivers such as dummy ignore it) and the login user."""

    tags: dict[str, str]
    name: str | None
    ssh_user: str | None


def openstack_references(options: dict[str, Any]) -> dict[str, Any]:
    """``networks`` (ids) and ``ex_security_groups`` (names) written as text in ``create_options``, as the
    objects the OpenStack driver reads them from (it takes ``.id`` / ``.name`` of each)."""
    from types import SimpleNamespace

    out = dict(options)
    for key in ("networks", "ex_security_groups"):
        if isinstance(out.get(key), list):
            out[key] = [SimpleNamespace(id=str(v), name=str(v)) if isinstance(v, str) else v for v in out[key]]
    return out


def fresh_name() -> str:

    return "ch-" + secrets.token_hex(4)


def common_name(names: Sequence[str]) -> str:
    first, last = min(names), max(names)
    size = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), min(len(first), len(last)))
    prefix = first[:size].rstrip("-_.")
    return prefix if prefix and prefix not in names else fresh_name()


def decode_name(cloud_name: str) -> tuple[str, dict[str, str]]:
    """(our name, tags) of a node name; ``ch--<infra>--<group>--<name>`` carries infra and group."""
    if not cloud_name.startswith(NAME_PREFIX):
        return cloud_name, {}
    parts = cloud_name[len(NAME_PREFIX):].split(NAME_SEP, 2)
    if len(parts) != 3:
        return cloud_name, {}
    infra, group, name = parts
    tags = {}
    if infra:
        tags[TAG_INFRA] = infra
    if group:
        tags[TAG_GROUP] = group
    return name or cloud_name, tags


def node_tags(extra: Mapping[str, Any]) -> dict[str, str]:
    """Key/value tags a driver shows in ``node.extra`` (``metadata``, ``tags`` or ``labels``)."""
    found: dict[str, str] = {}
    for key in ("labels", "metadata", "tags"):  # later ones win
        value = extra.get(key)
        if isinstance(value, Mapping) and isinstance(value.get("items"), list):  # GCE metadata shape
            value = {i.get("key"): i.get("value") for i in value["items"] if isinstance(i, Mapping)}
        if isinstance(value, Mapping):
            found.update({str(k): str(v) for k, v in value.items() if k is not None and v is not None})
    return found
