"""Reading the Auto Scaling Query API's parameters: required ones, sizes, flags, ``Name.member.N`` lists and
structures, tags and filters, each refused in AWS's words when it is not what the action takes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloudherd.api.autoscaling import AwsError, Tag, too_big
from cloudherd.inputs import whole

if TYPE_CHECKING:
    from cloudherd.api.autoscaling import AutoScaling

Params = dict[str, str]


def _required(params: Params, name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise AwsError("ValidationError", f"1 validation error detected: Value null at '{name}' failed to satisfy "
                                          "constraint: Member must not be null")
    return value


def _size(model: AutoScaling, params: Params, name: str, *, required: bool = False) -> int | None:
    """A group size: ASCII digits, at most the server's ceiling (``int()`` took ``٣``, ``+3`` and ``3_0``, and a
    number too large for the database's column was a 500)."""
    value = _required(params, name) if required else params.get(name)
    if value is None:
        return None
    digits = value.removeprefix("-")
    if not digits or not digits.isascii() or not digits.isdigit():
        raise AwsError("ValidationError", f"{name} must be a whole number, got '{value[:40]}'")
    if digits != value and digits.strip("0"):
        raise AwsError("ValidationError", f"1 validation error detected: Value '{value[:40]}' at '{name}' failed to "
                                          "satisfy constraint: Member must have value greater than or equal to 0")
    number = whole(digits)
    if number is None or number > model.ceiling:
        raise AwsError("ValidationError", too_big(name, value if len(value) <= 40 else value[:20] + "…",
                                                  model.ceiling))
    return number


def _bool(params: Params, name: str) -> bool:
    return params.get(name, "false").lower() == "true"


MEMBER_DIGITS = 6  # Name.member.N: an index of more digits (or not ASCII) is no member
MAX_MEMBERS = 1000  # names or ids in one list: each is a parameter of one SQL query (SQLite takes 32766)


def _members(params: Params, name: str) -> list[str]:
    """``Name.member.1``, ``Name.member.2``… in order."""
    found = []
    for key, value in params.items():
        prefix = f"{name}.member."
        if key.startswith(prefix):
            found.append((_member_index(key, key[len(prefix):]), value))
    if len(found) > MAX_MEMBERS:
        raise AwsError("ValidationError", f"1 validation error detected: Value at '{name}' failed to satisfy "
                                          f"constraint: Member must have length less than or equal to {MAX_MEMBERS}")
    return [value for _, value in sorted(found)]


def _member_index(key: str, index: str) -> int:
    """N of ``Name.member.N``: ASCII digits, at most six of them, from 1 — else the call is refused (it was
    ignored, so a filter or a tag with a mistyped index did nothing and said nothing)."""
    number = whole(index, MEMBER_DIGITS)
    if number is None or number < 1:
        raise AwsError("ValidationError", f"{_shown(key)}: a member index is a number from 1, in ASCII digits "
                                          f"(at most {MEMBER_DIGITS})")
    return number


def _shown(key: str) -> str:
    return key if len(key) <= 60 else f"{key[:40]}… ({len(key)} characters)"


def _structs(params: Params, name: str) -> list[dict[str, str]]:
    """``Name.member.N.Field`` as one dict per N, in order."""
    found: dict[int, dict[str, str]] = {}
    prefix = f"{name}.member."
    for key, value in params.items():
        if key.startswith(prefix):
            index, _, field = key[len(prefix):].partition(".")
            number = _member_index(key, index)
            if not field:
                raise AwsError("ValidationError", f"{_shown(key)}: a member of {name} names a field "
                                                  f"({prefix}N.Field)")
            found.setdefault(number, {})[field] = value
    return [found[i] for i in sorted(found)]


def _tags(params: Params, default_group: str = "") -> list[Tag]:
    tags = []
    for item in _structs(params, "Tags"):
        if "Key" not in item:
            raise AwsError("ValidationError", "each tag needs a Key")
        tags.append(Tag(group=item.get("ResourceId", default_group), key=item["Key"], value=item.get("Value", ""),
                        propagate=item.get("PropagateAtLaunch", "false").lower() == "true"))
    return tags


def _filters(params: Params) -> dict[str, list[str]]:
    return {f.get("Name", ""): [v for k, v in sorted(f.items()) if k.startswith("Values.member.")]
            for f in _filter_structs(params)}


def _filter_structs(params: Params) -> list[dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        if key.startswith("Filters.member."):
            index, _, rest = key[len("Filters.member."):].partition(".")
            number = whole(index, MEMBER_DIGITS)
            if number is not None:
                found.setdefault(number, {})[rest] = value
    return [found[i] for i in sorted(found)]
