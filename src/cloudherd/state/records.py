"""Rows of the state as plain values, for the commands that only read (``ls``, ``status``, ``plan``).

The ORM's rows (:mod:`cloudherd.state.models`) cost SQLAlchemy's import, most of a read-only command's start-up;
these carry the same attribute names, so that the views and the engine's read-only steps take either.  They
are declarations of the columns the reads need, nothing more; ``tests/unit/test_records.py`` holds each field to
its model's column (name and kind), so that a migration cannot leave them behind unnoticed.

How a stored value is read back is said by the field's annotation: a moment (an aware UTC datetime), JSON, a
flag, or as stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar, Self

from cloudherd.times import as_utc


def _moment(value: Any) -> datetime | None:
    if value is None:
        return None
    return as_utc(value if isinstance(value, datetime) else datetime.fromisoformat(value))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _flag(value: Any) -> bool:
    return bool(value)


def _decoder(annotation: str) -> Callable[[Any], Any] | None:
    if annotation.startswith("datetime"):
        return _moment
    if annotation.startswith("dict"):
        return _json
    if annotation == "bool":
        return _flag
    return None


class Record:
    """A row read by :class:`cloudherd.state.reader.Reader`: built from a mapping of its table's columns."""

    TABLE: ClassVar[str]
    _decoders: ClassVar[dict[str, Callable[[Any], Any] | None]]

    @classmethod
    def columns(cls) -> list[str]:
        """The columns this record reads, as an SQL list."""
        return [f.name for f in fields(cls) if f.init and f.metadata.get("column", True)]  # type: ignore[arg-type]

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Self:
        decoders = cls.__dict__.get("_decoders")
        if decoders is None:
            kinds = {f.name: str(f.type) for f in fields(cls)}  # type: ignore[arg-type]
            decoders = {name: _decoder(kinds[name]) for name in cls.columns()}
            cls._decoders = decoders
        return cls(**{name: (decode(row[name]) if decode else row[name]) for name, decode in decoders.items()})


DERIVED = {"column": False}  # a field's metadata: not a column of the table (the reader fills it from another)


@dataclass(eq=False)
class NodeRecord(Record):
    TABLE: ClassVar[str] = "nodes"

    id: str
    infrastructure_id: str
    group_name: str
    name: str
    index: int
    provider: str
    provider_id: str | None
    state: str
    address: str | None
    private_address: str | None
    port: int
    ssh_user: str | None
    host_key: str | None
    workdir: str | None
    reason: str | None
    created_at: datetime
    updated_at: datetime
    ready_at: datetime | None
    health: str | None
    failing_since: datetime | None
    failures: int
    last_check: str | None
    last_check_at: datetime | None
    release: str | None
    shape: str | None
    protected: bool
    standby: bool
    warm: bool
    market: str | None

    def answers_to(self, ref: str) -> bool:
        """The same rule as :meth:`cloudherd.state.models.Node.answers_to`."""
        return ref in (self.name, self.id, self.provider_id, self.address, self.private_address)


@dataclass(eq=False)
class GroupRecord(Record):
    TABLE: ClassVar[str] = "groups"

    id: str
    infrastructure_id: str
    name: str
    position: int
    provider: str
    provider_type: str
    image: str | None
    size: str | None
    count: int
    config: dict[str, Any]
    suspended: dict[str, Any] | None
    market: dict[str, Any] | None


@dataclass(eq=False)
class InfraRecord(Record):
    """An infrastructure; ``groups`` and ``nodes`` as :meth:`Store.infrastructure` loads them (in position and
    name order), when the reader was asked for them."""

    TABLE: ClassVar[str] = "infrastructures"

    id: str
    name: str
    owner_id: str
    state: str
    reason: str | None
    spec_path: str
    spec_text: str
    ssh_user: str | None
    ssh_key_path: str
    created_at: datetime
    updated_at: datetime
    attached: bool
    last_pass_at: datetime | None
    last_pass: str | None
    confined: dict[str, Any] | None
    ends_at: datetime | None
    busy_at: datetime | None
    groups: list[GroupRecord] = field(default_factory=list, metadata=DERIVED)
    nodes: list[NodeRecord] = field(default_factory=list, metadata=DERIVED)


@dataclass(eq=False)
class ActionRecord(Record):
    TABLE: ClassVar[str] = "actions"

    id: int
    infrastructure_id: str
    node_id: str
    kind: str
    name: str
    exit_code: int | None
    stdout: str
    stderr: str
    started_at: datetime
    ended_at: datetime | None
    digest: str | None


@dataclass(eq=False)
class HookWaitRecord(Record):
    TABLE: ClassVar[str] = "hook_waits"

    id: int
    infrastructure_id: str
    node_id: str
    group_name: str
    hook: str
    transition: str
    token: str
    started_at: datetime
    deadline: datetime
    result: str | None
    completed_at: datetime | None
    completed_by: str | None


@dataclass(eq=False)
class RevisionRecord(Record):
    TABLE: ClassVar[str] = "revisions"

    id: int
    infrastructure_id: str
    number: int
    digest: str
    spec_text: str
    spec_path: str
    bundle: dict[str, Any]
    author: str
    origin: str
    state: str
    reason: str | None
    created_at: datetime
    ended_at: datetime | None


@dataclass(eq=False)
class LeaseRecord(Record):
    TABLE: ClassVar[str] = "leases"

    scope: str
    owner: str
    operation: str
    holder: dict[str, Any]
    fence: int
    acquired_at: datetime
    expires_at: datetime
