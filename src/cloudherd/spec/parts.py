"""The parts of a group in a spec: login, provider entries, size needs, placement, health, scaling, scripts,
update strategy and uploads.  Each forbids unknown keys, so that a typo is an error with a line number."""

from __future__ import annotations

import math
from datetime import datetime
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cloudherd.spec.coerce import (
    Bool,
    Duration,
    Float,
    Int,
    _max_unhealthy,
    _Strict,
    _SubValueError,
    _unhealthy_after,
    lenient,
    memory_mib,
)
from cloudherd.spec.durations import parse_duration


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


BUILTIN_METRICS = ("cpu", "memory", "load1")  # sampled on every node without a declaration (percent, percent, load)


class Metric(_Strict):
    """A metric of a group's nodes beside the built-in ones: a ``command`` whose standard output is a number, or a
    ``url`` (a node's exporter, a template like the health URLs) serving the Prometheus text format, of which the
    ``series`` is read (a name, or a name with labels as the exporter writes them).  A group's value is the
    ``aggregate`` of its ready nodes' values."""

    command: str | None = None
    url: str | None = None
    series: str | None = None
    aggregate: Literal["average", "sum", "max"] = "average"

    @model_validator(mode="after")
    def _one_source(self) -> Metric:
        if (self.command is None) == (self.url is None):
            raise ValueError("give a command or a url (one of them)")
        if self.url is not None and not self.series:
            raise _SubValueError(("series",), "a url metric names the series it reads")
        return self


class TargetTracking(_Strict):
    """Keep a group metric at ``target``, as AWS's target tracking does: scale out at once (in proportion:
    ``ceil(nodes * value / target)``), scale in slowly (after ``scale_in_after`` samples in a row below, one step
    of at most a tenth of the group), a node's first ``warmup`` seconds left out of the aggregate, and a cooldown
    after each scaling in each direction."""

    type: Literal["target_tracking"] = "target_tracking"
    metric: str = Field(min_length=1)
    target: Float = Field(gt=0)
    warmup: Duration = Field(default=60.0, ge=0)
    scale_out_cooldown: Duration = Field(default=60.0, ge=0)
    scale_in_cooldown: Duration = Field(default=300.0, ge=0)
    scale_in_after: Int = Field(default=3, ge=1, le=1000)
    disable_scale_in: Bool = False

    @property
    def samples_needed(self) -> int:
        return self.scale_in_after


class StepAdjustment(_Strict):
    """One step of a step policy: when the metric is ``lower_bound`` to ``upper_bound`` past the threshold (an
    open end: unbounded), change the group by ``adjustment`` (negative: remove)."""

    lower_bound: Float | None = None
    upper_bound: Float | None = None
    adjustment: Int

    def holds(self, excess: float) -> bool:
        return (self.lower_bound is None or excess >= self.lower_bound) and \
            (self.upper_bound is None or excess < self.upper_bound)


class StepScaling(_Strict):
    """An alarm and its steps, as AWS's step scaling: when ``datapoints_to_alarm`` of the last
    ``evaluation_periods`` samples are past ``threshold`` (by ``comparison``), the step that holds the newest
    sample's distance from the threshold changes the group's size: by that many nodes (``change_in_capacity``),
    to that many (``exact_capacity``), or by that percent (``percent_change_in_capacity``, at least
    ``min_adjustment_magnitude`` nodes).  Then no step is taken for ``cooldown``."""

    type: Literal["step"]
    metric: str = Field(min_length=1)
    threshold: Float
    comparison: Literal[">", ">=", "<", "<="] = ">="
    evaluation_periods: Int = Field(default=1, ge=1, le=1000)
    datapoints_to_alarm: Int | None = Field(default=None, ge=1, le=1000)
    adjustment_type: Literal["change_in_capacity", "exact_capacity", "percent_change_in_capacity"] = \
        "change_in_capacity"
    steps: list[StepAdjustment] = Field(min_length=1)
    min_adjustment_magnitude: Int | None = Field(default=None, ge=1)
    cooldown: Duration = Field(default=300.0, ge=0)
    warmup: Duration = Field(default=60.0, ge=0)

    @model_validator(mode="after")
    def _alarm_fits(self) -> StepScaling:
        if self.datapoints_to_alarm is not None and self.datapoints_to_alarm > self.evaluation_periods:
            raise _SubValueError(("datapoints_to_alarm",), f"{self.datapoints_to_alarm} is more than "
                                 f"evaluation_periods ({self.evaluation_periods})")
        return self

    @property
    def samples_needed(self) -> int:
        return self.evaluation_periods


def _policy_kind(value: Any) -> str:
    kind = value.get("type", "target_tracking") if isinstance(value, dict) else getattr(value, "type", None)
    return f"<{kind}>"


# a policy is target tracking unless its type says otherwise; the "<...>" tags are dropped from error paths
Policy = Annotated[
    Annotated[TargetTracking, Tag("<target_tracking>")] | Annotated[StepScaling, Tag("<step>")],
    Discriminator(_policy_kind, custom_error_type="policy_type",
                  custom_error_message="type is target_tracking (the default) or step"),
]


class Schedule(_Strict):
    """A scheduled action: at each occurrence of ``cron`` (five fields, read in ``timezone``) or once ``at`` a
    time, set the group's ``min``, ``max`` and / or ``desired`` size (the size clamped to the bounds in force)."""

    name: str = Field(min_length=1, max_length=100)
    cron: str | None = None
    at: datetime | None = None
    timezone: str = "UTC"
    min: Int | None = Field(default=None, ge=0, le=10000)
    max: Int | None = Field(default=None, ge=0, le=10000)
    desired: Int | None = Field(default=None, ge=0, le=10000)

    @model_validator(mode="after")
    def _readable(self) -> Schedule:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if (self.cron is None) == (self.at is None):
            raise ValueError("give a cron or an at (one of them)")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise _SubValueError(("timezone",), f"no time zone {self.timezone!r} (e.g. UTC, Europe/Budapest)") \
                from None
        if self.cron is not None:
            from cloudherd.spec.cron import Cron, CronError

            try:
                Cron.parse(self.cron, self.timezone)
            except CronError as exc:
                raise _SubValueError(("cron",), str(exc)) from None
        if self.min is None and self.max is None and self.desired is None:
            raise ValueError("a schedule sets min, max or desired (at least one)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise _SubValueError(("min",), f"{self.min} is above max ({self.max})")
        return self

    def describe(self) -> str:
        """The schedule in a line, for ``status``."""
        when = f"cron {self.cron}" if self.cron is not None else f"at {self.at}"
        return f"schedule {self.name}: {when} ({self.timezone}) → {self.sets()}"

    def sets(self) -> str:
        """What it sets, e.g. ``min 0, max 1, desired 0``."""
        return ", ".join(f"{key} {value}" for key, value in (("min", self.min), ("max", self.max),
                                                              ("desired", self.desired)) if value is not None)


# newest / oldest: by when the node was made; oldest-release: nodes behind the group's release first;
# closest-to-next-hour: the nodes nearest to the end of a billed hour first (where a cloud bills by the hour)
TerminationPolicy = Literal["newest", "oldest", "oldest-release", "closest-to-next-hour"]


class Hook(_Strict):
    """A lifecycle hook (AWS's): a node made by the group waits after its scripts (``on: launch``), or a node the
    group ends waits before its machine goes (``on: terminate``), until the hook is completed with ``continue``
    or ``abandon`` — by the API, ``cloudherd hook complete``, or the ``command`` the manager runs on the node
    (exit 0: continue) — or until ``timeout`` passes without a heartbeat, which applies ``default``.  A launch
    abandoned is a failed node (replaced); a terminate hook's result ends the node either way."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    on: Literal["launch", "terminate"]
    timeout: Duration = Field(default=3600.0, ge=1, le=7 * 24 * 3600)
    default: Literal["continue", "abandon"] = "abandon"
    command: str | None = Field(default=None, min_length=1)


class WarmPool(_Strict):
    """Nodes made ahead and kept aside (AWS's warm pool): each has run the group's scripts, then was stopped
    (``state: stopped``: no process, its folder and host key kept on ``local``; a stopped instance on a cloud) or
    left running.  A scale-out takes from the pool first (a start instead of a create and a deploy); the pool is
    filled again behind it, up to ``size``.  Pool nodes are not counted, checked, sampled or scaled in.

    ``prepared`` (AWS's MaxGroupPreparedCapacity): the nodes to have ready in all, in service and in the pool; the
    pool then holds what the group's size leaves of it, at least ``size``, and follows the size as it changes."""

    size: Int = Field(default=1, ge=0, le=1000)
    state: Literal["stopped", "running"] = "stopped"
    prepared: Int | None = Field(default=None, ge=0, le=10000)

    def size_beside(self, count: int) -> int:
        """The pool's size beside a group of ``count`` nodes in service."""
        return self.size if self.prepared is None else max(self.size, self.prepared - count)


def _newest_first() -> list[TerminationPolicy]:
    return ["newest"]


class Scaling(_Strict):
    """A group's bounds (``scaling: {min: N, max: M}``, Occopus's spelling of ``min:``/``max:``) and the policies
    that decide its size within them."""

    min: Int | None = Field(default=None, ge=0, le=10000)
    max: Int | None = Field(default=None, ge=0, le=10000)
    policies: list[Policy] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)
    # which nodes a shrink gives up first, each rule breaking the ties of the one before (AWS's termination
    # policies); after them the newest goes first
    termination: list[TerminationPolicy] = Field(default_factory=_newest_first, min_length=1, max_length=4)
    protect_new: bool = False  # new nodes start protected from scale-in (AWS's NewInstancesProtectedFromScaleIn)

    @field_validator("termination", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("termination")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


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
    rollback: Bool = True  # false: a failed batch stops the rollout there, as `up --no-rollback` does


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



class Idle(_Strict):
    """When an infrastructure counts as idle long enough to stop or end (:mod:`cloudherd.engine.idle`): ``idle``
    long with no interactive SSH session on any node, no script or command of cloudherd's running or run, and every
    node's cpu under ``cpu`` percent."""

    idle: Duration = Field(gt=0)
    action: Literal["stop", "down"] = "stop"
    cpu: Float = Field(default=10.0, gt=0, le=100)


class Budget(_Strict):
    """What an infrastructure may cost, in US dollars (:mod:`cloudherd.engine.budget`): ``hourly``, what its running
    machines may cost an hour (a plan past it is refused, and the manager makes no node past it); ``total``, what it
    may cost in all, after which it is stopped or brought down (``on_total``)."""

    hourly: Float | None = Field(default=None, gt=0, le=1_000_000)
    total: Float | None = Field(default=None, gt=0, le=100_000_000)
    on_total: Literal["stop", "down"] = "stop"


class Market(_Strict):
    """Where a group's machines are bought (:mod:`cloudherd.engine.market`): ``spot`` (spare capacity, cheaper, taken
    back by the cloud at short notice) or ``on-demand``; ``market: spot`` alone takes the defaults.

    An interruption (the machine gone with the cloud's spot reason) replaces only that node.  ``interruptions`` of
    them within ``window`` in one place, or a spot create refused for capacity, move new nodes to ``fallback``:
    ``on-demand``, the ``next-place`` of the group's placement, or ``none`` (stay on spot and wait).  After
    ``return_after`` the group tries spot again, and moves its on-demand nodes back one a pass while spot answers.
    ``on_demand_base`` nodes are always on-demand, and ``on_demand_percent`` of those above it (AWS's
    InstancesDistribution); ``max_price`` caps what a spot machine may cost an hour (default: the on-demand price)."""

    type: Literal["spot", "on-demand"] = "spot"
    fallback: Literal["on-demand", "next-place", "none"] = "on-demand"
    return_after: Duration = Field(default=900.0, gt=0)
    on_demand_base: Int = Field(default=0, ge=0, le=10000)
    on_demand_percent: Int = Field(default=0, ge=0, le=100)
    interruptions: Int = Field(default=3, ge=1, le=10000)
    window: Duration = Field(default=3600.0, gt=0)
    max_price: Float | None = Field(default=None, gt=0, le=100_000)

    @model_validator(mode="before")
    @classmethod
    def _one_word(cls, value: Any) -> Any:
        """``market: spot`` / ``market: on-demand``: the type alone."""
        return {"type": value} if isinstance(value, str) else value

    @property
    def spot(self) -> bool:
        return self.type == "spot"

    def on_demand_of(self, count: int) -> int:
        """How many of ``count`` nodes are on-demand by the distribution (the base, then the share above it,
        rounded up as AWS rounds it); all of them when the type is on-demand."""
        if not self.spot:
            return count
        base = min(self.on_demand_base, count)
        return base + math.ceil((count - base) * self.on_demand_percent / 100)
