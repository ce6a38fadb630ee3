"""Pydantic models of a spec (v1).

Models forbid unknown keys so that a typo (``cont: 3``) is an error with a line number, not a
silently ignored setting.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
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

from cloudherd.spec.durations import FORMS, DurationError, is_bare_number, parse_duration
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


def _bool_from_env(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str) and (isinstance(value, EnvText) or lenient(info)):
        word = value.strip().lower()
        if word in ("true", "yes", "on", "1"):
            return True
        if word in ("false", "no", "off", "0"):
            return False
    return value


Bool = Annotated[bool, Strict(), BeforeValidator(_bool_from_env)]


def _duration(value: Any, info: ValidationInfo) -> float:
    """Seconds from ``10`` / ``0.5`` / ``"500ms"`` / ``"1m30s"`` (text without a unit only from ``${VAR}``)."""
    if lenient(info) and isinstance(value, bool):
        return float(value)
    return parse_duration(value, bare_text=isinstance(value, EnvText) or lenient(info))


# A duration in seconds: a number (int or float, ≥ 0) or text with units; true/false is refused.
Duration = Annotated[float, BeforeValidator(_duration)]


class SSHConfig(_Strict):
    """How cloudherd logs in to nodes; ``key`` is generated on first use when it does not exist."""

    user: str | None = None
    key: str | None = None
    port: Int | None = Field(default=None, ge=1, le=65535)


class GroupLogin(_Strict):
    """A group's own login, over the spec's ``ssh``: images of different systems have different users
    (``admin`` on Debian, ``ubuntu``, ``ec2-user``), and a group may be reached with a key of its own."""

    user: str | None = None
    key: str | None = None


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
    # this place's own image and size, where clouds name them differently (Phantom's per-cloud entries)
    image: str | None = None
    size: str | None = None


class MinCount(_Strict):
    min_count: Int = Field(ge=0)


def _unhealthy_after(value: Any, info: ValidationInfo) -> Any:
    """A count of failed checks (``3``, ``"3"``) stays an ``int``; a duration (``"30s"``) stays its text."""
    if isinstance(value, bool):
        if lenient(info):
            return 3
        raise ValueError("must be a number of failed checks (e.g. 3) or a duration (e.g. 30s), not true/false")
    if isinstance(value, float) and value.is_integer() and lenient(info):
        value = int(value)
    if isinstance(value, float):
        raise ValueError(f"{value!r} is not a whole number of failed checks (or write a duration like 30s)")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{value} failed checks: must be at least 1 (or a duration like 30s)")
        return value
    if isinstance(value, str) and is_bare_number(value):
        if not re.match(r"^\s*[0-9]+\s*$", value):
            raise ValueError(f"'{value}' is not a whole number of failed checks (or write a duration like 30s)")
        return _unhealthy_after(int(value), info)
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except DurationError:
            raise ValueError(f"'{value}' is neither a number of failed checks (e.g. 3) nor a duration "
                             f"({FORMS})") from None
        if seconds <= 0:
            raise ValueError(f"'{value}': failing for no time at all; write a duration above 0, or a count")
        return value.strip()
    raise ValueError("must be a number of failed checks (e.g. 3) or a duration (e.g. 30s)")


_PERCENT = re.compile(r"^\s*([0-9]{1,3}(?:\.[0-9]{1,6})?)\s*%\s*$")


def _max_unhealthy(value: Any, info: ValidationInfo) -> Any:
    """A count (``2``, ``"2"``) stays an ``int``; a percent (``"40%"``) stays its text, without spaces."""
    if isinstance(value, bool):
        if lenient(info):
            return "40%"
        raise ValueError("must be a number of nodes (e.g. 2) or a percent of the group (e.g. 40%), not true/false")
    if isinstance(value, float) and value.is_integer() and lenient(info):
        value = int(value)
    if isinstance(value, float):
        raise ValueError(f"{value!r} is not a whole number of nodes (or write a percent like 40%)")
    if isinstance(value, str) and re.match(r"^\s*[0-9]{1,9}\s*$", value):
        value = int(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} nodes: must be ≥ 0 (or a percent like 40%)")
        return value
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if not match:
            raise ValueError(f"'{value}' is neither a number of nodes (e.g. 2) nor a percent (e.g. 40%)")
        if Fraction(match.group(1)) > 100:
            raise ValueError(f"'{value}' is more than 100%")
        return f"{match.group(1)}%"
    raise ValueError("must be a number of nodes (e.g. 2) or a percent of the group (e.g. 40%)")


class Health(_Strict):
    """How the manager checks a group's nodes, and when it gives up on one and replaces it.

    Every check runs each ``interval`` (each probe at most ``timeout``); a node is unhealthy after
    ``unhealthy_after`` failed checks in a row (``3``), or after failing for that long (``"30s"``);
    failures in the ``grace`` after a node became ready do not count.  At most ``max_unhealthy`` nodes
    of a group are replaced at once (a count, or a percent of the group): beyond that, the circuit
    breaker stops replacing.  ``ssh: false`` and no other check: no checks at all.
    """

    ssh: Bool = True  # TCP connect + SSH banner
    ports: list[Int] = Field(default_factory=list)  # TCP connect to each
    urls: list[str] = Field(default_factory=list)  # Jinja templates, e.g. "http://{{ node.address }}:80/"
    command: str | None = None  # run over SSH, exit status 0 = healthy
    interval: Duration = Field(default=10.0, gt=0)
    grace: Duration = 30.0
    timeout: Duration = Field(default=5.0, gt=0)
    unhealthy_after: Annotated[int | str, BeforeValidator(_unhealthy_after)] = 3
    max_unhealthy: Annotated[int | str, BeforeValidator(_max_unhealthy)] = "40%"

    @field_validator("ports", "urls", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | int) and not isinstance(value, bool) else value

    @field_validator("ports")
    @classmethod
    def _ports_in_range(cls, value: list[int]) -> list[int]:
        for index, port in enumerate(value):
            if not 1 <= port <= 65535:
                raise _SubValueError((index,), f"port {port} is not between 1 and 65535")
        return list(dict.fromkeys(value))

    @field_validator("urls")
    @classmethod
    def _urls_not_empty(cls, value: list[str]) -> list[str]:
        for index, url in enumerate(value):
            if not url.strip():
                raise _SubValueError((index,), "an empty URL")
        return value

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("an empty command (leave the key out for no command check)")
        return value

    @property
    def failures(self) -> int | None:
        """``unhealthy_after`` as a count of failed checks in a row, or None when it is a duration."""
        return self.unhealthy_after if isinstance(self.unhealthy_after, int) else None

    @property
    def failing_for(self) -> float | None:
        """``unhealthy_after`` as seconds of failing, or None when it is a count."""
        return parse_duration(self.unhealthy_after) if isinstance(self.unhealthy_after, str) else None

    @property
    def checks(self) -> bool:
        """Whether there is any check at all (``ssh: false`` and nothing else: none)."""
        return bool(self.ssh or self.ports or self.urls or self.command)

    def max_unhealthy_of(self, size: int) -> int:
        """How many of a group of ``size`` nodes may be unhealthy at once before replacing stops."""
        if size <= 0:
            return 0
        if isinstance(self.max_unhealthy, int):
            return min(self.max_unhealthy, size)
        percent = Fraction(self.max_unhealthy.rstrip("%"))
        if percent <= 0:
            return 0
        return max(1, math.floor(size * percent / 100))


class Scaling(_Strict):
    """Occopus's spelling of a group's bounds: ``scaling: {min: N, max: M}`` (the same as ``min:``/``max:``)."""

    min: Int | None = Field(default=None, ge=0, le=10000)
    max: Int | None = Field(default=None, ge=0, le=10000)


class InlineScript(_Strict):
    """A script written in the spec itself (``{name: setup.sh, content: "…"}``): what converted Occopus
    contextualisation and REST bodies carry, so that a spec needs no files beside it."""

    name: str = Field(min_length=1, max_length=200)
    content: str


class Update(_Strict):
    """How ``up`` changes a group's running nodes to a new release (AWS instance refresh, Kubernetes Deployments).

    ``rolling``: ``max_surge`` new nodes at a time are made beside the old ones; once each has passed the group's
    health checks for ``min_healthy_seconds`` (within ``timeout``), as many old ones are retired, so the group
    never has fewer healthy nodes than it asks for.  With ``max_unavailable`` above 0, a release that leaves the
    machines as they are (only scripts, env or variables changed) goes in place instead: that many nodes at a
    time re-run their scripts, each out of the healthy count until it passes the same gate.
    A batch that fails its gate stops the rollout and the fleet
    goes back to the release before (``up --no-rollback`` keeps what was done).  ``pause_after``: stop after
    that many nodes, to be resumed or aborted (``cloudherd rollout``).  ``recreate``: every node is
    changed at once (scripts re-run in place, or nodes replaced together): faster, and the group is down
    meanwhile.  The defaults (rolling, one new node at a time, none taken out) never take a group below its
    size in healthy nodes.
    """

    strategy: Literal["rolling", "recreate"] = "rolling"
    max_surge: Int = Field(default=1, ge=1, le=10000)
    max_unavailable: Int = Field(default=0, ge=0, le=10000)  # in-place batches (scripts re-run) of this many
    min_healthy_seconds: Duration = Field(default=10.0, ge=0)
    timeout: Duration = Field(default=300.0, gt=0)  # a batch's bound to become healthy, its scripts included
    pause_after: Int | None = Field(default=None, ge=1, le=10000)  # a canary: stop after this many nodes



class Upload(_Strict):
    """A folder beside the spec copied to ``path`` on each node before the scripts run.

    ``include`` / ``exclude`` are rsync's patterns (as OGC passed them to rsync): a pattern with a ``/``
    matches the path from the folder, one without matches any file or folder name; ``exclude`` wins
    unless an ``include`` matches first, as rsync reads them."""

    source: str = "."
    path: str
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Group(_Strict):
    """One node group (layout): N alike nodes made by one provider and set up by the same scripts."""

    provider: str = "local"
    image: str | None = None
    size: Annotated[
        Annotated[str, Tag("<name>")] | Annotated[SizeNeed, Tag("<need>")],
        Discriminator(lambda v: "<need>" if isinstance(v, dict | SizeNeed) else "<name>"),
    ] | None = None  # a size name, or {cpus, memory}; the "<...>" tags are dropped from error paths
    count: Int = Field(default=1, ge=0, le=10000)
    min: Int | None = Field(default=None, ge=0, le=10000)  # bounds of count (the manager's scaling range)
    max: Int | None = Field(default=None, ge=0, le=10000)
    scaling: Scaling | None = Field(default=None, exclude=True)  # Occopus's spelling of min / max
    tags: dict[str, str] = Field(default_factory=dict)
    scripts: list[str | InlineScript] = Field(default_factory=list)  # files, folders, or {name, content}
    teardown: str | None = None
    # first-boot setup: a file, or inline text (a shell script or #cloud-config); runs once, before the scripts
    user_data: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    # the group's own template variables, over the spec's (``{{ variables.x }}`` in its scripts)
    variables: dict[str, Any] = Field(default_factory=dict)
    ports: list[Int] = Field(default_factory=list)  # opened to the world besides SSH (a security group on AWS)
    artifacts: list[str] = Field(default_factory=list)  # globs on the node, pulled before teardown
    # several places: filled in order up to each max; capacity / quota errors fail over to the next at once
    placement: list[Placement] = Field(default_factory=list)
    # what to do when not every node found a place: all_or_nothing (roll back), best_effort, {min_count: N}
    policy: Annotated[
        Annotated[Literal["all_or_nothing", "best_effort"], Tag("<name>")] | Annotated[MinCount, Tag("<min>")],
        Discriminator(lambda v: "<min>" if isinstance(v, dict | MinCount) else "<name>"),
    ] = "all_or_nothing"
    health: Health = Field(default_factory=Health)  # every group is checked; by default over SSH
    depends_on: list[str] = Field(default_factory=list)  # groups made (and healthy) before this one
    update: Update = Field(default_factory=Update)  # how a new release reaches the running nodes
    ssh: GroupLogin | None = None  # this group's login user and key (else the spec's)
    # files copied to each node before its scripts run (OGC's remote-path, include, exclude)
    upload: list[Upload] = Field(default_factory=list)

    @field_validator("scripts", "artifacts", "depends_on", mode="before")
    @classmethod
    def _one_script_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("health", mode="before")
    @classmethod
    def _empty_health_is_default(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("depends_on")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _count_in_bounds(self, info: ValidationInfo) -> Group:
        """``scaling:`` sets min / max; count (when given) must be within them, else it is brought within."""
        where: dict[str, tuple[str, ...]] = {"min": ("min",), "max": ("max",)}
        if self.scaling is not None:
            for key in ("min", "max"):
                bound = getattr(self.scaling, key)
                if bound is None:
                    continue
                if key in self.model_fields_set:
                    if lenient(info):
                        continue  # the group's own key wins
                    raise _SubValueError(("scaling", key), f"{key} is given twice, here and as the group's "
                                         f"{key} ({getattr(self, key)}): write it once")
                setattr(self, key, bound)
                where[key] = ("scaling", key)
        if "count" not in self.model_fields_set:  # the default count (1), brought within [min, max]
            if self.min is not None and self.count < self.min:
                self.count = self.min
            if self.max is not None and self.count > self.max:
                self.count = self.max
        if lenient(info):
            return self
        if self.min is not None and self.max is not None and self.min > self.max:
            raise _SubValueError(where["min"], f"{self.min} is above max ({self.max})")
        if self.max is not None and self.count > self.max:
            raise _SubValueError(("count",), f"{self.count} is above max ({self.max})")
        if self.min is not None and self.count < self.min:
            raise _SubValueError(("count",), f"{self.count} is below min ({self.min})")
        return self

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
    # how scripts are templated: Jinja, or Mako (OGC's scripts), which is read into Jinja for the same sandbox
    templates: Literal["jinja", "mako"] = "jinja"

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


    @model_validator(mode="after")
    def _dependencies_exist(self, info: ValidationInfo) -> Spec:
        """Every ``depends_on`` names another group of the spec, and no group depends on itself round a cycle.

        A stored snapshot re-read (lenient) drops what it cannot use instead: an unknown group, itself."""
        known = list(self.groups)
        for group_name, group in self.groups.items():
            for index, needed in enumerate(group.depends_on):
                if lenient(info):
                    break
                where = ("groups", group_name, "depends_on", index)
                if needed == group_name:
                    raise _LocatedValueError(where, f"a group cannot depend on itself ('{group_name}')")
                if needed not in self.groups:
                    raise _LocatedValueError(where, f"unknown group '{needed}' (known: {', '.join(known)})")
            if lenient(info):
                group.depends_on = [g for g in group.depends_on if g in self.groups and g != group_name]
        cycle = self._a_cycle()
        if cycle and not lenient(info):
            raise _LocatedValueError(("groups", cycle[0], "depends_on"),
                                     f"dependency cycle: {' → '.join([*cycle, cycle[0]])}")
        return self

    def _a_cycle(self) -> list[str]:
        """A dependency cycle (its groups in order, starting with the first of them in the spec), or []."""
        state: dict[str, int] = {}  # 1: on the current path, 2: done (no cycle through it)
        path: list[str] = []

        def visit(name: str) -> list[str]:
            state[name] = 1
            path.append(name)
            for needed in self.groups[name].depends_on:
                if needed not in self.groups:
                    continue
                if state.get(needed) == 1:
                    return path[path.index(needed):]
                if needed not in state:
                    found = visit(needed)
                    if found:
                        return found
            path.pop()
            state[name] = 2
            return []

        for name in self.groups:
            if name not in state:
                found = visit(name)
                if found:
                    order = list(self.groups)
                    first = min(range(len(found)), key=lambda i: order.index(found[i]))
                    return found[first:] + found[:first]
        return []

    def levels(self) -> list[list[str]]:
        """The groups level by level: level 0 depends on nothing, each later level only on earlier levels.

        Within a level, groups are in spec order.  (A cycle, only possible in a snapshot re-read leniently,
        ends up as one last level.)"""
        placed: set[str] = set()
        remaining = list(self.groups)
        levels: list[list[str]] = []
        while remaining:
            level = [name for name in remaining
                     if all(d in placed or d not in self.groups for d in self.groups[name].depends_on)]
            if not level:
                level = remaining
            levels.append(level)
            placed.update(level)
            remaining = [name for name in remaining if name not in placed]
        return levels

    def dependents(self, name: str) -> list[str]:
        """The groups that depend on ``name``, directly or through others, in spec order ([] for no such group)."""
        found: set[str] = set()
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for other, group in self.groups.items():
                if current in group.depends_on and other not in found and other != name:
                    found.add(other)
                    frontier.append(other)
        return [g for g in self.groups if g in found]


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
