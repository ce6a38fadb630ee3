"""Pydantic models of a spec (v1).

Models forbid unknown keys so that a typo (``cont: 3``) is an error with a line number, not a
silently ignored setting.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cloudherd.spec.coerce import (
    LENIENT,
    Duration,
    Int,
    _LocatedValueError,
    _Strict,
    _SubValueError,
    lenient,
    memory_mib,
)
from cloudherd.spec.parts import (
    BUILTIN_METRICS,
    Budget,
    GroupLogin,
    Health,
    Hook,
    Idle,
    InlineScript,
    Market,
    Metric,
    MinCount,
    Placement,
    Policy,
    ProviderConfig,
    Scaling,
    Schedule,
    SizeNeed,
    SSHConfig,
    Update,
    Upload,
    WarmPool,
)

__all__ = ["LENIENT", "NAME_PATTERN", "Group", "GroupLogin", "Health", "InlineScript", "MinCount", "Placement",
           "ProviderConfig", "SSHConfig", "Scaling", "SizeNeed", "Spec", "Update", "Upload", "_LocatedValueError",
           "_SubValueError", "memory_mib"]

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
BUILTIN_PROVIDER_TYPES = ("local", "aws", "gce")  # usable by type name without a `providers:` entry


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
    # min / max in Occopus's spelling, and the policies that decide the size (see :attr:`policies`)
    scaling: Scaling | None = Field(default=None, exclude=True)
    metrics: dict[str, Metric] = Field(default_factory=dict)  # sampled by the manager, beside cpu, memory, load1
    hooks: list[Hook] = Field(default_factory=list)  # lifecycle hooks: a node held after launch or before its end
    warm_pool: WarmPool | None = None  # nodes made and set up ahead, stopped, taken first by a scale-out
    market: Market | None = None  # spot or on-demand, with fallback and return (None: on-demand)
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
        self._check_policies()
        return self

    def _check_policies(self) -> None:
        """A policy needs a ``max`` to stay under, and a metric it can read."""
        for index, policy in enumerate(self.policies):
            where = ("scaling", "policies", index)
            if self.max is None:
                raise _SubValueError(where, "a scaling policy needs the group's max (the most nodes it may ask for)")
            if policy.metric not in BUILTIN_METRICS and policy.metric not in self.metrics:
                known = ", ".join([*BUILTIN_METRICS, *self.metrics])
                raise _SubValueError((*where, "metric"), f"no metric {policy.metric!r} (known: {known}; declare "
                                     "others under the group's metrics:)")

    @property
    def policies(self) -> list[Policy]:
        """The policies that decide the group's size (``scaling: {policies: […]}``)."""
        return self.scaling.policies if self.scaling is not None else []

    @property
    def schedules(self) -> list[Schedule]:
        """The scheduled actions that set its bounds or size (``scaling: {schedules: […]}``)."""
        return self.scaling.schedules if self.scaling is not None else []

    @field_validator("hooks")
    @classmethod
    def _hook_names_once(cls, value: list[Hook]) -> list[Hook]:
        names = [h.name for h in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"hook {twice[0]!r} is named twice: each hook of a group has a name of its own")
        return value

    def hooks_on(self, transition: str) -> list[Hook]:
        """The group's hooks on ``launch`` or ``terminate``."""
        return [h for h in self.hooks if h.on == transition]

    @property
    def termination(self) -> list[str]:
        """Which nodes a shrink gives up first (``scaling: {termination: […]}``)."""
        return list(self.scaling.termination) if self.scaling is not None else ["newest"]

    @property
    def protect_new(self) -> bool:
        """Whether its new nodes start protected from scale-in (``scaling: {protect_new: true}``)."""
        return self.scaling is not None and self.scaling.protect_new

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
    budget: Budget | None = None  # what it may cost (US dollars): an hour, and in all
    ttl: Duration | None = Field(default=None, gt=0)  # its time to live from its making: then the manager ends it
    autostop: Idle | None = None  # idle that long: stopped (or ended, ``action: down``) by the manager
    autodown: Idle | None = None  # idle that long: ended (its ``action`` is always down)

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
            _check_market(self, group_name, group)
            if group.placement and all(p.max is not None for p in group.placement):
                room = sum(p.max or 0 for p in group.placement)
                if room < group.count:
                    raise _LocatedValueError(
                        ("groups", group_name, "count"),
                        f"must be ≤ the placement's total max ({room})",
                    )
        return self

    def provider_type(self, name: str) -> str:
        """The driver type of provider ``name`` (a ``providers`` key, or a built-in type by its name)."""
        return self.providers[name].type if name in self.providers else name

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



SPOT_TYPES = ("aws", "gce", "local")  # the drivers that buy spot machines (local plays a spot market for tests)


def _check_market(spec: Spec, group_name: str, group: Group) -> None:
    """A spot group needs a provider with a spot market, and ``fallback: next-place`` a next place to go to."""
    market = group.market
    if market is None or not market.spot:
        return
    places = [p.provider for p in group.placement] or [group.provider]
    without = [p for p in places if spec.provider_type(p) not in SPOT_TYPES]
    if without:
        raise _LocatedValueError(("groups", group_name, "market", "type"),
                                 f"provider {without[0]} ({spec.provider_type(without[0])}) sells no spot machines "
                                 f"(spot: {', '.join(SPOT_TYPES)}); use on-demand")
    if market.fallback == "next-place" and len(places) < 2:
        raise _LocatedValueError(("groups", group_name, "market", "fallback"),
                                 "next-place needs a placement of two places or more")
