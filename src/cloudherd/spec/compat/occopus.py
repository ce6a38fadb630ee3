"""Occopus infrastructure descriptions and node definitions as native specs.

A node of the description is a group: its ``type`` names a node definition (``'node_def:<type>'``: a
list of alternative implementations, one chosen by the node's ``filter``), whose ``resource`` says
where it runs and whose ``contextualisation`` how it is set up.  A cloud-init ``context_template``
becomes a script (its ``write_files`` and ``runcmd``) run over SSH, Jinja-templated as Occopus' were,
so ``{{ getip('store') }}`` and ``{{ variables.x }}`` keep working; ``dependencies`` become
``depends_on``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from cloudherd.errors import SpecError
from cloudherd.spec.compat import Converted, dotted, line_of, plain

RESOURCES = {"local": "local", "ec2": "aws"}  # resource type → cloudherd provider type
TOP_KEYS = {"infra_name", "user_id", "name", "nodes", "dependencies", "variables"}
NODE_KEYS = {"name", "type", "scaling", "filter", "variables"}


def convert(tree: Any, display: str, node_defs: Mapping[str, Any], defs_display: str = "node definitions"
            ) -> Converted:
    data = plain(tree)

    def fail(message: str, *path: str | int) -> SpecError:
        return SpecError(display, line_of(tree, *path), dotted(path), message)

    for key in data:
        if key not in TOP_KEYS and not str(key).startswith("node_def:"):
            raise fail(f"unknown key (Occopus' are: {', '.join(sorted(TOP_KEYS))})", key)
    name = str(data.get("infra_name") or data.get("name") or "")
    if not name:
        raise fail("infra_name is required", "infra_name")
    nodes = data.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise fail("nodes: a list of {name, type} is required", "nodes")
    inline_defs = {k: v for k, v in data.items() if str(k).startswith("node_def:")}  # a description may carry them
    defs = {**node_defs, **inline_defs}
    out: dict[str, Any] = {"name": _native_name(name), "groups": {}, "providers": {}}
    converted = Converted(out, {"name": line_of(tree, "infra_name") or 1, "groups": line_of(tree, "nodes") or 1})
    if data.get("variables"):
        out["variables"] = dict(data["variables"])
    if data.get("user_id"):
        converted.notes.append(f"user_id {data['user_id']}: recorded as the tag occopus-user")
    for index, node in enumerate(nodes):
        where = ("nodes", index)
        if not isinstance(node, dict) or not node.get("name") or not node.get("type"):
            raise fail("a node is {name, type} (and optionally scaling, filter, variables)", *where)
        for key in node:
            if key not in NODE_KEYS:
                raise fail(f"unknown node key (Occopus' are: {', '.join(sorted(NODE_KEYS))})", *where, key)
        group_name = _native_name(str(node["name"]))
        def here(message: str, *path: str | int, where: tuple[str, int] = where) -> SpecError:
            return fail(message, *where, *path)

        implementation = _choose(defs, node, here, defs_display)
        group = _group(implementation, node, group_name, out, converted, here)
        if data.get("user_id"):
            group.setdefault("tags", {})["occopus-user"] = str(data["user_id"])
        if node.get("variables"):
            out.setdefault("variables", {}).update(dict(node["variables"]))
        out["groups"][group_name] = group
        converted.lines[f"groups.{group_name}"] = line_of(tree, *where) or 1
        converted.lines[f"groups.{group_name}.count"] = line_of(tree, *where, "scaling") or line_of(tree, *where) or 1
    for index, pair in enumerate(data.get("dependencies") or []):
        dependent, dependee = _dependency(pair, lambda m, index=index: fail(m, "dependencies", index))
        for end in (dependent, dependee):
            if end not in out["groups"]:
                raise fail(f"no node named {end} (nodes: {', '.join(sorted(out['groups']))})", "dependencies", index)
        out["groups"][dependent].setdefault("depends_on", []).append(dependee)
        converted.lines[f"groups.{dependent}.depends_on"] = line_of(tree, "dependencies", index) or 1
    if not out["providers"]:
        del out["providers"]
    return converted


def _native_name(name: str) -> str:
    """Occopus names (``my_node``) as cloudherd names (``my-node``)."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "node"


def _choose(defs: Mapping[str, Any], node: Mapping[str, Any], fail: Any, defs_display: str) -> Mapping[str, Any]:
    key = f"node_def:{node['type']}"
    implementations = defs.get(key)
    if implementations is None:
        known = ", ".join(sorted(k.partition(":")[2] for k in defs)) or "none: import them with `cloudherd import`"
        raise fail(f"no node definition for type {node['type']} (in {defs_display}: {known})", "type")
    if isinstance(implementations, dict):
        implementations = [implementations]
    wanted = node.get("filter") or {}
    for implementation in implementations:
        resource = implementation.get("resource") or {}
        if all(implementation.get(k) == v or resource.get(k) == v for k, v in wanted.items()):
            return implementation
    raise fail(f"no implementation of {node['type']} matches the filter {wanted}", "filter")


def _group(implementation: Mapping[str, Any], node: Mapping[str, Any], group_name: str, out: dict[str, Any],
           converted: Converted, fail: Any) -> dict[str, Any]:
    resource = dict(implementation.get("resource") or {})
    kind = str(resource.get("type", ""))
    if kind not in RESOURCES:
        raise fail(f"resource type '{kind}' has no driver in cloudherd (resource types: "
                   f"{', '.join(sorted(RESOURCES))}; clouds without one: use a native spec with `libcloud`)", "type")
    group: dict[str, Any] = {"provider": RESOURCES[kind]}
    if kind == "ec2":
        provider_name = f"ec2-{group_name}"
        settings: dict[str, Any] = {"type": "aws"}
        if resource.get("regionname"):
            settings["region"] = resource["regionname"]
        out["providers"][provider_name] = settings
        group["provider"] = provider_name
        if resource.get("image_id"):
            group["image"] = resource["image_id"]
        if resource.get("instance_type"):
            group["size"] = resource["instance_type"]
    scaling = node.get("scaling") or {}
    if scaling:
        low, high = scaling.get("min"), scaling.get("max")
        if low is not None:
            group["min"] = low
        if high is not None:
            group["max"] = high
        group["count"] = low if low is not None else 1
    context = implementation.get("contextualisation") or {}
    if context:
        group["scripts"] = [{"name": "contextualisation.sh", "content": cloud_config_script(context, fail)}]
    health = implementation.get("health_check") or {}
    if health:
        check: dict[str, Any] = {}
        if health.get("ports"):
            check["ports"] = list(health["ports"])
        if health.get("urls"):
            check["urls"] = list(health["urls"])
        if health.get("timeout"):
            check["timeout"] = health["timeout"]
        if check:
            group["health"] = check
    return group


def cloud_config_script(context: Mapping[str, Any], fail: Any) -> str:
    kind = context.get("type")
    if kind != "cloudinit":
        raise fail(f"contextualisation type '{kind}' is not supported (supported: cloudinit)", "type")
    template = str(context.get("context_template") or "")
    from cloudherd.spec.yamlsafe import parse_yaml

    try:
        config = plain(parse_yaml(template, "context_template")) or {}
    except SpecError as exc:
        raise fail(f"context_template is not cloud-config YAML: {exc.message}", "type") from None
    if not isinstance(config, dict):
        raise fail("context_template is not a cloud-config mapping", "type")
    lines = ["#!/bin/sh", "# cloud-init's write_files and runcmd, converted from an Occopus node definition", "set -e"]
    for entry in config.get("write_files") or []:
        path = str(entry.get("path", ""))
        if not path:
            continue
        marker = "CLOUDHERD_EOF"
        lines += [f"mkdir -p {shlex.quote(path.rsplit('/', 1)[0] or '/')}" if "/" in path else ":",
                  f"cat > {shlex.quote(path)} <<'{marker}'", str(entry.get("content", "")).rstrip("\n"), marker]
        if entry.get("permissions"):
            lines.append(f"chmod {shlex.quote(str(entry['permissions']))} {shlex.quote(path)}")
    for command in config.get("runcmd") or []:
        lines.append(command if isinstance(command, str) else " ".join(shlex.quote(str(c)) for c in command))
    return "\n".join(lines) + "\n"


def _dependency(pair: Any, fail: Any) -> tuple[str, str]:
    """``[dependent, dependee]`` or ``{connection: [dependent, dependee]}``, ends given by name or as nodes."""
    if isinstance(pair, dict) and "connection" in pair:
        pair = pair["connection"]
    if not isinstance(pair, list) or len(pair) != 2:
        raise fail("a dependency is [dependent, dependee] or {connection: [dependent, dependee]}")
    ends = [end.get("name") if isinstance(end, dict) else end for end in pair]
    if not all(isinstance(e, str) and e for e in ends):
        raise fail("each end of a dependency is a node (or its name)")
    return _native_name(str(ends[0])), _native_name(str(ends[1]))


def node_definitions(tree: Any, display: str) -> dict[str, Any]:
    """The ``'node_def:<type>'`` entries of a node definition file, checked for their shape."""
    data = plain(tree)
    if not isinstance(data, dict) or not data:
        raise SpecError(display, 1, "", "a node definition file maps 'node_def:<type>' to implementations")
    for key, value in data.items():
        if not str(key).startswith("node_def:") or not str(key).partition(":")[2]:
            raise SpecError(display, line_of(tree, key), str(key), "keys are 'node_def:<type>'")
        implementations = value if isinstance(value, list) else [value]
        for index, implementation in enumerate(implementations):
            if not isinstance(implementation, dict) or not isinstance(implementation.get("resource"), dict):
                raise SpecError(display, line_of(tree, key, index) or line_of(tree, key), f"{key}[{index}]",
                                "an implementation has a resource: {type: …}")
            kind = implementation["resource"].get("type")
            if kind not in RESOURCES:
                raise SpecError(display, line_of(tree, key, index) or line_of(tree, key), f"{key}[{index}].resource",
                                f"resource type '{kind}' has no driver in cloudherd (resource types: "
                                f"{', '.join(sorted(RESOURCES))})")
    return data
