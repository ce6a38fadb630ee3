"""Load a spec file: YAML with line numbers, ``${VAR}`` from the environment and ``.env``, validation.

Every problem becomes one :class:`~cloudherd.errors.SpecError` that names the file, the line and the
dotted path of the offending key, e.g. ``spec.yml:14: groups.web.count: must be an integer``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from dotenv import dotenv_values
from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from cloudherd.errors import SpecError
from cloudherd.spec.model import NAME_PATTERN, Group, Spec, _LocatedValueError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$")
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Script:
    """A script file of a group, read at load time so that a run never depends on the files moving."""

    name: str
    source: str  # path as written in the spec, for messages
    content: str


@dataclass
class LoadedSpec:
    """A validated spec plus what it brought along: scripts, environment and the secrets to mask."""

    spec: Spec
    path: Path
    raw_text: str
    env: dict[str, str]
    scripts: dict[str, list[Script]] = field(default_factory=dict)
    teardown: dict[str, Script | None] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.spec.name

    def group(self, name: str) -> Group:
        return self.spec.groups[name]


def load_spec(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> LoadedSpec:
    """Read, substitute, validate and resolve the scripts of the spec at ``path``."""
    spec_path = Path(path)
    try:
        text = spec_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), None, "", "no such file") from None
    except IsADirectoryError:
        raise SpecError(str(path), None, "", "is a folder, not a spec file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), None, "", f"cannot read: {exc}") from None
    return load_spec_text(text, spec_path, environ=environ)


def load_spec_text(
    text: str, path: Path, *, environ: Mapping[str, str] | None = None, strict_env: bool = True,
    read_scripts: bool = True,
) -> LoadedSpec:
    """Like :func:`load_spec` for text already read (``path`` names it and anchors relative files).

    ``strict_env=False`` leaves unknown ``${VAR}`` as written instead of failing: ``down`` uses it to
    re-read the snapshot of a spec whose environment is gone (with ``read_scripts=False``, as the
    scripts were stored when it came up).
    """
    display = str(path)
    tree = _parse_yaml(text, display)
    if not isinstance(tree, CommentedMap):
        raise SpecError(display, 1, "", "a spec must be a mapping with at least 'name' and 'groups'")
    lines = _line_index(tree)
    env = _environment(path.parent, environ)
    secrets: set[str] = set()
    data = _substitute(tree, (), env, lines, display, secrets, strict_env)
    try:
        _check_group_names(data)
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, lines, display, data) from None
    except _LocatedValueError as exc:
        raise SpecError(display, _line_of(exc.loc, lines), _dotted(exc.loc), exc.message) from None
    loaded = LoadedSpec(spec=spec, path=path, raw_text=text, env=env, secrets=secrets)
    secrets.update(v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= 4)
    if not read_scripts:
        return loaded
    for group_name, group in spec.groups.items():
        loaded.scripts[group_name] = [
            script
            for index, entry in enumerate(group.scripts)
            for script in _read_scripts(path.parent, entry, ("groups", group_name, "scripts", index), lines, display)
        ]
        if group.teardown:
            found = _read_scripts(path.parent, group.teardown, ("groups", group_name, "teardown"), lines, display)
            if len(found) != 1:
                raise SpecError(display, _line_of(("groups", group_name, "teardown"), lines),
                                f"groups.{group_name}.teardown", "must name one file")
            loaded.teardown[group_name] = found[0]
        else:
            loaded.teardown[group_name] = None
    return loaded


def _parse_yaml(text: str, display: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(display, line, "", f"invalid YAML: {problem}") from None
    except YAMLError as exc:
        raise SpecError(display, None, "", f"invalid YAML: {exc}") from None


def _line_index(tree: Any, loc: Loc = (), out: dict[Loc, int] | None = None) -> dict[Loc, int]:
    """Map each key path to the 1-based line of its key (or list item)."""
    out = {} if out is None else out
    if isinstance(tree, CommentedMap):
        for key in tree:
            sub = (*loc, str(key))
            out[sub] = tree.lc.key(key)[0] + 1
            _line_index(tree[key], sub, out)
    elif isinstance(tree, CommentedSeq):
        for index, item in enumerate(tree):
            sub = (*loc, index)
            out[sub] = tree.lc.item(index)[0] + 1
            _line_index(item, sub, out)
    return out


def _line_of(loc: Loc, lines: Mapping[Loc, int]) -> int | None:
    for cut in range(len(loc), 0, -1):
        line = lines.get(tuple(loc[:cut]))
        if line is not None:
            return line
    return 1


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _environment(folder: Path, environ: Mapping[str, str] | None) -> dict[str, str]:
    """The process environment over the ``.env`` beside the spec (the process wins, as in compose)."""
    dotenv_file = folder / ".env"
    env: dict[str, str] = {}
    if dotenv_file.is_file():
        env.update({k: v for k, v in dotenv_values(dotenv_file).items() if v is not None})
    env.update(os.environ if environ is None else environ)
    return env


def _substitute(
    node: Any, loc: Loc, env: Mapping[str, str], lines: Mapping[Loc, int], display: str,
    secrets: set[str], strict: bool,
) -> Any:
    """Plain Python data from the YAML tree, with ``${VAR}`` / ``${VAR:-default}`` replaced."""
    if isinstance(node, CommentedMap):
        return {str(k): _substitute(v, (*loc, str(k)), env, lines, display, secrets, strict) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_substitute(v, (*loc, i), env, lines, display, secrets, strict) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            value = env[name]
            if _SECRET_NAME.search(name) and len(value) >= 4:
                secrets.add(value)
            return value
        if default is not None:
            return default
        if not strict:
            return match.group(0)
        raise SpecError(display, _line_of(loc, lines), _dotted(loc),
                        f"environment variable {name} is not set (set it, or add it to .env beside the spec)")

    return _VAR.sub(replace, node)


def _check_group_names(data: Any) -> None:
    groups = data.get("groups") if isinstance(data, dict) else None
    if isinstance(groups, dict):
        for name in groups:
            if not re.match(NAME_PATTERN, name):
                raise _LocatedValueError(
                    ("groups", name),
                    "group names are lower-case letters, digits and '-', at most 40 characters",
                )


_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "unknown key",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
}


def _first_error(exc: ValidationError, lines: Mapping[Loc, int], display: str, data: Any) -> SpecError:
    """The error nearest the top of the file, as one readable line."""
    found: list[tuple[int, SpecError]] = []
    for err in exc.errors():
        loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("<")))  # union tags
        ctx = err.get("ctx") or {}
        if isinstance(ctx.get("error"), _LocatedValueError):
            located: _LocatedValueError = ctx["error"]
            loc, message = located.loc, located.message
        elif err["type"] == "extra_forbidden":
            message = "unknown key" + _did_you_mean(loc, data)
        elif err["type"] == "greater_than_equal":
            message = f"must be ≥ {ctx.get('ge')}"
        elif err["type"] == "less_than_equal":
            message = f"must be ≤ {ctx.get('le')}"
        elif err["type"] == "string_pattern_mismatch" and loc and loc[-1] == "name":
            message = "must be lower-case letters, digits and '-' (at most 40), e.g. web-stack"
        elif err["type"] == "value_error":
            message = str(ctx.get("error") or err["msg"]).removeprefix("Value error, ")
        elif err["type"] == "too_short" and loc == ("groups",):
            message = "needs at least one group"
        else:
            message = _MESSAGES.get(err["type"], err["msg"][:1].lower() + err["msg"][1:])
        line = _line_of(loc, lines) or 1
        found.append((line, SpecError(display, line, _dotted(loc), message)))
    found.sort(key=lambda pair: pair[0])
    return found[0][1]


def _did_you_mean(loc: Loc, data: Any) -> str:
    from cloudherd.spec.model import SSHConfig

    key = str(loc[-1])
    parent = loc[:-1]
    if parent == ():
        fields = list(Spec.model_fields)
    elif parent[0] == "groups" and len(parent) == 2:
        fields = list(Group.model_fields)
    elif parent == ("ssh",):
        fields = list(SSHConfig.model_fields)
    else:
        return ""
    close = difflib.get_close_matches(key, fields, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (expected one of: {', '.join(fields)})"


def _read_scripts(base: Path, entry: str, loc: Loc, lines: Mapping[Loc, int], display: str) -> list[Script]:
    """A file is one script; a folder is its files in name order (hidden files skipped)."""
    target = (base / os.path.expanduser(entry)).resolve()
    where = _line_of(loc, lines)
    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.is_file() and not p.name.startswith("."))
    elif target.is_file():
        files = [target]
    else:
        raise SpecError(display, where, _dotted(loc), f"no such file or folder: {entry}")
    scripts = []
    for file in files:
        try:
            content = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(display, where, _dotted(loc), f"cannot read {file}: {exc}") from None
        source = str(file.relative_to(base.resolve())) if file.is_relative_to(base.resolve()) else str(file)
        try:
            jinja2.Environment().parse(content)
        except jinja2.TemplateSyntaxError as exc:
            raise SpecError(source, exc.lineno, "", f"template error: {exc.message}") from None
        scripts.append(Script(name=file.name, source=source, content=content))
    return scripts
