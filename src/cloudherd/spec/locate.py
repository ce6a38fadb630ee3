"""Where a spec's problem is: the line of each key, and pydantic's first error said as
``FILE:LINE: dotted.path: message``, with a 'did you mean' for a misspelt key."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from cloudherd.errors import SpecError
from cloudherd.spec.files import (
    spec_error,
)
from cloudherd.spec.interpolate import EnvText
from cloudherd.spec.model import Group, Spec, _LocatedValueError, _SubValueError

Loc = tuple[str | int, ...]  # a key path: keys and list indices


def _line_index(tree: Any, loc: Loc = (), out: dict[Loc, int] | None = None) -> dict[Loc, int]:
    """Map each key path to the 1-based line of its key (or list item)."""
    out = {} if out is None else out
    if isinstance(tree, CommentedMap):
        for key in tree:
            sub = (*loc, str(key))
            out[sub] = _key_line(tree, key)
            _line_index(tree[key], sub, out)
    elif isinstance(tree, CommentedSeq):
        for index, item in enumerate(tree):
            sub = (*loc, index)
            out[sub] = tree.lc.item(index)[0] + 1
            _line_index(item, sub, out)
    return out


def _key_line(tree: CommentedMap, key: Any) -> int:
    """The 1-based line of ``key`` in ``tree``; a key merged in (``<<: *base``) is where its anchor has it."""
    try:
        position = tree.lc.key(key)
    except KeyError:
        position = None
    if position is not None:
        return int(position[0]) + 1
    for merged in getattr(tree, "merge", None) or ():
        source = merged[1] if isinstance(merged, tuple) else merged
        if isinstance(source, CommentedMap) and key in source:
            return _key_line(source, key)
    return int(tree.lc.line or 0) + 1


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
        elif isinstance(ctx.get("error"), _SubValueError):
            sub: _SubValueError = ctx["error"]
            loc, message = (*loc, *sub.sub), sub.message
        elif err["type"] in ("int_type", "float_type") and isinstance(err.get("input"), bool):
            message = "must be a number, not true/false"
        elif err["type"] == "int_type" and isinstance(err.get("input"), float):
            message = "must be a whole number"
        elif err["type"] == "int_type" and isinstance(err.get("input"), EnvText):
            message = f"must be an integer (the environment gave '{err['input']}')"
        elif err["type"] == "finite_number":
            message = "must be a finite number"
        elif err["type"] == "extra_forbidden":
            message = "unknown key" + _did_you_mean(loc, data)
        elif err["type"] == "greater_than_equal":
            message = f"must be ≥ {ctx.get('ge')}"
        elif err["type"] == "less_than_equal":
            message = f"must be ≤ {ctx.get('le')}"
        elif err["type"] == "greater_than":
            bound = ctx.get("gt")
            message = f"must be greater than {f'{bound:g}' if isinstance(bound, int | float) else bound}"
        elif err["type"] == "string_pattern_mismatch" and loc and loc[-1] == "name":
            message = "must be lower-case letters, digits and '-' (at most 40), e.g. web-stack"
        elif err["type"] == "value_error":
            message = str(ctx.get("error") or err["msg"]).removeprefix("Value error, ")
        elif err["type"] == "too_short" and loc == ("groups",):
            message = "needs at least one group"
        else:
            message = _MESSAGES.get(err["type"], err["msg"][:1].lower() + err["msg"][1:])
        line = _line_of(loc, lines) or 1
        found.append((line, spec_error(display, line, _dotted(loc), message)))
    found.sort(key=lambda pair: pair[0])
    return found[0][1]


def _did_you_mean(loc: Loc, data: Any) -> str:
    from cloudherd.spec.model import Health, Scaling, SSHConfig

    key = str(loc[-1])
    parent = loc[:-1]
    if parent == ():
        fields = list(Spec.model_fields)
    elif parent[0] == "groups" and len(parent) == 2:
        fields = list(Group.model_fields)
    elif parent[0] == "groups" and len(parent) == 3 and parent[2] in ("health", "scaling"):
        fields = list((Health if parent[2] == "health" else Scaling).model_fields)
    elif parent == ("ssh",):
        fields = list(SSHConfig.model_fields)
    else:
        return ""
    close = difflib.get_close_matches(key, fields, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (expected one of: {', '.join(fields)})"

