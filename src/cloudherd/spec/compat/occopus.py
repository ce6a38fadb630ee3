"""Occopus infrastructure descriptions and node definitions as native specs.

A node of the description is a group: its ``type`` names a node definition (``'node_def:<type>'``: a
list of alternative implementations, one chosen by the node's ``filter``), whose ``resource`` says
where it runs (:mod:`.occopus_resources`) and whose ``contextualisation`` how it is set up.  A cloud-init
``context_template`` becomes the group's ``user_data``: first-boot data on a cloud, a script on a local
node (:mod:`cloudherd.spec.cloudinit`), Jinja-templated per node as Occopus' were, so ``{{ getip('store')
}}``, ``{{ variables.x }}`` and ``{{ infra_id }}`` keep working.  A node's ``variables`` stay the
group's; ``dependencies`` become ``depends_on``.  Every key either maps, or is a located error, or a
located warning (what loads but does not do all it said).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cloudherd.errors import SpecError
from cloudherd.spec import cloudinit
from cloudherd.spec.compat import Converted, dotted, line_of
from cloudherd.spec.compat.occopus_resources import RESOURCES, group_of
from cloudherd.spec.yamlsafe import plain

IMPLEMENTATION_KEYS = {"resource", "contextualisation", "health_check", "config_management"}
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
    out: dict[str, Any] = {"name": native_name(name), "groups": {}, "providers": {}}
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
        group_name = native_name(str(node["name"]))
        def here(message: str, *path: str | int, where: tuple[str, int] = where) -> SpecError:
            return fail(message, *where, *path)

        implementation = _choose(defs, node, here, defs_display)
        definition = f"node_def:{node['type']}"

        def there(message: str, *path: str | int, where: tuple[str, int] = where, definition: str = definition
                  ) -> SpecError:
            """A problem inside the node's definition, put at the node that uses it."""
            return fail(f"{definition}: {dotted(tuple(path))}: {message}" if path else f"{definition}: {message}",
                        *where, "type")

        def warn(key: str, message: str, where: tuple[str, int] = where, definition: str = definition) -> None:
            converted.warnings.append(fail(f"{definition}: {key}: {message}", *where, "type"))

        group = _group(implementation, node, group_name, out, there, warn)
        if data.get("user_id"):
            group.setdefault("tags", {})["occopus-user"] = str(data["user_id"])
        if node.get("variables"):
            group["variables"] = dict(node["variables"])
        out["groups"][group_name] = group
        converted.lines[f"groups.{group_name}"] = line_of(tree, *where) or 1
        converted.lines[f"groups.{group_name}.user_data"] = line_of(tree, *where, "type") or 1  # its definition's
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
    converted.data = _literal_dollars(out)
    return converted


def _literal_dollars(value: Any) -> Any:
    """Every ``$`` as ``$$``: Occopus files have no ``${VAR}``, so a shell's ``${i}`` in a cloud-config stays
    the shell's (the native spec reads ``$$`` as one ``$``)."""
    if isinstance(value, dict):
        return {k: _literal_dollars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal_dollars(v) for v in value]
    return value.replace("$", "$$") if isinstance(value, str) else value


def native_name(name: str) -> str:
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
           fail: Any, warn: Any) -> dict[str, Any]:
    for key in implementation:
        if key not in IMPLEMENTATION_KEYS:
            raise fail(f"unknown key (an implementation has: {', '.join(sorted(IMPLEMENTATION_KEYS))})", key)
    group = group_of(dict(implementation.get("resource") or {}), group_name, out["providers"], fail, warn)
    scaling = node.get("scaling") or {}
    if scaling:
        low, high = scaling.get("min"), scaling.get("max")
        if low is not None:
            group["min"] = low
        if high is not None:
            group["max"] = high
        group["count"] = low if low is not None else 1
    context = implementation.get("contextualisation") or {}
    if context or implementation.get("config_management"):
        config = cloud_config(context, fail)
        _config_management(implementation.get("config_management"), config, context.get("attributes"), fail, warn)
        group["user_data"] = cloudinit.user_data(config)
    health = _health(implementation.get("health_check") or {}, fail, warn)
    if health:
        group["health"] = health
    return group


def cloud_config(context: Mapping[str, Any], fail: Any) -> dict[str, Any]:
    """A ``contextualisation`` of type ``cloudinit``: its ``context_template`` (text, or already read by
    ``!yaml_import``) as a cloud-config mapping."""
    kind = context.get("type")
    if kind != "cloudinit":
        raise fail(f"contextualisation type '{kind}' is not supported (supported: cloudinit)", "contextualisation",
                   "type")
    for key in context:
        if key not in ("type", "context_template", "attributes"):
            raise fail("unknown key (a cloudinit contextualisation has type, context_template and attributes)",
                       "contextualisation", key)
    return cloudinit.parse(context.get("context_template") or {},
                           lambda message: fail(message, "contextualisation", "context_template"))


def _config_management(manager: Any, config: dict[str, Any], attributes: Any, fail: Any, warn: Any) -> None:
    """Occopus' chef step, as cloud-init's chef module does it at first boot: the ``run_list`` goes into
    the cloud-config's ``chef:`` section (which the tutorials' cloud-init files carry: server, validation
    key, node name), the contextualisation's ``attributes`` become its ``initial_attributes``.  Puppet and
    others have no equivalent here: refused."""
    if not manager:
        if attributes:
            raise fail("attributes are chef's node attributes: they need a chef config_management",
                       "contextualisation", "attributes")
        return
    if not isinstance(manager, Mapping) or manager.get("type") != "chef":
        kind = manager.get("type") if isinstance(manager, Mapping) else manager
        raise fail(f"config_management type '{kind}' is not run by cloudherd (chef is, through cloud-init's chef "
                   "module; for others install and run the tool in the cloud-config's runcmd)", "config_management")
    for key in manager:
        if key not in ("type", "endpoint", "run_list"):
            raise fail("unknown key (a chef config_management has type, endpoint and run_list)",
                       "config_management", key)
    chef = config.get("chef")
    if not isinstance(chef, dict):
        raise fail("config_management chef: the cloud-config has no chef: section (server_url, validation_name, "
                   "validation_key) for cloud-init's chef module to register the node with", "config_management")
    run_list = manager.get("run_list") or []
    chef["run_list"] = [*(chef.get("run_list") or []), *[str(r) for r in run_list]]
    if attributes:
        if not isinstance(attributes, Mapping):
            raise fail("attributes: a mapping of chef node attributes", "contextualisation", "attributes")
        chef["initial_attributes"] = {**(chef.get("initial_attributes") or {}), **attributes}
    if manager.get("endpoint") and not chef.get("server_url"):
        chef["server_url"] = str(manager["endpoint"])
    warn("config_management", "the run_list goes to cloud-init's chef module; the Chef environment "
         f"{chef.get('environment') or '_default'} must exist on the Chef server (Occopus made it there with "
         "its own Chef key; cloudherd does not)")


def _health(health: Mapping[str, Any], fail: Any, warn: Any) -> dict[str, Any]:
    """``ping`` → the SSH check (reaching the node, and more); ``ports``, ``urls`` (Occopus' ``{{ip}}`` is the
    node's address), ``timeout``; ``mysqldbs`` is warned about: not checked."""
    check: dict[str, Any] = {}
    for key, value in health.items():
        if key == "ports":
            check["ports"] = list(value) if isinstance(value, list) else [value]
        elif key == "urls":
            urls = value if isinstance(value, list) else [value]
            check["urls"] = [str(u).replace("{{ip}}", "{{ node.address }}").replace("{{ ip }}", "{{ node.address }}")
                             for u in urls]
        elif key == "timeout":
            check["timeout"] = value
        elif key == "ping":
            continue  # cloudherd's default SSH check reaches the node too
        elif key == "mysqldbs":
            warn("health_check.mysqldbs", "not checked (give the group a health command, e.g. mysql -u USER -pPASS "
                 "-e 'use DB')")
        else:
            raise fail("unknown key (health_check has ping, ports, urls, timeout, mysqldbs)", "health_check", key)
    return check


def _dependency(pair: Any, fail: Any) -> tuple[str, str]:
    """``[dependent, dependee]`` or ``{connection: [dependent, dependee]}``, ends given by name or as nodes."""
    if isinstance(pair, dict) and "connection" in pair:
        pair = pair["connection"]
    if not isinstance(pair, list) or len(pair) != 2:
        raise fail("a dependency is [dependent, dependee] or {connection: [dependent, dependee]}")
    ends = [end.get("name") if isinstance(end, dict) else end for end in pair]
    if not all(isinstance(e, str) and e for e in ends):
        raise fail("each end of a dependency is a node (or its name)")
    return native_name(str(ends[0])), native_name(str(ends[1]))


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


def read_node_definitions(path: Path) -> dict[str, Any]:
    """The node definition file at ``path``, its ``!yaml_import`` / ``!text_import`` files read from beside it."""
    from cloudherd.spec.compat import imports
    from cloudherd.spec.files import Where, read_text
    from cloudherd.spec.yamlsafe import parse_yaml

    display = str(path)
    text = read_text(path, Where(display), yaml=True)
    tree = imports.resolve(parse_yaml(text, display, extra_tags=imports.IMPORT_TAGS), display, path.parent)
    return node_definitions(tree, display)
