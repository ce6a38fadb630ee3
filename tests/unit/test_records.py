"""The lean reader's records carry the models' columns under the same names and read them back as the same kinds:
a migration that adds, renames or retypes a column the reads use fails here, not in a user's ``status``."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

import pytest
from sqlalchemy import JSON, Boolean

from cloudherd.state import models
from cloudherd.state.records import (
    ActionRecord,
    GroupRecord,
    HookWaitRecord,
    InfraRecord,
    LeaseRecord,
    NodeRecord,
    Record,
    RevisionRecord,
)

PAIRS: list[tuple[type[Record], type[models.Base]]] = [
    (InfraRecord, models.Infrastructure), (GroupRecord, models.Group), (NodeRecord, models.Node),
    (ActionRecord, models.Action), (RevisionRecord, models.Revision), (LeaseRecord, models.Lease),
    (HookWaitRecord, models.HookWait),
]


def kind_of(column: object) -> str:
    kind = column.type  # type: ignore[attr-defined]
    if isinstance(kind, models.UTCDateTime):
        return "moment"
    if isinstance(kind, JSON):
        return "json"
    if isinstance(kind, Boolean):
        return "flag"
    return "plain"


def kind_of_field(annotation: str) -> str:
    if annotation.startswith("datetime"):
        return "moment"
    if annotation.startswith("dict"):
        return "json"
    return "flag" if annotation == "bool" else "plain"


@pytest.mark.parametrize(("record", "model"), PAIRS, ids=[r.__name__ for r, _ in PAIRS])
def test_each_record_reads_its_models_columns_as_the_same_kinds(record: type[Record], model: type[models.Base]) -> None:
    table = model.__table__
    assert table.name == record.TABLE
    columns = {column.name: column for column in table.columns}
    assert set(record.columns()) == set(columns), "a record reads every column of its table, by the same name"
    kinds = {f.name: kind_of_field(str(f.type)) for f in fields(record)}  # type: ignore[arg-type]
    assert {name: kinds[name] for name in columns} == {name: kind_of(c) for name, c in columns.items()}


def test_a_record_reads_back_what_sqlite_stores() -> None:
    row = {name: None for name in LeaseRecord.columns()} | {
        "scope": "manager:web", "owner": "o", "operation": "manage", "fence": 3,
        "holder": '{"pid": 7, "host": "h"}', "acquired_at": "2026-12-06 18:41:49.123456",
        "expires_at": "2026-12-06 18:42:04.5"}
    lease = LeaseRecord.of(row)
    assert lease.holder == {"pid": 7, "host": "h"}
    assert lease.acquired_at == datetime(2026, 12, 6, 18, 41, 49, 123456, tzinfo=UTC)
    assert lease.expires_at.tzinfo is UTC
    assert InfraRecord.of({name: None for name in InfraRecord.columns()} | {"attached": 1}).attached is True
