"""A read-only view of the state in plain SQL, for the commands that only read (``ls``, ``status``, ``plan``).

Why beside the store: SQLAlchemy's import is most of such a command's start-up (a quarter of a second here), more
than the whole of what the command does.  On the embedded default, SQLite, Python's own driver reads the same
file in a few milliseconds, into :mod:`cloudherd.state.records`.  Anything else is left to the store: another
database (PostgreSQL needs its driver and SQLAlchemy anyway), a file that does not exist yet, or one whose schema
is not the newest (the store migrates it first).  Every method answers as the store's method of the same name
does; the tests hold the two side by side.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from cloudherd.lifecycle import ACTIVE_INFRA_STATES, InfraState, NodeState
from cloudherd.state.location import HEAD_REVISION
from cloudherd.state.naming import blank_reference, pick_infrastructure
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

R = TypeVar("R", bound=Record)


def sqlite_file(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` URL; None for any other URL (options, memory, another database)."""
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    path = url.removeprefix("sqlite:///")
    return Path(path) if path and path != ":memory:" else None


class Reader:
    """Reads of the state, over one read-only SQLite connection; each statement sees the latest commit."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def open(cls, url: str) -> Reader | None:
        """A reader of the database at ``url``, or None when the store must read it (see the module's doc)."""
        path = sqlite_file(url)
        if path is None or not path.is_file():
            return None
        try:
            connection = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=10,
                                         check_same_thread=False, isolation_level=None)
        except sqlite3.Error:
            return None
        connection.row_factory = sqlite3.Row
        try:
            version = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            version = None
        if version is None or version[0] != HEAD_REVISION:
            connection.close()
            return None
        return cls(connection)

    def close(self) -> None:
        self._db.close()

    def _rows(self, sql: str, *params: Any) -> list[Any]:
        """The rows of ``sql`` (``sqlite3.Row``: by column name or position)."""
        return self._db.execute(sql, params).fetchall()

    def _records(self, kind: type[R], where: str, *params: Any, order: str = "") -> list[R]:
        columns = ", ".join(f'"{column}"' for column in kind.columns())  # "index" is a keyword
        sql = f"SELECT {columns} FROM {kind.TABLE} WHERE {where}"
        return [kind.of(row) for row in self._rows(sql + (f" ORDER BY {order}" if order else ""), *params)]

    # -- infrastructures -------------------------------------------------------------------------------

    def infrastructures(self, *, include_destroyed: bool = False, with_nodes: bool = False) -> list[InfraRecord]:
        """Oldest first, without their groups and nodes (see :meth:`node_counts`; ``with_nodes`` is the store's,
        the reader has no use for it)."""
        if include_destroyed:
            return self._records(InfraRecord, "1", order="created_at")
        return self._records(InfraRecord, "state != ?", InfraState.DESTROYED.value, order="created_at")

    def node_counts(self) -> dict[str, tuple[int, int]]:
        """Each infrastructure's live nodes and ready nodes."""
        rows = self._rows("SELECT infrastructure_id, sum(state != ?), sum(state = ?) FROM nodes "
                          "GROUP BY infrastructure_id", NodeState.TERMINATED.value, NodeState.READY.value)
        return {row[0]: (int(row[1] or 0), int(row[2] or 0)) for row in rows}

    def infrastructure(self, infra_id: str) -> InfraRecord:
        """With its groups and nodes."""
        found = self._records(InfraRecord, "id = ?", infra_id)
        if not found:
            from cloudherd.errors import UsageError

            raise UsageError(f"no infrastructure {infra_id}")
        infra = found[0]
        infra.groups = self._records(GroupRecord, "infrastructure_id = ?", infra_id, order="position")
        infra.nodes = self._records(NodeRecord, "infrastructure_id = ?", infra_id, order="name")
        return infra

    def notifications_given_up(self, infra_id: str) -> int:
        """How many of the infrastructure's notifications were given up."""
        return int(self._rows("SELECT count(*) FROM outbox WHERE infrastructure_id = ? AND state = 'failed'",
                              infra_id)[0][0])

    def active_named(self, name: str) -> InfraRecord | None:
        states = sorted(ACTIVE_INFRA_STATES)
        found = self._records(InfraRecord, f"name = ? AND state IN ({_marks(states)})", name, *states)
        return found[0] if found else None

    def resolve(self, ref: str) -> InfraRecord:
        """An infrastructure by id, unique id prefix or name (:func:`cloudherd.state.naming.pick_infrastructure`)."""
        ref = ref.strip()
        if not ref:
            raise blank_reference()
        if self._rows("SELECT 1 FROM infrastructures WHERE id = ?", ref):
            return self.infrastructure(ref)
        by_prefix = self._records(InfraRecord, "substr(id, 1, ?) = ?", len(ref), ref)
        by_name = self._records(InfraRecord, "name = ?", ref)
        return self.infrastructure(pick_infrastructure(ref, by_prefix, by_name))

    # -- nodes and what ran on them --------------------------------------------------------------------

    def nodes(self, infrastructure_id: str, *, alive_only: bool = False) -> list[NodeRecord]:
        where = "infrastructure_id = ?" + (" AND state != ?" if alive_only else "")
        params = (infrastructure_id, NodeState.TERMINATED.value)[:2 if alive_only else 1]
        return self._records(NodeRecord, where, *params, order="group_name, \"index\"")

    def has_leftovers(self, infrastructure_id: str) -> bool:
        """Whether an interrupted command left an unfinished action or a node mid-deploy."""
        return bool(self._rows(
            "SELECT 1 FROM actions WHERE infrastructure_id = ? AND ended_at IS NULL UNION ALL "
            "SELECT 1 FROM nodes WHERE infrastructure_id = ? AND state IN (?, ?) LIMIT 1",
            infrastructure_id, infrastructure_id, NodeState.DEPLOYING.value, NodeState.BOOTING.value))

    def has_open_intents(self, infrastructure_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM intents WHERE infrastructure_id = ? AND state = 'open' LIMIT 1",
                               infrastructure_id))

    def script_digests(self, infrastructure_id: str) -> dict[tuple[str, str], str]:
        """As :meth:`Store.script_digests`: the digest of each script's last run, when that run succeeded."""
        rows = self._rows("SELECT node_id, name, digest, exit_code FROM actions WHERE infrastructure_id = ? AND "
                          "kind = 'script' ORDER BY id", infrastructure_id)
        last = {(row[0], row[1]): (row[2], row[3]) for row in rows}
        return {key: digest for key, (digest, code) in last.items() if code == 0 and digest}

    def last_actions(self, infrastructure_id: str) -> dict[str, ActionRecord]:
        """Each node's latest action."""
        actions = self._records(ActionRecord, "id IN (SELECT max(id) FROM actions WHERE infrastructure_id = ? "
                                              "GROUP BY node_id)", infrastructure_id)
        return {action.node_id: action for action in actions}

    def pins(self, infrastructure_id: str) -> dict[str, str]:
        """Each node's pinned (current) host key."""
        rows = self._rows("SELECT node_id, public_key FROM host_keys WHERE infrastructure_id = ? AND replaced_at IS "
                          "NULL ORDER BY id", infrastructure_id)
        return {row[0]: row[1] for row in rows}

    def hook_waits(self, infrastructure_id: str, *, open_only: bool = True,
                   node_id: str | None = None) -> list[HookWaitRecord]:
        """As :meth:`Store.hook_waits`."""
        where = "infrastructure_id = ?" + (" AND result IS NULL" if open_only else "")
        params: list[Any] = [infrastructure_id]
        if node_id is not None:
            where += " AND node_id = ?"
            params.append(node_id)
        return self._records(HookWaitRecord, where, *params, order="id")

    def revisions(self, infrastructure_id: str) -> list[RevisionRecord]:
        """Oldest first."""
        return self._records(RevisionRecord, "infrastructure_id = ?", infrastructure_id, order="number")

    def node_defs(self) -> dict[str, Any]:
        """As :meth:`Store.node_defs`."""
        from cloudherd.state.records import _json

        return {f"node_def:{row[0]}": list((_json(row[1]) or {}).get("list") or [])
                for row in self._rows("SELECT type, implementations FROM node_defs")}

    def latest_samples(self, infrastructure_id: str) -> dict[str, dict[str, float]]:
        """As :meth:`Store.latest_samples`."""
        rows = self._rows("SELECT group_name, metric, value FROM metric_samples WHERE id IN (SELECT max(id) FROM "
                          "metric_samples WHERE infrastructure_id = ? GROUP BY group_name, metric)", infrastructure_id)
        latest: dict[str, dict[str, float]] = {}
        for group, metric, value in rows:
            latest.setdefault(group, {})[metric] = value
        return latest

    def scheduled_bounds(self, infrastructure_id: str) -> dict[str, tuple[int | None, int | None]]:
        """As :meth:`Store.scheduled_bounds`."""
        rows = self._rows(
            "SELECT group_name, min, max FROM schedule_firings WHERE infrastructure_id = ? AND (min IS NOT NULL OR "
            "max IS NOT NULL) AND at > coalesce((SELECT max(created_at) FROM revisions WHERE infrastructure_id = ?), "
            "'') ORDER BY id", infrastructure_id, infrastructure_id)
        bounds: dict[str, tuple[int | None, int | None]] = {}
        for group, low, high in rows:
            was = bounds.get(group, (None, None))
            bounds[group] = (low if low is not None else was[0], high if high is not None else was[1])
        return bounds

    # -- leases ----------------------------------------------------------------------------------------

    def lease(self, scope: str, *, live: bool = False) -> LeaseRecord | None:
        """The lease of ``scope``; with ``live``, None too when it has lapsed (SQLite's clock is the host's, as in
        :mod:`cloudherd.state.clock`)."""
        where = "scope = ?" + (" AND julianday(expires_at) > julianday('now')" if live else "")
        found = self._records(LeaseRecord, where, scope)
        return found[0] if found else None


def _marks(values: Sequence[str]) -> str:
    """One SQL parameter mark per value."""
    return ", ".join("?" * len(values))
