"""The AWS Auto Scaling face's values and the checks of what a caller gives (:mod:`cloudherd.api.autoscaling`
acts on them): AWS's error codes, its names and sizes, tags, user data and the ``clouds`` tag's caps.

Every check raises :class:`AwsError` in AWS's words; nothing here writes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from cloudherd.api import phantom

GROUP = "nodes"  # the node group inside each Auto Scaling group's infrastructure
CLOUDS_TAG = "clouds"
_CAPS = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*:\s*([0-9]{1,9})\s*$")  # ASCII digits: int() of "٣" is 3
# what XML 1.0 cannot carry (its Char production, inverted): every answer is XML, so no input may hold one
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MAX_TAG_KEY, MAX_TAG_VALUE = 128, 256  # AWS's lengths
MAX_USER_DATA = 21_847  # AWS's bound of base64 UserData
MAX_FIELD = 255  # names, image ids, instance types, key names (and the columns they are stored in)


class AwsError(Exception):
    """An answer in AWS's terms: its error code, message and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True)


class LaunchConfig(_Value):
    name: str
    image: str
    instance_type: str | None
    user_data: str | None
    key_name: str | None
    security_groups: tuple[str, ...]
    created_at: datetime


class Instance(_Value):
    id: str  # "i-" + the node's id
    group: str
    cloud: str
    instance_type: str | None
    launch_configuration: str
    lifecycle: str  # Pending | InService | Standby | Terminating
    health: str  # Healthy | Unhealthy
    node: str  # the node's name in cloudherd
    address: str | None
    protected: bool = False  # ProtectedFromScaleIn


class Tag(_Value):
    group: str
    key: str
    value: str
    propagate: bool


class ScalingGroupView(_Value):
    name: str
    infrastructure: str
    launch_configuration: str
    min_size: int
    max_size: int
    desired: int
    zones: tuple[str, ...]
    instances: tuple[Instance, ...]
    tags: tuple[Tag, ...]
    status: str | None
    created_at: datetime
    suspended: tuple[tuple[str, str], ...] = ()  # (AWS's process name, why)
    termination: tuple[str, ...] = ("Default",)  # TerminationPolicies, AWS's names
    new_protected: bool = False  # NewInstancesProtectedFromScaleIn
    distribution: tuple[tuple[str, str | int], ...] = ()  # MixedInstancesPolicy.InstancesDistribution, as shown


def _literal(text: str) -> str:
    """A user's text as a spec value that means itself: ``$`` doubled, so that ``${VAR}`` is no reference to
    the server's environment."""
    return text.replace("$", "$$")


def _infra_name(owner: str, name: str) -> str:
    """A valid, unique infrastructure name for a group: AWS names allow what cloudherd's do not (case, ':')."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24].strip("-") or "group"
    digest = hashlib.sha256(f"{owner}/{name}".encode()).hexdigest()[:6]
    return f"asg-{slug}-{digest}"


def _split(name: str) -> tuple[str, str | None]:
    template, at, cloud = name.rpartition("@")
    return (template, cloud) if at and template and cloud else (name, None)


def _cap(part: str) -> tuple[str, int | None]:
    match = _CAPS.match(part)
    if not match:
        raise AwsError("ValidationError", f"the '{CLOUDS_TAG}' tag is cloud:max pairs like hotel:1,sierra:2; "
                                          f"'{part.strip()}' is not one")
    return match.group(1), int(match.group(2))


def _check_name(name: str, field: str) -> None:
    if not name or len(name) > MAX_FIELD or any(ord(c) < 32 for c in name) or NOT_XML.search(name):
        raise AwsError("ValidationError", f"{field} must be 1 to {MAX_FIELD} printable characters")


def xml_refusal(field: str, text: str) -> str | None:
    """Why ``text`` (the value of ``field``) cannot be taken, when it holds what XML 1.0 cannot carry."""
    found = NOT_XML.search(text)
    if found is None:
        return None
    return (f"1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must hold only "
            f"characters XML 1.0 can carry (U+{ord(found.group()):04X} at position {found.start()} cannot be)")


def too_big(field: str, value: object, ceiling: int) -> str:
    return (f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must "
            f"have value less than or equal to {ceiling} (the most instances a group may have on this server)")


def _check_text(field: str, value: str | None, most: int) -> None:
    if value is None:
        return
    refusal = xml_refusal(field, value)
    if refusal is not None:
        raise AwsError("ValidationError", refusal)
    if len(value) > most:
        raise AwsError("ValidationError", f"1 validation error detected: Value at '{field}' failed to satisfy "
                                          f"constraint: Member must have length less than or equal to {most}")


def _check_zones(zones: Sequence[str]) -> None:
    for index, zone in enumerate(zones, 1):
        _check_text(f"AvailabilityZones.member.{index}", zone, MAX_FIELD)


def _check_tag(tag: Tag) -> None:
    _check_text("Tags.ResourceId", tag.group, MAX_FIELD)
    if not tag.key:
        raise AwsError("ValidationError", "each tag needs a Key of 1 to 128 characters")
    _check_text("Tags.Key", tag.key, MAX_TAG_KEY)
    _check_text("Tags.Value", tag.value, MAX_TAG_VALUE)
    if tag.key == CLOUDS_TAG:
        for part in tag.value.split(","):
            if part.strip():
                _cap(part)
    if tag.key == phantom.DEFINITION_TAG:
        problem = phantom.definition_problem(tag.value)
        if problem:
            raise AwsError("ValidationError", problem)


def _last_of_each(tags: Sequence[Tag]) -> list[Tag]:
    """One tag per key (the last given wins, as a later CreateOrUpdateTags would)."""
    return list({t.key: t for t in tags}.values())


def _check_sizes(min_size: int, max_size: int, desired: int) -> None:
    if min(min_size, max_size, desired) < 0:
        raise AwsError("ValidationError", "sizes must be 0 or more")
    if min_size > max_size:
        raise AwsError("ValidationError", f"MinSize ({min_size}) must not be more than MaxSize ({max_size})")
    if not min_size <= desired <= max_size:
        raise AwsError("ValidationError", f"Desired capacity:{desired} must be between the specified min size:"
                                          f"{min_size} and max size:{max_size}")


def _decode_user_data(text: str) -> str:
    try:
        decoded = base64.b64decode(text, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise AwsError("ValidationError", "UserData must be base64-encoded text") from None
    if "\x00" in decoded:  # a script is text: and no database column of text takes a NUL
        raise AwsError("ValidationError", "UserData must be base64-encoded text (it decodes to a NUL character)")
    return decoded


# where a group's spec keeps what the caller gave, by the name the caller gave it
_FIELDS = {"groups.nodes.image": "ImageId", "groups.nodes.size": "InstanceType", "groups.nodes.user_data": "UserData",
           "groups.nodes.tags": "Tags", "groups.nodes.count": "DesiredCapacity", "groups.nodes.min": "MinSize",
           "groups.nodes.max": "MaxSize", "groups.nodes.placement": "the group's clouds",
           "groups.nodes.market": "MixedInstancesPolicy.InstancesDistribution"}


def _field_of(path: str) -> str:
    """The caller's name for a spec error's place (``groups.nodes.tags.env`` is ``Tags (env)``)."""
    for inside, field in _FIELDS.items():
        if path == inside:
            return field
        if path.startswith(inside + ".") or path.startswith(inside + "["):
            return f"{field} ({path[len(inside):].removeprefix('.')})"
    return path or "the group"


def _tag_key_ok(key: str) -> bool:
    return 0 < len(key) <= 128


def _by_group(tags: Sequence[Tag]) -> dict[str, list[Tag]]:
    grouped: dict[str, list[Tag]] = {}
    for tag in tags:
        if not tag.group:
            raise AwsError("ValidationError", "each tag needs ResourceId (the group's name) and "
                                              "ResourceType auto-scaling-group")
        grouped.setdefault(tag.group, []).append(tag)
    return grouped
