"""Pydantic models of a spec (v1).

Models forbid unknown keys so that a typo (``cont: 3``) is an error with a line number, not a
silently ignored setting.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cloudherd.spec.interpolate import EnvText

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
BUILTIN_PROVIDER_TYPES = ("local", "aws", "gce")  # usable by type name without a `providers:` entry


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_ENV_INT = re.compile(r"^\s*[-+]?[0-9]{1,18}\s*$")
_ENV_FLOAT = re.compile(r"^\s*[-+]?([0-9]{1,18}(\.[0-9]{0,18})?|\.[0-9]{1,18})([eE][-+]?[0-9]{1,3})?\s*$")


LENIENT = "lenient"  # validation context key: re-reading a stored snapshot, coerce as pydantic's lax mode did


def lenient(info: ValidationInfo) -> bool:
    """Whether this validation re-reads a stored snapshot (taken by an older, laxer cloudherd): never refuse it."""
    return bool(info.context and info.context.get(LENIENT))


def _int_from_env(value: Any, info: ValidationInfo) -> Any:
    """A number from ``${VAR}`` (the environment is text); anything else must already be an integer."""
    if isinstance(value, str) and (isinstance(value, EnvText) or lenient(info)) and _ENV_INT.match(value):
        return int(value)
    if lenient(info) and (isinstance(value, bool) or (isinstance(value, float) and value.is_integer())):
        return int(value)
    return value


def _float_from_env(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str) and (isinstance(value, EnvText) or lenient(info)) and _ENV_FLOAT.match(value):
        return float(value)
    if lenient(info) and isinstance(value, bool):
        return float(value)
    return value


# Strict numbers: YAML's true, "3" and 3.5 are not integers (pydantic's lax mode would take them).
Int = Annotated[int, Strict(), BeforeValidator(_int_from_env)]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False), BeforeValidator(_float_from_env)]


class SSHConfig(_Strict):
    """How cloudherd logs in to nodes; ``key`` is generated on first use when it does not exist."""

    user: str | None = None
    key: str | None = None
    port: Int | None = Field(default=None, ge=1, le=65535)


class ProviderConfig(BaseModel):
    """A named provider: its ``type`` and the driver's own settings (region, zone, credentials…).

    Every setting stays in ``model_extra`` (what ``make_provider`` gets); the known ones are checked, and
    given their proper types, by the model of the type (:mod:`cloudherd.spec.providers`)."""

    model_config = ConfigDict(extra="allow")

    type: str

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        from cloudherd.spec.providers import PROVIDER_TYPES, unknown_type

        if value not in PROVIDER_TYPES:
            raise ValueError(unknown_type(value))
        return value

    @model_validator(mode="after")
    def _settings_of_the_type(self, info: ValidationInfo) -> ProviderConfig:
        from cloudherd.spec.providers import migrate, validate

        settings = self.model_extra or {}
        # a ValidationError here keeps its key's location; a stored snapshot is migrated instead
        checked = migrate(self.type, settings) if lenient(info) else validate(self.type, settings)
        if self.__pydantic_extra__ is not None:
            self.__pydantic_extra__.clear()
            self.__pydantic_extra__.update(checked)
        return self

    @property
    def settings(self) -> dict[str, Any]:
        """The settings to give ``make_provider`` (everything but ``type``)."""
        return dict(self.model_extra or {})


_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_MEMORY_FACTORS_MIB = {"B": 1 / (1024 * 1024), "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def memory_mib(text: str | int | float) -> int:
    """``"8G"`` / ``"512M"`` / ``"1.5GiB"`` as MiB; a bare number is GiB (as in ``memory: 8``)."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError("must be an amount of memory like 8G or 512M")
    if isinstance(text, int | float):
        number, unit = float(text), "G"
    else:
        match = _MEMORY.match(text)
        if not match:
            raise ValueError(f"'{text}' is not an amount of memory (write it like 8G or 512M)")
        number, unit = float(match.group(1)), (match.group(2) or "G")[0].upper()
    if not math.isfinite(number) or number <= 0 or number > 1024 ** 3:
        raise ValueError(f"'{text}' is not an amount of memory (write it like 8G or 512M)")
    return int(number * _MEMORY_FACTORS_MIB[unit])


class SizeNeed(_Strict):
    """A size by need: the provider picks its smallest size with at least these cpus and memory."""

    cpus: Float | None = Field(default=None, gt=0, le=100_000)
    memory: str | None = None

    @field_validator("memory", mode="before")
    @classmethod
    def _memory_is_an_amount(cls, value: Any) -> Any:
        if value is None:
            return None
        memory_mib(value)
        return str(value)

    @property
    def memory_mib(self) -> int | None:
        return memory_mib(self.memory) if self.memory is not None else None

    def describe(self) -> str:
        return ",".join(f"{k}={v}" for k, v in (("cpus", self.cpus), ("memory", self.memory)) if v is not None)


class Placement(_Strict):
    """One candidate place for a group's nodes: a provider (a ``providers`` key or type) and an optional cap."""

    provider: str
    max: Int | None = Field(default=None, ge=0)


class MinCount(_Strict):
    min_count: Int = Field(ge=0)


class Group(_Strict):
    """One node group (layout): N alike nodes made by one provider and set up by the same scripts."""

    provider: str = "local"
    image: str | None = None
    size: Annotated[
        Annotated[str, Tag("<name>")] | Annotated[SizeNeed, Tag("<need>")],
        Discriminator(lambda v: "<need>" if isinstance(v, dict | SizeNeed) else "<name>"),
    ] | None = None  # a size name, or {cpus, memory}; the "<...>" tags are dropped from error paths
    count: Int = Field(default=1, ge=0, le=10000)
    tags: dict[str, str] = Field(default_factory=dict)
    scripts: list[str] = Field(default_factory=list)
    teardown: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    ports: list[Int] = Field(default_factory=list)  # opened to the world besides SSH (a security group on AWS)
    artifacts: list[str] = Field(default_factory=list)  # globs on the node, pulled before teardown
    # several places: filled in order up to each max; capacity / quota errors fail over to the next at once
    placement: list[Placement] = Field(default_factory=list)
    # what to do when not every node found a place: all_or_nothing (roll back), best_effort, {min_count: N}
    policy: Annotated[
        Annotated[Literal["all_or_nothing", "best_effort"], Tag("<name>")] | Annotated[MinCount, Tag("<min>")],
        Discriminator(lambda v: "<min>" if isinstance(v, dict | MinCount) else "<name>"),
    ] = "all_or_nothing"

    @field_validator("scripts", "artifacts", mode="before")
    @classmethod
    def _one_script_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("ports")
    @classmethod
    def _ports_in_range(cls, value: list[int]) -> list[int]:
        for port in value:
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is not between 1 and 65535")
        return sorted(set(value))

    @property
    def size_name(self) -> str | None:
        """The size as stored and shown: a name, or a need like ``cpus=4,memory=8G``."""
        return self.size.describe() if isinstance(self.size, SizeNeed) else self.size

    @field_validator("tags", "env", mode="before")
    @classmethod
    def _scalars_as_strings(cls, value: Any, info: ValidationInfo) -> Any:
        """Whole numbers and true/false as YAML wrote them; other numbers change in YAML (1.10 is 1.1)."""
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if isinstance(item, float) and lenient(info):
                    item = str(item)
                elif isinstance(item, float):
                    raise _SubValueError((str(key),), f"{item!r} is a number that YAML may have changed "
                                         "(1.10 reads as 1.1): quote it, e.g. \"1.10\"")
                out[key] = ("true" if item else "false") if isinstance(item, bool) else \
                    str(item) if isinstance(item, int) else item
            return out
        return value


class Spec(_Strict):
    """A whole infrastructure: its name, how to reach nodes, variables and node groups."""

    name: str = Field(pattern=NAME_PATTERN)
    ssh: SSHConfig = Field(default_factory=SSHConfig)
    variables: dict[str, Any] = Field(default_factory=dict)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    groups: dict[str, Group] = Field(min_length=1)

    @model_validator(mode="after")
    def _providers_exist(self) -> Spec:
        known = sorted({*self.providers, *BUILTIN_PROVIDER_TYPES})
        for group_name, group in self.groups.items():
            if group.provider not in self.providers and group.provider not in BUILTIN_PROVIDER_TYPES:
                raise _LocatedValueError(
                    ("groups", group_name, "provider"),
                    f"unknown provider '{group.provider}' (known: {', '.join(known)})",
                )
            for index, place in enumerate(group.placement):
                if place.provider not in self.providers and place.provider not in BUILTIN_PROVIDER_TYPES:
                    raise _LocatedValueError(
                        ("groups", group_name, "placement", index, "provider"),
                        f"unknown provider '{place.provider}' (known: {', '.join(known)})",
                    )
            if group.placement and all(p.max is not None for p in group.placement):
                room = sum(p.max or 0 for p in group.placement)
                if room < group.count:
                    raise _LocatedValueError(
                        ("groups", group_name, "count"),
                        f"must be ≤ the placement's total max ({room})",
                    )
        return self

    @model_validator(mode="after")
    def _counts_agree(self, info: ValidationInfo) -> Spec:
        for group_name, group in self.groups.items():
            if lenient(info):
                break
            if isinstance(group.policy, MinCount) and group.policy.min_count > group.count:
                raise _LocatedValueError(
                    ("groups", group_name, "policy", "min_count"),
                    f"must be ≤ the group's count ({group.count}): {group.policy.min_count} nodes can never exist",
                )
        return self


class _SubValueError(ValueError):
    """A field validator's error about a part of its value (``sub``, a key path below the field)."""

    def __init__(self, sub: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.sub = sub
        self.message = message


class _LocatedValueError(ValueError):
    """A cross-field error that knows which key it is about, so the loader can point at its line."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
