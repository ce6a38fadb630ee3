"""Occopus' ``resource`` sections as cloudherd provider entries and group keys.

Every key of a resource either maps, or is refused with the keys that do (nothing is dropped in
silence).  Resources that differ in where they go (endpoint, region, credentials, key pair, network)
get provider entries of their own; alike ones share one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from cloudherd.spec.compat import occopus_auth

Fail = Callable[..., Exception]

# resource type → (cloudherd provider type, the keys read)
RESOURCES: dict[str, tuple[str, frozenset[str]]] = {
    "local": ("local", frozenset({"type", "name"})),
    "ec2": ("aws", frozenset({"type", "name", "endpoint", "regionname", "image_id", "instance_type", "key_name",
                              "security_group_ids", "subnet_id", "tags"})),
    "nova": ("libcloud", frozenset({"type", "name", "endpoint", "project_id", "user_domain_name", "image_id",
                                    "flavor_name", "network_id", "key_name", "security_groups", "floating_ip",
                                    "floating_ip_pool", "server_name", "region"})),
}


def group_of(resource: Mapping[str, Any], group_name: str, providers: dict[str, Any], fail: Fail,
             warn: Callable[[str, str], None]) -> dict[str, Any]:
    """The group keys of ``resource``; its provider entry is added to ``providers`` (shared when alike)."""
    kind = str(resource.get("type", ""))
    if kind not in RESOURCES:
        raise fail(f"resource type '{kind}' has no driver in cloudherd (resource types: "
                   f"{', '.join(sorted(RESOURCES))}; other clouds: a native spec with `libcloud`)", "resource", "type")
    provider_type, known = RESOURCES[kind]
    for key in resource:
        if key not in known:
            raise fail(f"the {kind} resource key '{key}' is not read by cloudherd (it reads: "
                       f"{', '.join(sorted(known))})", "resource", key)
    if kind == "local":
        return {"provider": "local"}
    group: dict[str, Any] = {}
    settings: dict[str, Any] = {"type": provider_type}
    if kind == "ec2":
        _ec2(resource, settings, group, fail)
    else:
        _nova(resource, settings, group, fail, warn)
    credentials = occopus_auth.credentials_for(resource)
    if kind == "ec2" and credentials:
        if not {"accesskey", "secretkey"} <= set(credentials):
            raise fail("the auth-data entry for this resource has no accesskey and secretkey", "resource")
        settings["access_key_id_env"] = credentials["accesskey"]
        settings["secret_access_key_env"] = credentials["secretkey"]
    elif kind == "nova":
        _nova_credentials(settings, credentials, fail)
    group["provider"] = _entry(providers, str(resource.get("name") or kind), settings)
    return group


def _copy(resource: Mapping[str, Any], into: dict[str, Any], names: Mapping[str, str]) -> None:
    """The resource's keys that are given, as text, under their cloudherd names."""
    for key, name in names.items():
        if resource.get(key):
            into[name] = str(resource[key])


def _listed(resource: Mapping[str, Any], key: str, what: str, fail: Fail) -> list[str] | None:
    value = resource.get(key)
    if not value:
        return None
    if not isinstance(value, list):
        raise fail(f"{key}: a list of {what}", "resource", key)
    return [str(v) for v in value]


def _ec2(resource: Mapping[str, Any], settings: dict[str, Any], group: dict[str, Any], fail: Fail) -> None:
    _copy(resource, settings, {"endpoint": "endpoint_url", "regionname": "region", "key_name": "key_name",
                               "subnet_id": "subnet_id"})
    groups = _listed(resource, "security_group_ids", "security group ids", fail)
    if groups:
        settings["security_group_ids"] = groups
    _copy(resource, group, {"image_id": "image", "instance_type": "size"})
    tags = resource.get("tags")
    if tags:
        if not isinstance(tags, Mapping):
            raise fail("tags: a mapping of tag names to values", "resource", "tags")
        group["tags"] = {str(k): str(v) for k, v in tags.items()}


def _nova(resource: Mapping[str, Any], settings: dict[str, Any], group: dict[str, Any], fail: Fail,
          warn: Callable[[str, str], None]) -> None:
    """Through libcloud's OpenStack driver (nova 2.x, keystone v3 with a password or an application
    credential)."""
    settings.update({"driver": "openstack", "api_version": "2.0", "tagging": "metadata"})
    if not resource.get("endpoint"):
        raise fail("a nova resource needs its endpoint (the keystone URL)", "resource")
    settings["ex_force_auth_url"] = str(resource["endpoint"]).rstrip("/")
    _copy(resource, settings, {"project_id": "project_id", "user_domain_name": "ex_domain_name",
                               "region": "ex_force_service_region"})
    options: dict[str, Any] = {}
    if resource.get("network_id"):
        options["networks"] = [str(resource["network_id"])]
    _copy(resource, options, {"key_name": "ex_keyname"})
    groups = _listed(resource, "security_groups", "security group names", fail)
    if groups:
        options["ex_security_groups"] = groups
    if options:
        settings["create_options"] = options
    if resource.get("floating_ip") or resource.get("floating_ip_pool"):
        warn("resource.floating_ip", "no floating IP is attached: cloudherd reaches the servers at the "
             "addresses the network gives them (attach one in the cloud if the network is not reachable)")
    if resource.get("server_name"):
        warn("resource.server_name", "not used: cloudherd names each server <infrastructure>-<node>-<n>, which "
             "it finds it by")
    _copy(resource, group, {"image_id": "image", "flavor_name": "size"})


def _nova_credentials(settings: dict[str, Any], credentials: Mapping[str, str], fail: Fail) -> None:
    """Occopus' nova auth data: ``username`` / ``password``, or ``type: application_credential`` with ``id`` /
    ``secret`` (a VOMS proxy has no libcloud equivalent)."""
    if not credentials:
        return
    if "proxy" in credentials:
        raise fail("VOMS proxy authentication (auth_data type voms) has no equivalent in libcloud's OpenStack "
                   "driver: use a password or an application credential", "resource")
    if "id" in credentials and "secret" in credentials:
        settings["ex_force_auth_version"] = "3.x_appcred"
        settings["key_env"], settings["secret_env"] = credentials["id"], credentials["secret"]
    elif "username" in credentials and "password" in credentials:
        settings["ex_force_auth_version"] = "3.x_password"
        settings["key_env"], settings["secret_env"] = credentials["username"], credentials["password"]
    else:
        raise fail("the auth-data entry for this nova resource has neither username/password nor an "
                   "application credential (type: application_credential, id, secret)", "resource")


def _entry(providers: dict[str, Any], wanted: str, settings: dict[str, Any]) -> str:
    """The name of a provider entry with ``settings``: an alike one, else a new one (named after the
    resource's ``name``, numbered when taken)."""
    for name, existing in providers.items():
        if json.dumps(existing, sort_keys=True) == json.dumps(settings, sort_keys=True):
            return name
    base = re.sub(r"[^a-z0-9-]+", "-", wanted.lower()).strip("-") or "cloud"
    name, number = base, 1
    while name in providers:
        number += 1
        name = f"{base}-{number}"
    providers[name] = settings
    return name
