"""SQLAlchemy 2 models of cloudherd's state.  Changing them needs an Alembic migration."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import DDL, JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, event, false
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from cloudherd.lifecycle import RevisionState
from cloudherd.times import as_utc, utcnow

__all__ = ["utcnow"]  # where the engine has taken it from


def new_id() -> str:
    return uuid.uuid4().hex[:12]


class UTCDateTime(TypeDecorator[datetime]):
    """A moment column that always gives back an aware UTC datetime: PostgreSQL keeps the zone, SQLite does
    not, and without this each reader patched what SQLite returned.  The same DDL as ``DateTime(timezone=True)``
    (no migration)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    public_key: Mapped[str] = mapped_column(Text)
    private_key_path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Infrastructure(Base):
    __tablename__ = "infrastructures"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    # creating | updating | ready | failed | destroying | destroyed
    state: Mapped[str] = mapped_column(String(20), default="creating")
    reason: Mapped[str | None] = mapped_column(Text)
    spec_path: Mapped[str] = mapped_column(Text)
    spec_text: Mapped[str] = mapped_column(Text)
    ssh_user: Mapped[str | None] = mapped_column(String(100))
    ssh_key_path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    attached: Mapped[bool] = mapped_column(default=False)  # kept alive by `manage --all`
    last_pass_at: Mapped[datetime | None] = mapped_column()  # the manager's last reconcile pass
    last_pass: Mapped[str | None] = mapped_column(Text)  # what that pass did, in a line
    # a spec that came over the network: the server's clouds it may use (spec/confine.py); None for a local one
    confined: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column()  # its time-to-live runs out: the manager brings it down
    busy_at: Mapped[datetime | None] = mapped_column()  # a pass last found it in use (its idle time counts from it)

    groups: Mapped[list[Group]] = relationship(back_populates="infrastructure", order_by="Group.position")
    nodes: Mapped[list[Node]] = relationship(back_populates="infrastructure", order_by="Node.name")


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("infrastructure_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    infrastructure_id: Mapped[str] = mapped_column(ForeignKey("infrastructures.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str] = mapped_column(String(100))
    provider_type: Mapped[str] = mapped_column(String(50))
    image: Mapped[str | None] = mapped_column(String(200))
    size: Mapped[str | None] = mapped_column(String(200))
    count: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)  # scripts, teardown, env, tags: no secrets
    # the processes the manager does not run for it (lifecycle.Process → why), until resumed; None: none
    suspended: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    # a spot group fallen back: {"on": "on-demand" | place, "since": iso time, "reason": why} (None: on its market)
    market: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    infrastructure: Mapped[Infrastructure] = relationship(back_populates="groups")


class Node(Base):
    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    infrastructure_id: Mapped[str] = mapped_column(ForeignKey("infrastructures.id", ondelete="CASCADE"), index=True)
    group_name: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    index: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(100))
    provider_id: Mapped[str | None] = mapped_column(String(200), index=True)
    # pending | booting | deploying | ready | failed | dead | terminating | terminated
    state: Mapped[str] = mapped_column(String(20), default="pending")
    address: Mapped[str | None] = mapped_column(String(100))
    private_address: Mapped[str | None] = mapped_column(String(100))
    port: Mapped[int] = mapped_column(Integer, default=22)
    ssh_user: Mapped[str | None] = mapped_column(String(100))
    host_key: Mapped[str | None] = mapped_column(Text)
    workdir: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column()  # when its scripts last all succeeded (grace runs from it)
    health: Mapped[str | None] = mapped_column(String(20))  # healthy | unhealthy | None (not checked yet)
    failing_since: Mapped[datetime | None] = mapped_column()  # first of the current run of failed checks
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive failed checks
    last_check: Mapped[str | None] = mapped_column(Text)  # which check, what it answered
    last_check_at: Mapped[datetime | None] = mapped_column()
    release: Mapped[str | None] = mapped_column(String(64))  # its group's release digest it was made or deployed at
    shape: Mapped[str | None] = mapped_column(String(64))  # the digest of what it was made as (image, size, …)
    protected: Mapped[bool] = mapped_column(default=False, server_default=false())  # never chosen to scale in
    standby: Mapped[bool] = mapped_column(default=False, server_default=false())  # out of service, kept
    warm: Mapped[bool] = mapped_column(default=False, server_default=false())  # in its group's warm pool
    market: Mapped[str | None] = mapped_column(String(20))  # spot | on-demand (None: made before markets)

    infrastructure: Mapped[Infrastructure] = relationship(back_populates="nodes")

    def answers_to(self, ref: str) -> bool:
        """The one rule for naming a node, on every face: its name, its id, its machine's id, or one of its
        addresses."""
        return ref in (self.name, self.id, self.provider_id, self.address, self.private_address)


class Action(Base):
    """One script run or command on one node: what ran, how it ended, what it printed."""

    __tablename__ = "actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    infrastructure_id: Mapped[str] = mapped_column(ForeignKey("infrastructures.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # script | teardown | exec
    name: Mapped[str] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    stdout: Mapped[str] = mapped_column(Text, default="")
    stderr: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()
    # sha256 of what ran (rendered script, its name and env): a re-run skips a script whose digest last succeeded
    digest: Mapped[str | None] = mapped_column(String(64))


class HookWait(Base):
    """A node held by one lifecycle hook of its group: after its launch, or before its machine ends.  Open until
    ``result`` is set (CONTINUE or ABANDON): by a user, by the hook's command, or by the timeout's default."""

    __tablename__ = "hook_waits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    infrastructure_id: Mapped[str] = mapped_column(ForeignKey("infrastructures.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    group_name: Mapped[str] = mapped_column(String(100))
    hook: Mapped[str] = mapped_column(String(100))
    transition: Mapped[str] = mapped_column(String(20))  # launch | terminate
    token: Mapped[str] = mapped_column(String(64), default=lambda: uuid.uuid4().hex)  # AWS's LifecycleActionToken
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    deadline: Mapped[datetime] = mapped_column()  # the heartbeat timeout from the start or the last heartbeat
    result: Mapped[str | None] = mapped_column(String(20))  # CONTINUE | ABANDON once completed
    completed_at: Mapped[datetime | None] = mapped_column()
    completed_by: Mapped[str | None] = mapped_column(Text)  # who or what: a user, the hook's command, the timeout


class HostKey(Base):
    """A node's SSH host key as first seen (or as its provider reported it); a later mismatch is refused.

    Replaced keys stay as history with ``replaced_at`` set, so a re-pin is auditable.
    """

    __tablename__ = "host_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    infrastructure_id: Mapped[str] = mapped_column(ForeignKey("infrastructures.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    public_key: Mapped[str] = mapped_column(Text)  # OpenSSH line: "ssh-ed25519 AAAA..."
    fingerprint: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(20))  # provider | first-contact | re-pinned
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    replaced_at: Mapped[datetime | None] = mapped_column()


class Event(Base):
    """A feed of what happened, for progress displays and audits."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    infrastructure_id: Mapped[str | None] = mapped_column(
        ForeignKey("infrastructures.id", ondelete="CASCADE"), index=True
    )
    node_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(50))
    message: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    cause_id: Mapped[int | None] = mapped_column(Integer)  # the event this one follows from (no key: events are pruned)
    origin: Mapped[str | None] = mapped_column(String(200))  # the operation it happened in ("manager pass (fence 3)")
    trace_id: Mapped[str | None] = mapped_column(String(32))  # that operation's trace, when traces are exported


class Revision(Base):
    """One release of an infrastructure, as an ``up`` applied it: the spec as written and the scripts it ran,
    so that a rollback needs nothing from the disk.  Sizes are not part of a release (scaling makes none)."""

    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("infrastructure_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    infrastructure_id: Mapped[str] = mapped_column(ForeignKey("infrastructures.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))  # of the release: spec and scripts, counts left out
    spec_text: Mapped[str] = mapped_column(Text)
    spec_path: Mapped[str] = mapped_column(Text)
    bundle: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"groups": {name: {"scripts": [...], "teardown": …}}}
    author: Mapped[str] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(String(100))  # "up", "rollback to 2", "submit"
    state: Mapped[str] = mapped_column(String(20), default=RevisionState.APPLYING)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()


class Intent(Base):
    """The journal: a mutating cloud call, written (and committed) before it is made, closed after.

    A crash between the two leaves an ``open`` intent; the next command that touches the
    infrastructure resolves it by listing what carries the intent's tag: what exists is adopted
    (create) or terminated again (terminate), and the intent is closed.  Nothing is lost or leaked.
    """

    __tablename__ = "intents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    infrastructure_id: Mapped[str] = mapped_column(ForeignKey("infrastructures.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))  # create | terminate
    group_name: Mapped[str | None] = mapped_column(String(100))
    count: Mapped[int] = mapped_column(Integer, default=0)
    token: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)  # what the made instances carry
    node_ids: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"nodes": [our node row ids]}
    provider_ids: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"ids": [...]}: asked / made
    state: Mapped[str] = mapped_column(String(20), default="open", index=True)  # open | done | failed | resolved
    outcome: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column()


class ScaleRequest(Base):
    """A scale asked for (``scale web +2``), stored until a reconcile pass consumes it, so that it survives
    a manager's restart and is seen by whichever manager holds the infrastructure."""

    __tablename__ = "scale_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    infrastructure_id: Mapped[str] = mapped_column(ForeignKey("infrastructures.id", ondelete="CASCADE"), index=True)
    group_name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(10))  # add | remove | set
    amount: Mapped[int] = mapped_column(Integer)
    victims: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"nodes": [node ids]} to remove first
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    consumed_at: Mapped[datetime | None] = mapped_column()
    outcome: Mapped[str | None] = mapped_column(Text)


class MetricSample(Base):
    """A group's metric as a manager's pass sampled it: the aggregate over its ready nodes (what its scaling
    policies decide from, and what ``status`` and the dashboard show).  Kept bounded, newest last."""

    __tablename__ = "metric_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    infrastructure_id: Mapped[str] = mapped_column(ForeignKey("infrastructures.id", ondelete="CASCADE"), index=True)
    group_name: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    nodes: Mapped[int] = mapped_column(Integer)  # how many nodes the aggregate is over
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ScheduleFiring(Base):
    """A scheduled action as it fired: for which occurrence (each fires once), and the bounds and size it set.
    The bounds of the newest firing since the infrastructure's latest release are the group's in force."""

    __tablename__ = "schedule_firings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    infrastructure_id: Mapped[str] = mapped_column(ForeignKey("infrastructures.id", ondelete="CASCADE"), index=True)
    group_name: Mapped[str] = mapped_column(String(100))
    schedule: Mapped[str] = mapped_column(String(100))
    occurrence: Mapped[datetime] = mapped_column()
    min: Mapped[int | None] = mapped_column(Integer)
    max: Mapped[int | None] = mapped_column(Integer)
    desired: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class NodeDefinition(Base):
    """An Occopus node definition (``'node_def:<type>'``: its implementations), imported once and used by
    every Occopus description that names its type, as ``occopus-import`` did."""

    __tablename__ = "node_defs"

    type: Mapped[str] = mapped_column(String(200), primary_key=True)
    implementations: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"list": [...]}
    source: Mapped[str] = mapped_column(Text)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)


# One live infrastructure per name, enforced by the database itself: two ``up`` of a new name racing
# each other cannot both insert (the loser's insert fails, it waits for the lease and converges).
# Written as DDL (the same on SQLite and PostgreSQL; migration 0004 makes it in a real database) rather than as
# an Index with dialect arguments, which would import the PostgreSQL dialect on every command's start.
event.listen(Infrastructure.__table__, "after_create", DDL(
    "CREATE UNIQUE INDEX ux_infrastructures_live_name ON infrastructures (name) WHERE state != 'destroyed'"))


class Lease(Base):
    """Who is changing (or maintaining) what, until when: one row per scope, e.g. an infrastructure.

    A holder renews ``expires_at`` while it works; a holder that died lets it lapse, and the next one
    takes over (at once when the holder was a process on this host that is gone).  ``fence`` grows
    with every new holder, so a holder that wakes up late can tell that it no longer holds the lease.
    """

    __tablename__ = "leases"

    scope: Mapped[str] = mapped_column(String(300), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))  # a fresh token per acquisition
    operation: Mapped[str] = mapped_column(String(50))  # up | down | manage | …
    holder: Mapped[dict[str, Any]] = mapped_column(default=dict)  # user, host, pid, process start
    fence: Mapped[int] = mapped_column(Integer, default=1)
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class ApiToken(Base):
    """A credential for the network faces: a bearer token (only its hash is kept) or an AWS-style access
    key pair (the secret sealed with the server's key: SigV4 needs the secret itself to check a signature)."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(10))  # bearer | aws
    key_id: Mapped[str] = mapped_column(String(64), unique=True)  # bearer: the token's public part; aws: AKID
    secret_hash: Mapped[str | None] = mapped_column(String(64))  # bearer: sha256 of the token's secret part
    secret_sealed: Mapped[str | None] = mapped_column(Text)  # aws: the secret, encrypted (Fernet)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class LaunchConfiguration(Base):
    """An AWS-style launch configuration.  Phantom's convention: ``name@cloud`` rows sharing ``name`` are one
    template with an entry per cloud."""

    __tablename__ = "launch_configurations"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))  # as the client spelled it: "web@hotel"
    template: Mapped[str] = mapped_column(String(255))  # "web"
    cloud: Mapped[str | None] = mapped_column(String(100))  # "hotel" (None: no @cloud in the name)
    image: Mapped[str] = mapped_column(String(255))
    instance_type: Mapped[str | None] = mapped_column(String(255))
    user_data: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)  # KeyName, SecurityGroups…: echoed back
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScalingGroup(Base):
    """An AWS-style Auto Scaling group: kept by an infrastructure of one group (``infrastructure_id``); the
    sizes and clouds live in that infrastructure's spec, the AWS-only facts (tags, zones) here."""

    __tablename__ = "scaling_groups"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    infrastructure_id: Mapped[str] = mapped_column(ForeignKey("infrastructures.id", ondelete="CASCADE"))
    launch_configuration: Mapped[str] = mapped_column(String(255))
    min_size: Mapped[int] = mapped_column(Integer)
    max_size: Mapped[int] = mapped_column(Integer)
    zones: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"list": [...]}
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"list": [{key, value, propagate}]}
    status: Mapped[str | None] = mapped_column(String(50))  # None, or "Delete in progress" while it goes
    # PutScalingPolicy's policies by name (target tracking ones also go into the group's spec)
    policies: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # PutScheduledUpdateGroupAction's actions by name (the group's spec has them as its schedules)
    schedules: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # TerminationPolicies and NewInstancesProtectedFromScaleIn: {"termination": [...], "protect_new": bool}
    choices: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """Work a network face started and answered 202 for (an exec, a teardown): its outcome is kept here, so
    that it can be asked for later, also after the server restarted (a job cut by a restart says so)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    infrastructure_id: Mapped[str | None] = mapped_column(ForeignKey("infrastructures.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))  # exec | down
    state: Mapped[str] = mapped_column(String(20), default="running")  # running | done | failed | interrupted
    request: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()


class Webhook(Base):
    """Where notifications go (``cloudherd notify add``): a URL, the secret its POSTs are signed with (sealed like
    the AWS-style secrets), and optionally the SNS-style topic ARN the Auto Scaling API names it by.  What it
    receives is its routes'."""

    __tablename__ = "webhooks"
    __table_args__ = (UniqueConstraint("owner_id", "topic"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    topic: Mapped[str | None] = mapped_column(String(255))
    secret_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookRoute(Base):
    """Which events go to a webhook: of one infrastructure (or every one of its owner's), of the chosen kinds
    (:data:`cloudherd.webhooks.KINDS`, or the Auto Scaling types when ``scaling_group`` names the group whose
    PutNotificationConfiguration made it)."""

    __tablename__ = "webhook_routes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    infrastructure_id: Mapped[str | None] = mapped_column(ForeignKey("infrastructures.id", ondelete="CASCADE"),
                                                          index=True)
    kinds: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"list": [...]}
    scaling_group: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxRow(Base):
    """One notification to deliver, written in the transaction of its event; sent in ``id`` order per webhook and
    infrastructure, retried with backoff until a 2xx (``sent``) or given up (``failed``)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_id)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    infrastructure_id: Mapped[str | None] = mapped_column(String(32))
    event_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(10), default="pending", index=True)  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None] = mapped_column()
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
