"""OGC spec files as native specs: YAML ``ogc.yml`` (2.0-2.1), TOML ``ogc.toml`` (2.1.10-3.0, Jinja-rendered
first as OGC did) and the list form of ``layouts`` (5.0 on).

An OGC layout is a cloudherd group, key by key (see ``LAYOUT``): ``runs-on`` is the image, ``instance-size``
the size, ``scale`` the count, ``username`` the group's login user, ``scripts`` a folder whose file
``teardown`` is the group's teardown (run when a node goes) and whose other files are the scripts, run in
name order as Mako templates (the spec says ``templates: mako``); ``remote-path`` with ``include`` /
``exclude`` is an ``upload`` of the spec's folder.  A key cloudherd cannot honour is a located warning,
never dropped in silence.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from cloudherd.errors import SpecError
from cloudherd.spec.compat import Converted, dotted, line_of
from cloudherd.spec.yamlsafe import plain

PROVIDERS = {"aws": "aws", "google": "gce", "gce": "gce", "local": "local"}
# OGC's settings of a top-level ``providers:`` entry, per provider, as cloudherd's settings
PROVIDER_SETTINGS = {"aws": {"region": "region"},
                     "gce": {"project": "project", "region": "region", "zone": "zone", "datacenter": "zone"}}
TOP_KEYS = {"name", "ssh-keys", "layouts", "providers"}
LAYOUT_KEYS = {"name", "provider", "runs-on", "instance-size", "constraints", "username", "scripts", "steps",
               "scale", "remote-path", "include", "exclude", "artifacts", "tags", "labels", "ports",
               "ssh-private-key", "ssh-public-key", "arch", "extra", "exclude-from-ssh"}

Fail = Callable[..., SpecError]


def looks_like_toml(text: str) -> bool:
    """An ``ogc.toml``: ``name = …`` / ``[layouts.…]`` lines, which YAML would read as one string."""
    return bool(re.search(r"^\s*\[\s*(layouts|ssh-keys)\b", text, re.M)) and not re.search(r"^layouts\s*:", text, re.M)


class _Reading(Converted):
    """A conversion under way: the foreign tree (for lines) and the file's folder (to look into ``scripts``)."""

    tree: Any = None
    base: str | None = None


def convert(tree: Any, display: str, base: str | None = None) -> Converted:
    """``base``: the folder relative ``scripts`` are in (None: not looked into, e.g. a file sent to a server)."""
    data = plain(tree)

    def fail(message: str, *path: str | int) -> SpecError:
        return SpecError(display, line_of(tree, *path), dotted(path), message)

    def warn(message: str, *path: str | int) -> None:
        converted.warnings.append(SpecError(display, line_of(tree, *path), dotted(path), message))

    out: dict[str, Any] = {"name": data.get("name"), "templates": "mako", "groups": {}}
    converted = _Reading(out)
    converted.tree, converted.base = tree, base
    for key in data:
        if key not in TOP_KEYS:
            raise fail(f"unknown key (OGC's are: {', '.join(sorted(TOP_KEYS))})", key)
    converted.lines.update({"name": line_of(tree, "name") or 1, "groups": line_of(tree, "layouts") or 1})
    converted.notes.append("scripts are Mako templates with OGC's names (node, env, db, session, nodes)")
    _ssh_keys(data, tree, out, converted, fail)
    providers = _providers(data.get("providers"), out, fail, warn)
    for path, name, layout in _layouts(data.get("layouts"), fail):
        if layout in ({}, None):
            continue  # an emptied layout (a later file's `name: {}`) is removed
        if not isinstance(layout, dict):
            raise fail("a layout is a mapping of OGC layout keys", *path)
        layout = {key.replace("_", "-"): value for key, value in layout.items()}  # 5.0 on: runs_on, remote_path
        out["groups"][name] = _group(layout, path, name, providers, converted, fail, warn)
        converted.lines[f"groups.{name}"] = line_of(tree, *path) or 1
    if not out["groups"]:
        raise fail("at least one layout is required", "layouts")
    return converted


def _layouts(value: Any, fail: Fail) -> list[tuple[tuple[str | int, ...], str, Any]]:
    """(tree path, name, layout) of a ``layouts`` mapping (2.x) or list of named layouts (5.0 on)."""
    if isinstance(value, dict):
        return [(("layouts", name), str(name), layout) for name, layout in value.items()]
    if isinstance(value, list):
        found: list[tuple[tuple[str | int, ...], str, Any]] = []
        for index, layout in enumerate(value):
            name = layout.get("name") if isinstance(layout, dict) else None
            if not name:
                raise fail("a layout of the list needs its name (name: …)", "layouts", index)
            found.append((("layouts", index), str(name), layout))
        return found
    raise fail("layouts is a mapping of layouts by name (or, OGC 5 on, a list of named layouts)", "layouts")


def _ssh_keys(data: dict[str, Any], tree: Any, out: dict[str, Any], converted: Converted, fail: Fail) -> None:
    keys = data.get("ssh-keys") or {}
    if not isinstance(keys, dict):
        raise fail("ssh-keys is {public: PATH, private: PATH}", "ssh-keys")
    if keys.get("private"):
        out["ssh"] = {"key": keys["private"]}
        converted.lines["ssh.key"] = line_of(tree, "ssh-keys", "private") or 1
    if keys.get("public"):
        converted.notes.append("ssh-keys.public: the public key is read from the private one")


def _providers(value: Any, out: dict[str, Any], fail: Fail, warn: Callable[..., None]) -> dict[str, str]:
    """A top-level ``providers:`` (OGC 2.1.9) as provider entries named as OGC names them: name → type."""
    if value in (None, {}):
        return {}
    if not isinstance(value, dict):
        raise fail("providers is a mapping of provider name to its settings", "providers")
    entries: dict[str, Any] = {}
    for name, settings in value.items():
        kind = PROVIDERS.get(str(name))
        if kind is None:
            raise fail(f"unknown provider '{name}' (OGC's: aws, google)", "providers", name)
        entry: dict[str, Any] = {"type": kind}
        for key, setting in (settings or {}).items():
            native = PROVIDER_SETTINGS.get(kind, {}).get(str(key))
            if native is None:
                warn(f"not used: cloudherd's {kind} provider has no '{key}' setting", "providers", name, key)
            else:
                entry[native] = setting
        entries[str(name)] = entry
    out["providers"] = entries
    return {name: entry["type"] for name, entry in entries.items()}


def _group(layout: dict[str, Any], path: tuple[str | int, ...], name: str, providers: dict[str, str],
           converted: _Reading, fail: Fail, warn: Callable[..., None]) -> dict[str, Any]:
    group: dict[str, Any] = {}

    def at(key: str) -> tuple[str | int, ...]:
        return (*path, key) if key in layout else (*path, key.replace("-", "_"))

    def mark(native: str, key: str) -> None:
        converted.lines[f"groups.{name}.{native}"] = _line(converted, at(key))

    for key in layout:
        if key not in LAYOUT_KEYS:
            raise fail(f"unknown layout key (OGC's are: {', '.join(sorted(LAYOUT_KEYS))})", *at(key))
    provider = str(layout.get("provider", "local"))
    if provider in providers:
        group["provider"] = provider
    elif provider in PROVIDERS:
        group["provider"] = PROVIDERS[provider]
    else:
        raise fail(f"unknown provider '{provider}' (OGC's: aws, google; and local)", *at("provider"))
    for ogc_key, native in (("runs-on", "image"), ("instance-size", "size"), ("scale", "count")):
        if layout.get(ogc_key) is not None:
            group[native] = layout[ogc_key]
            mark(native, ogc_key)
    if layout.get("constraints") is not None:
        group["size"] = _constraints(layout["constraints"], lambda m: fail(m, *at("constraints")),
                                     lambda m: warn(m, *at("constraints")))
        mark("size", "constraints")
    _scripts(layout, group, name, converted, fail, at)
    _login(layout, group, name, converted, at)
    _upload(layout, group, warn, at)
    if layout.get("artifacts"):
        artifacts = layout["artifacts"]
        group["artifacts"] = artifacts if isinstance(artifacts, list) else [artifacts]
    tags = _tags(layout["tags"], lambda m: fail(m, *at("tags"))) if layout.get("tags") else {}
    if layout.get("labels"):
        if not isinstance(layout["labels"], dict):
            raise fail("labels is a mapping (e.g. {team: obs})", *at("labels"))
        # the cloud's labels are tags too; OGC's scripts still see its tags and labels apart
        group["variables"] = {"ogc": {"tags": [str(t) for t in layout.get("tags") or []],
                                      "labels": {str(k): str(v) for k, v in layout["labels"].items()}}}
        tags.update({str(k): str(v) for k, v in layout["labels"].items()})
    if tags:
        group["tags"] = tags
    if layout.get("ports"):
        group["ports"] = [_port(p, lambda m: fail(m, *at("ports"))) for p in layout["ports"]]
    if layout.get("arch"):
        warn(f"not used: the architecture follows the size on AWS (asked: {layout['arch']})", *at("arch"))
    if layout.get("extra"):
        warn("not used: OGC's extra values have no cloudherd meaning (use variables: in a native spec)",
             *at("extra"))
    if layout.get("exclude-from-ssh"):
        warn("not used: every node of cloudherd is reached over SSH", *at("exclude-from-ssh"))
    return group


def _line(converted: _Reading, path: tuple[str | int, ...]) -> int:
    return line_of(converted.tree, *path) or 1


def _scripts(layout: dict[str, Any], group: dict[str, Any], name: str, converted: _Reading, fail: Fail,
             at: Callable[[str], tuple[str | int, ...]]) -> None:
    """``scripts: FOLDER``: its files are the scripts and its file ``teardown`` the teardown (OGC uploaded it at
    deploy and ran it before the node was destroyed); ``steps`` (OGC 2.1.9's test files): each ``script`` or
    ``run`` in order."""
    scripts = layout.get("scripts")
    if scripts:
        listed = [_found(converted, str(e)) for e in (scripts if isinstance(scripts, list) else [scripts])]
        group["scripts"] = listed
        converted.lines[f"groups.{name}.scripts"] = _line(converted, at("scripts"))
        base = converted.base
        for entry in listed:
            folder = os.path.join(base, os.path.expanduser(entry)) if base else None
            if folder and os.path.isfile(os.path.join(folder, "teardown")):
                group["teardown"] = entry.rstrip("/") + "/teardown"
                converted.lines[f"groups.{name}.teardown"] = converted.lines[f"groups.{name}.scripts"]
    steps = layout.get("steps")
    if steps:
        if not isinstance(steps, list):
            raise fail("steps is a list of {script: FILE} or {run: COMMAND}", *at("steps"))
        out: list[Any] = list(group.get("scripts", []))
        for index, step in enumerate(steps):
            if isinstance(step, dict) and set(step) == {"script"}:
                out.append(_found(converted, str(step["script"])))
            elif isinstance(step, dict) and set(step) == {"run"}:
                out.append({"name": f"step-{index + 1}", "content": str(step["run"]) + "\n"})
            else:
                raise fail("a step is {script: FILE} or {run: COMMAND}", *at("steps"), index)
        group["scripts"] = out
        converted.lines[f"groups.{name}.scripts"] = _line(converted, at("steps"))


def _found(converted: _Reading, entry: str) -> str:
    """A relative script path as OGC found it: OGC read paths from the folder it ran in, cloudherd from the spec's
    folder; a path there only in the working folder is made absolute (and said), so both readings agree."""
    base = converted.base
    path = os.path.expanduser(entry)
    if base is None or os.path.isabs(path) or os.path.exists(os.path.join(base, path)):
        return entry
    here = os.path.abspath(path)
    if os.path.exists(here):
        converted.notes.append(f"{entry}: not beside the spec; found in the working folder, as OGC looked: {here}")
        return here
    return entry


def _login(layout: dict[str, Any], group: dict[str, Any], name: str, converted: _Reading,
           at: Callable[[str], tuple[str | int, ...]]) -> None:
    login: dict[str, Any] = {}
    if layout.get("username"):
        login["user"] = str(layout["username"])
        converted.lines[f"groups.{name}.ssh.user"] = _line(converted, at("username"))
    if layout.get("ssh-private-key"):
        login["key"] = str(layout["ssh-private-key"])
        converted.lines[f"groups.{name}.ssh.key"] = _line(converted, at("ssh-private-key"))
    if login:
        group["ssh"] = login


def _upload(layout: dict[str, Any], group: dict[str, Any], warn: Callable[..., None],
            at: Callable[[str], tuple[str | int, ...]]) -> None:
    """``remote-path``: OGC rsynced the folder it ran in there, with ``include`` / ``exclude`` as rsync's
    patterns; cloudherd copies the spec's folder with the same patterns."""
    path = layout.get("remote-path")
    include, exclude = layout.get("include") or [], layout.get("exclude") or []
    if not path:
        for key, value in (("include", include), ("exclude", exclude)):
            if value:
                warn("not used: include and exclude choose what remote-path copies, and there is none", *at(key))
        return
    upload: dict[str, Any] = {"source": ".", "path": str(path)}
    if include:
        upload["include"] = include if isinstance(include, list) else [include]
    if exclude:
        upload["exclude"] = exclude if isinstance(exclude, list) else [exclude]
    group["upload"] = [upload]


def _constraints(value: Any, fail: Callable[[str], SpecError], warn: Callable[[str], None]) -> Any:
    """``c5.4xlarge`` (a size) or ``cores=16 mem=8G disk=100G`` (a need: the smallest size that fits)."""
    text = str(value).strip()
    if "=" not in text:
        return text
    need: dict[str, Any] = {}
    for part in text.split():
        key, _, amount = part.partition("=")
        if key in ("cores", "cpu", "cpus"):
            need["cpus"] = float(amount) if "." in amount else int(amount)
        elif key in ("mem", "memory"):
            need["memory"] = amount
        elif key == "disk":
            warn(f"not used: the disk size ({amount}) is the image's")
        else:
            raise fail(f"unknown constraint '{key}' (cores, mem, disk)")
    return need


def _tags(value: Any, fail: Callable[[str], SpecError]) -> dict[str, str]:
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


def _port(value: Any, fail: Callable[[str], SpecError]) -> int:
    """``"80:80"`` (OGC: inbound:outbound) or ``80``: the port opened."""
    match = re.fullmatch(r"\s*(\d+)(?:\s*:\s*\d+)?\s*", str(value))
    if not match:
        raise fail(f"'{value}' is not a port or \"PORT:PORT\"")
    return int(match.group(1))


def layout_facts(spec: Any, name: str) -> dict[str, Any]:
    """A group as OGC's names read it (``node.layout.username``, ``node.tags``…; ``SpecLoader``'s layouts): its
    tags and labels as OGC wrote them when the file was OGC's (kept under the group's ``variables.ogc``)."""
    group = spec.groups[name]
    kind = spec.providers[group.provider].type if group.provider in spec.providers else group.provider
    own = group.variables.get("ogc") or {}
    tags = own["tags"] if "tags" in own else [k if v == "true" else f"{k}={v}" for k, v in group.tags.items()]
    scripts = [s if isinstance(s, str) else {"run": s.content} for s in group.scripts]  # a step's `run` inline
    return {"name": name, "username": (group.ssh.user if group.ssh else None) or spec.ssh.user,
            "provider": {"gce": "google"}.get(kind, kind), "scale": group.count, "tags": tags,
            "labels": own.get("labels") or {}, "runs_on": group.image, "instance_size": group.size_name,
            "scripts": scripts[0] if len(scripts) == 1 else scripts,
            "remote_path": group.upload[0].path if group.upload else None,
            "include": list(group.upload[0].include) if group.upload else [],
            "exclude": list(group.upload[0].exclude) if group.upload else [],
            "artifacts": list(group.artifacts), "ports": [f"{p}:{p}" for p in group.ports]}


def merge(trees: list[tuple[Any, str]]) -> CommentedMap:
    """Several OGC files as one, left to right (OGC's ``-s a.yml -s b.yml``): later keys win, layouts merge
    by name, and a layout set to ``{}`` in a later file is removed.  Relative paths in a layout (scripts,
    keys) are made absolute against the file that wrote them, since the files may live apart."""
    merged = CommentedMap()
    for tree, display in trees:
        data = plain(tree)
        base = os.path.dirname(os.path.abspath(display))
        for key, value in data.items():
            if key == "layouts":
                layouts = merged.setdefault("layouts", {})
                items = value.items() if isinstance(value, dict) else \
                    [(v.get("name"), v) for v in value if isinstance(v, dict)] if isinstance(value, list) else []
                for name, layout in items:
                    if layout in ({}, None):
                        layouts.pop(name, None)
                        continue
                    if isinstance(layout, dict):
                        for path_key in ("scripts", "ssh-private-key", "ssh_private_key"):
                            if isinstance(layout.get(path_key), str):
                                layout[path_key] = os.path.join(base, os.path.expanduser(layout[path_key]))
                    layouts[name] = {**layouts.get(name, {}), **layout} if isinstance(layout, dict) else layout
            elif key == "ssh-keys" and isinstance(value, dict):
                merged["ssh-keys"] = {k: os.path.join(base, os.path.expanduser(str(v))) for k, v in value.items()}
            elif key == "providers" and isinstance(value, dict):
                providers = merged.setdefault("providers", {})
                for name, settings in value.items():
                    providers[name] = {**providers.get(name, {}), **(settings or {})}
            else:
                merged[key] = value
    return merged


# -- OGC 2.1.10-3.0: ogc.toml --------------------------------------------------------------------------


def read_toml(text: str, display: str, environ: dict[str, str], cwd: str) -> CommentedMap:
    """An ``ogc.toml`` as the tree the YAML files give (lines kept): rendered first as a Jinja template with
    ``env``, ``cwd`` and ``var`` (its own values by dotted key), as OGC did — in the sandbox."""
    import tomllib

    from jinja2 import StrictUndefined, TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def parsed(source: str) -> dict[str, Any]:
        try:
            return tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            match = re.search(r"line (\d+)", str(exc))
            raise SpecError(display, int(match.group(1)) if match else None, "", f"not TOML: {exc}") from None

    raw = parsed(text)
    if "{{" in text or "{%" in text:
        var = _flatten(raw)
        try:
            sandbox = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
            text = sandbox.from_string(text).render(env=environ, cwd=cwd, var=var)
        except TemplateError as exc:
            raise SpecError(display, getattr(exc, "lineno", None), "", f"template error: {exc}") from None
        raw = parsed(text)
    return _with_lines(raw, _toml_lines(text))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out[name] = item
            out.update(_flatten(item, name))
    return out


def _toml_lines(text: str) -> dict[tuple[str, ...], int]:
    """Dotted key paths → 1-based lines, from ``[table]`` headers and ``key =`` lines (enough for messages)."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$", line)
        if header:
            table = tuple(part.strip().strip('"') for part in header.group(1).split("."))
            for cut in range(1, len(table) + 1):
                lines.setdefault(table[:cut], number)
            continue
        key = re.match(r'\s*("[^"]+"|[A-Za-z0-9_-]+)\s*=', line)
        if key:
            lines.setdefault((*table, key.group(1).strip('"')), number)
    return lines


def _with_lines(value: Any, lines: dict[tuple[str, ...], int], path: tuple[str, ...] = ()) -> Any:
    if isinstance(value, dict):
        out = CommentedMap()
        for key, item in value.items():
            out[key] = _with_lines(item, lines, (*path, str(key)))
            line = lines.get((*path, str(key)))
            if line is not None:
                out.lc.add_kv_line_col(key, [line - 1, 0, line - 1, 0])
        return out
    if isinstance(value, list):
        seq = CommentedSeq(_with_lines(v, lines, path) for v in value)
        line = lines.get(path)
        for index in range(len(seq)):
            seq.lc.add_kv_line_col(index, [(line or 1) - 1, 0])
        return seq
    return value
