"""The values the API returns: frozen, typed, and the same for every face (CLI, REST, dashboard).

Why not the ORM rows: a row is tied to a database session, changes under the caller and exposes
columns that are the store's business.  Why pydantic: ``model_dump(mode="json")`` gives the CLI's
``--json`` and the REST service's bodies from the one definition, and its JSON Schema is the OpenAPI
schema.  Every model is frozen so that a value handed out cannot be changed behind the API's back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from cloudherd.errors import UsageError
from cloudherd.lifecycle import InfraState, NodeState


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Action(_Value):
    """One recorded run on a node: a script, a teardown or an exec command (secrets masked)."""

    id: int
    node: str
    kind: str  # script | teardown | exec
    name: str
    exit_code: int | None
    stdout: str
    stderr: str
    started_at: datetime
    ended_at: datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def seconds(self) -> float | None:
        """How long it ran; None while it runs (or if it never finished)."""
        return (self.ended_at - self.started_at).total_seconds() if self.ended_at else None


class Node(_Value):
    """A node as recorded, with the last action that ran on it."""

    id: str
    name: str
    group: str
    index: int
    state: NodeState
    reason: str | None
    provider: str
    provider_id: str | None
    address: str | None
    private_address: str | None
    port: int
    user: str | None
    host_key: str | None  # the pinned public host key (OpenSSH format); public, not a secret
    created_at: datetime
    updated_at: datetime
    last_action: Action | None = None
    health: str | None = None  # healthy | unhealthy | None (not checked yet)
    last_check: str | None = None  # which check, what it answered
    last_check_at: datetime | None = None
    machine: str | None = None  # what the provider says of the machine (``status`` only): local: isolation, limits
    protected: bool = False  # kept from scale-in (``cloudherd protect``)
    standby: bool = False  # out of service, kept: not counted, checked, sampled or replaced (``cloudherd standby``)
    warm: bool = False  # in its group's warm pool (set up ahead, stopped or running), taken first by a scale-out
    market: str | None = None  # spot | on-demand, what its machine was bought as (None: made before markets)

    def answers_to(self, ref: str) -> bool:
        """The same rule as the state row's (:meth:`cloudherd.state.models.Node.answers_to`), the one rule for
        naming a node on every face: its name, its id, its machine's id, or one of its addresses."""
        return ref in (self.name, self.id, self.provider_id, self.address, self.private_address)


class Group(_Value):
    """A node group as last applied."""

    name: str
    provider: str
    provider_type: str
    image: str | None
    size: str | None
    count: int  # desired: the spec's, or what scale asked for since
    tags: dict[str, str]
    min: int | None = None
    max: int | None = None
    actual: int = 0  # nodes not terminated
    healthy: int = 0  # ready nodes
    policies: tuple[str, ...] = ()  # the scaling policies that decide its size, a line each
    metrics: dict[str, float] = Field(default_factory=dict)  # each sampled metric's latest aggregate
    suspended: dict[str, str] = Field(default_factory=dict)  # processes the manager does not run → why
    markets: dict[str, int] = Field(default_factory=dict)  # live nodes by market (spot, on-demand), when bought so
    fallback: str | None = None  # a spot group fallen back: where its new nodes go, since when and why


class InfrastructureSummary(_Value):
    """A line of ``ls``: what an infrastructure is and how many of its nodes are up."""

    id: str
    name: str
    state: InfraState
    reason: str | None
    spec: str
    created_at: datetime
    updated_at: datetime
    live_nodes: int
    ready_nodes: int
    attached: bool = False  # kept alive by `manage --all`
    managed: bool = False  # a manager holds it now
    last_pass_at: datetime | None = None
    last_pass: str | None = None
    ends_at: datetime | None = None  # its time-to-live runs out then: the manager brings it down


class Infrastructure(InfrastructureSummary):
    # when autostop / autodown act if it stays idle from now on (``status`` only; absent when the spec has none)
    idle_deadlines: dict[str, datetime] = Field(default_factory=dict)
    notifications_given_up: int = 0  # its webhook notifications given up (``status`` only)
    """An infrastructure with its groups and every node it ever had (terminated ones included)."""

    groups: tuple[Group, ...]
    nodes: tuple[Node, ...]

    def node(self, name: str) -> Node:
        """The one live node that answers to ``name`` (:meth:`Node.answers_to`: name, id, machine id or an
        address); KeyError when there is none, UsageError when several do."""
        found = [node for node in self.live if node.answers_to(name)]
        if not found:
            raise KeyError(name)
        if len(found) > 1:
            raise UsageError(f"{name!r} names {len(found)} nodes ({', '.join(n.name for n in found[:5])}): "
                             "give the node's id")
        return found[0]

    @property
    def live(self) -> tuple[Node, ...]:
        """Nodes not terminated."""
        return tuple(n for n in self.nodes if n.state != NodeState.TERMINATED)


class Remedy(_Value):
    """The option that fixes an error, as the API spells it (each face words it its own way)."""

    option: str
    value: str


class ExecResult(_Value):
    """What a command did on one node: exit code and output, or why it could not run."""

    node: str
    group: str
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    error: str | None = None
    remedy: Remedy | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_code == 0


class TransferResult(_Value):
    """What a push or pull copied on one node, or why it failed."""

    node: str
    group: str
    files: tuple[str, ...]
    seconds: float
    error: str | None = None
    remedy: Remedy | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.error is None


class GroupPlan(_Value):
    """One group's part of a plan."""

    name: str
    provider: str
    count: int  # wanted
    current: int  # counted now
    new: bool
    removed: bool
    create: int
    destroy: tuple[str, ...]  # node names
    replace: tuple[str, ...]
    reasons: tuple[str, ...]
    scripts: dict[str, tuple[str, ...]]  # script source -> names of the nodes it will run on
    rolling: tuple[str, ...] = ()  # nodes of an older release a rolling update replaces, ``surge`` at a time
    surge: int = 1
    warmed: int = 0  # warm-pool nodes taken into service (started, instead of made)
    pool_create: int = 0  # nodes made into the warm pool
    hourly: float | None = None  # one node's price, USD an hour (None: unknown; ``prices`` says why)
    prices: str = ""  # the price book the price is from (its date), or why there is no price

    @computed_field  # type: ignore[prop-decorator]
    @property
    def hourly_delta(self) -> float | None:
        """What the plan changes in the group's cost, USD an hour: the nodes it starts less the ones it ends."""
        if self.hourly is None:
            return None
        return (self.create + self.warmed - len(self.destroy)) * self.hourly

    @property
    def changes(self) -> bool:
        return bool(self.create or self.destroy or self.replace or self.scripts or self.rolling or self.warmed
                    or self.pool_create)


class PlanTotals(_Value):
    create: int
    destroy: int
    replace: int
    script_runs: int


class Plan(_Value):
    """What ``up`` of a spec would change; computing it changes nothing."""

    name: str
    infrastructure: str | None  # None: the infrastructure would be new
    groups: tuple[GroupPlan, ...]
    warnings: tuple[str, ...] = ()  # FILE:LINE: what of the file loads but will not be done as written
    over_budget: str | None = None  # why ``up`` of it would be refused: its sizes cost more an hour than allowed

    @computed_field  # type: ignore[prop-decorator]
    @property
    def changes(self) -> bool:
        return any(g.changes for g in self.groups)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def hourly_delta(self) -> float | None:
        """The plan's change in cost, USD an hour (None: a changing group's price is unknown)."""
        deltas = [g.hourly_delta for g in self.groups if g.create or g.destroy or g.warmed]
        return None if any(d is None for d in deltas) else sum(d for d in deltas if d is not None)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def totals(self) -> PlanTotals:
        return PlanTotals(
            create=sum(g.create for g in self.groups),
            destroy=sum(len(g.destroy) for g in self.groups),
            replace=sum(len(g.replace) + len(g.rolling) for g in self.groups),
            script_runs=sum(len(nodes) for g in self.groups for nodes in g.scripts.values()),
        )


class Orphan(_Value):
    """A machine (or network rule) carrying cloudherd's tags that no infrastructure here accounts for."""

    provider: str
    id: str
    name: str
    state: str
    address: str | None
    infra: str | None
    group: str | None
    why: str
    kind: str = "machine"


class Event(_Value):
    """One entry of an infrastructure's event log."""

    id: int
    at: datetime
    kind: str
    message: str
    node: str | None = None
    cause: int | None = None  # the id of the event this one follows from
    origin: str | None = None  # the operation it happened in ("manager pass (fence 3, pid 812)", "cloudherd up")
    trace_id: str | None = None  # that operation's trace, when traces are exported


class Why(_Value):
    """Why a node exists (``cloudherd why``): the event that made it and the events it follows from, newest
    first.  ``inferred``: no event names the node as made (made before causes were kept, or by an ``up``
    cut short); the chain then starts at the newest decision recorded before it was."""

    node: str
    infrastructure: str
    infrastructure_id: str
    state: str
    created_at: datetime
    chain: tuple[Event, ...] = ()
    inferred: bool = False


class Revision(_Value):
    """One release of an infrastructure (``history``): its number, what made it, and how its apply ended."""

    number: int
    digest: str  # of the release: the spec without sizes, and the scripts
    author: str
    origin: str  # "up", "submit", "rollback to 2"
    state: str  # applying | applied | failed
    reason: str | None = None
    created_at: datetime
    ended_at: datetime | None = None
    current: bool = False  # the latest: what the fleet runs, or is being changed to
    scripts: list[str] = Field(default_factory=list)  # "group: source" of each script, in order


class RolloutGroup(_Value):
    """One rolling group's progress towards the current revision."""

    name: str
    count: int
    updated: tuple[str, ...]  # nodes on the current release
    behind: tuple[str, ...]  # nodes still to replace, in the order they go
    surge: int


class Rollout(_Value):
    """Where an infrastructure's latest release stands (``cloudherd rollout ID status``)."""

    infrastructure: str
    name: str
    revision: int | None  # None: no revision recorded yet
    state: str  # of the revision: applying | applied | paused | failed | aborted
    reason: str | None = None
    groups: tuple[RolloutGroup, ...] = ()


class PassResult(_Value):
    """What one reconcile pass over one infrastructure saw and did."""

    infrastructure: str
    name: str
    checked: int
    unhealthy: tuple[str, ...]
    failed: tuple[str, ...]
    made: tuple[str, ...]  # nodes this pass made: replacements and scale-ups
    retired: tuple[str, ...]  # nodes this pass terminated: failed, dead or surplus
    scaled: tuple[str, ...]
    held: tuple[str, ...]  # circuit breaker messages
    converged: bool
    error: str | None
    summary: str


class ScaleResult(_Value):
    """What a scale request asked for and what became of it."""

    group: str
    before: int
    target: int
    note: str  # e.g. " (clamped to max 5: asked for 7)"
    applied: bool  # a pass consumed it already (no manager was running); else the manager's next pass will
    outcome: str | None = None


class HookHold(_Value):
    """A node held by one lifecycle hook of its group (``waiting`` after its launch, ``draining`` before its end)."""

    node: str  # the node's name
    node_id: str
    group: str
    hook: str
    transition: str  # launch | terminate
    token: str  # AWS's LifecycleActionToken
    started_at: datetime
    deadline: datetime  # when the hook's default applies, unless a heartbeat moves it on
    result: str | None = None  # CONTINUE | ABANDON once completed
    completed_by: str | None = None  # a user, the hook's command, or the timeout


class Size(_Value):
    name: str
    cpus: float
    memory_mb: int
    default: bool = False


class Image(_Value):
    id: str
    name: str


class SpecSummary(_Value):
    """A spec that loads and whose scripts render: its name and each group's node count."""

    name: str
    groups: dict[str, int]
    warnings: tuple[str, ...] = ()  # FILE:LINE: what of the file loads but will not be done as written


class Fault(_Value):
    """A fault made (or healed) on purpose on a local node: which, where, and what was done."""

    infrastructure: str
    node: str
    kind: str
    done: str


class Setup(_Value):
    """Where ``init`` found or made the user, the key pair and the database."""

    user: str
    key: str
    database: str
    data: str


class User(_Value):
    """Someone the server knows: owns infrastructures and tokens."""

    id: str
    name: str
    created_at: datetime


class Token(_Value):
    """A token as listed: never its secret (only its hash, or its sealed AWS secret, is kept)."""

    id: str
    name: str
    user: str
    kind: str  # bearer | aws
    key_id: str  # bearer: the token's public prefix; aws: the access key id
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class IssuedToken(_Value):
    """A token just made: the one time its secret is shown."""

    id: str
    name: str
    user: str
    kind: str
    token: str | None = None  # bearer
    access_key_id: str | None = None  # aws
    secret_access_key: str | None = None  # aws


class Job(_Value):
    """Work the server answered 202 for: an exec on a fleet, or a teardown; ``results`` once it is done."""

    id: str
    kind: str  # exec | down
    state: str  # running | done | failed | interrupted
    infrastructure: str | None
    created_at: datetime
    ended_at: datetime | None
    error: str | None = None
    results: tuple[ExecResult, ...] = ()
    value: dict[str, Any] | None = None  # a rollback's revision, a resume's or abort's rollout, once done


class CostLine(_Value):
    """What one group's machines on one provider have cost over a report's window."""

    infrastructure: str  # its name
    infrastructure_id: str
    destroyed: bool
    group: str
    provider: str
    machines: int  # nodes that held a machine in the window
    running: int  # of them, still running now
    node_hours: float
    hourly: float | None  # the price of one of its nodes, USD an hour (None: unknown)
    hourly_now: float | None  # what its running machines cost an hour now
    cost: float | None  # USD over the window (None: its price is unknown)
    prices: str  # the price book (its date), or why there is no price
    market: str = "on-demand"  # the line's machines were bought as: on-demand or spot


class CostReport(_Value):
    """``cloudherd cost``: by infrastructure, group and provider, with the price books used and what to know."""

    since: datetime | None
    until: datetime
    lines: tuple[CostLine, ...]
    notes: tuple[str, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> float:
        """What is known of the cost: the lines with a price."""
        return sum(line.cost or 0.0 for line in self.lines)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def hourly_now(self) -> float:
        return sum(line.hourly_now or 0.0 for line in self.lines)
