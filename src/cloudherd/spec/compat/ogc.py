"""OGC 2.x spec files (``layouts``) as native specs.

An OGC layout is a cloudherd group: ``runs-on`` is the image, ``instance-size`` the size, ``scale`` the
count, ``scripts`` a folder of templated scripts run in name order.  OGC has one login user per
layout; cloudherd has one per spec, so layouts that disagree are refused at the line that differs.
"""

from __future__ import annotations

import re
from typing import Any

from cloudherd.errors import SpecError
from cloudherd.spec.compat import Converted, dotted, line_of, plain

PROVIDERS = {"aws": "aws", "google": "gce", "gce": "gce", "local": "local"}
LAYOUT_KEYS = {"provider", "runs-on", "instance-size", "username", "scripts", "scale", "remote-path", "include",
               "exclude", "artifacts", "tags", "ports", "exclude-from-ssh"}
TOP_KEYS = {"name", "ssh-keys", "layouts"}
UNUSED = {"remote-path", "include", "exclude", "exclude-from-ssh"}  # read, with no cloudherd equivalent yet


def convert(tree: Any, display: str) -> Converted:
    data = plain(tree)

    def fail(message: str, *path: str | int) -> SpecError:
        return SpecError(display, line_of(tree, *path), dotted(path), message)

    for key in data:
        if key not in TOP_KEYS:
            raise fail(f"unknown key (OGC's are: {', '.join(sorted(TOP_KEYS))})", key)
    layouts = data.get("layouts")
    if not isinstance(layouts, dict) or not layouts:
        raise fail("at least one layout is required", "layouts")
    out: dict[str, Any] = {"name": data.get("name"), "groups": {}}
    converted = Converted(out)
    converted.lines.update({"name": line_of(tree, "name") or 1, "groups": line_of(tree, "layouts") or 1})
    keys = data.get("ssh-keys") or {}
    if not isinstance(keys, dict):
        raise fail("ssh-keys is {public: PATH, private: PATH}", "ssh-keys")
    ssh: dict[str, Any] = {}
    if keys.get("private"):
        ssh["key"] = keys["private"]
        converted.lines["ssh.key"] = line_of(tree, "ssh-keys", "private") or 1
    users: dict[str, str] = {}
    for name, layout in layouts.items():
        if layout in ({}, None):
            continue  # an emptied layout (a later file's `name: {}`) is removed
        if not isinstance(layout, dict):
            raise fail("a layout is a mapping of OGC layout keys", "layouts", name)
        group: dict[str, Any] = {}
        for key, value in layout.items():
            if key not in LAYOUT_KEYS:
                raise fail(f"unknown layout key (OGC's are: {', '.join(sorted(LAYOUT_KEYS))})", "layouts", name, key)
            if key in UNUSED and value not in (None, "", []):
                converted.notes.append(f"layouts.{name}.{key}: read, not used (no cloudherd equivalent yet)")
        provider = str(layout.get("provider", "local"))
        if provider not in PROVIDERS:
            raise fail(f"unknown provider '{provider}' (OGC's: aws, google; and local)", "layouts", name, "provider")
        group["provider"] = PROVIDERS[provider]
        for ogc_key, native in (("runs-on", "image"), ("instance-size", "size"), ("scale", "count")):
            if layout.get(ogc_key) is not None:
                group[native] = layout[ogc_key]
                converted.lines[f"groups.{name}.{native}"] = line_of(tree, "layouts", name, ogc_key) or 1
        if layout.get("scripts"):
            scripts = layout["scripts"]
            group["scripts"] = scripts if isinstance(scripts, list) else [scripts]
            converted.lines[f"groups.{name}.scripts"] = line_of(tree, "layouts", name, "scripts") or 1
        if layout.get("artifacts"):
            artifacts = layout["artifacts"]
            group["artifacts"] = artifacts if isinstance(artifacts, list) else [artifacts]
        if layout.get("tags"):
            group["tags"] = _tags(layout["tags"], lambda m, name=name: fail(m, "layouts", name, "tags"))
        if layout.get("ports"):
            group["ports"] = [_port(p, lambda m, name=name: fail(m, "layouts", name, "ports")) for p in layout["ports"]]
        if layout.get("username"):
            users[name] = str(layout["username"])
        converted.lines[f"groups.{name}"] = line_of(tree, "layouts", name) or 1
        out["groups"][name] = group
    if len(set(users.values())) > 1:
        first = next(iter(users))
        other = next(n for n in users if users[n] != users[first])
        raise fail(f"layouts {first} and {other} log in as different users ({users[first]}, {users[other]}): "
                   f"cloudherd has one login user per spec; split them into two files", "layouts", other, "username")
    if users:
        ssh["user"] = next(iter(users.values()))
    if ssh:
        out["ssh"] = ssh
    return converted


def _tags(value: Any, fail: Any) -> dict[str, str]:
    """OGC's list of tags (``[demo, team=web]``) as cloudherd's mapping (a bare tag is ``tag: "true"``)."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, list):
        raise fail("tags is a list (e.g. [demo, team=web])")
    out = {}
    for item in value:
        key, sep, val = str(item).partition("=")
        out[key.strip()] = val.strip() if sep else "true"
    return out


def _port(value: Any, fail: Any) -> int:
    """``"80:80"`` (OGC: inbound:outbound) or ``80``: the port opened."""
    match = re.fullmatch(r"\s*(\d+)(?:\s*:\s*\d+)?\s*", str(value))
    if not match:
        raise fail(f"'{value}' is not a port or \"PORT:PORT\"")
    return int(match.group(1))


def merge(trees: list[tuple[Any, str]]) -> dict[str, Any]:
    """Several OGC files as one, left to right (OGC's ``-s a.yml -s b.yml``): later keys win, layouts merge
    by name, and a layout set to ``{}`` in a later file is removed.  Relative paths in a layout (scripts,
    keys) are made absolute against the file that wrote them, since the files may live apart."""
    import os

    merged: dict[str, Any] = {}
    for tree, display in trees:
        data = plain(tree)
        base = os.path.dirname(os.path.abspath(display))
        for key, value in data.items():
            if key == "layouts" and isinstance(value, dict):
                layouts = merged.setdefault("layouts", {})
                for name, layout in value.items():
                    if layout in ({}, None):
                        layouts.pop(name, None)
                        continue
                    if isinstance(layout, dict) and isinstance(layout.get("scripts"), str):
                        layout["scripts"] = os.path.join(base, os.path.expanduser(layout["scripts"]))
                    layouts[name] = {**layouts.get(name, {}), **layout} if isinstance(layout, dict) else layout
            elif key == "ssh-keys" and isinstance(value, dict):
                merged["ssh-keys"] = {k: os.path.join(base, os.path.expanduser(str(v))) for k, v in value.items()}
            else:
                merged[key] = value
    return merged
