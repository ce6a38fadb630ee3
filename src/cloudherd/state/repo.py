"""A small repository API over the state database: the only place that writes SQL.

Each method is one short transaction, so a crash between two steps leaves the last committed fact.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from cloudherd.errors import NotFound, UsageError
from cloudherd.lifecycle import ACTIVE_INFRA_STATES, InfraState, NodeState, RevisionState
from cloudherd.observe import cause, logs, tracing
from cloudherd.state import fence
from cloudherd.state.db import open_engine, reader_factory, session_factory
from cloudherd.state.models import (
    Action,
    Event,
    Group,
    Infrastructure,
    Node,
    NodeDefinition,
    Revision,
    ScaleRequest,
    User,
    utcnow,
)
from cloudherd.state.naming import blank_reference, pick_infrastructure
from cloudherd.state.repo_causes import CauseState
from cloudherd.state.repo_choices import ChoiceState
from cloudherd.state.repo_gauges import GaugeState
from cloudherd.state.repo_hooks import HookState
from cloudherd.state.repo_journal import JournalState
from cloudherd.state.repo_leases import LeaseState
from cloudherd.state.repo_metrics import MetricState
from cloudherd.state.repo_notify import NotifyState
from cloudherd.state.repo_server import ServerState
from cloudherd.state.snapshot import SnapshotState


class Store(SnapshotState, JournalState, MetricState, ChoiceState, HookState, LeaseState, ServerState, CauseState,
            NotifyState, GaugeState):
    """State access for the engine and the faces; sessions never leak out (objects come back detached)."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine or open_engine()
        self._session = session_factory(self.engine)
        fence.install(self._session)
        self._reader = reader_factory(self.engine) or self._session
        self._dialect = self.engine.dialect.name

    def session(self) -> Session:
        return self._session()

    def reading(self) -> Session:
        """A session for reads only: on PostgreSQL each statement autocommits, so a read is one round trip
        instead of three (BEGIN, the statement, ROLLBACK), and it sees what READ COMMITTED would show anyway."""
        return self._reader()

    def ping(self) -> None:
        """One round trip to the database; raises when it cannot be reached."""
        with self.reading() as s:
            s.execute(select(1))

    # -- users ----------------------------------------------------------------------------------------

    def user(self, name: str) -> User | None:
        with self.reading() as s:
            return s.scalar(select(User).where(User.name == name))

    def ensure_user(self, name: str, public_key: str, private_key_path: str) -> User:
        """The user by that name, made if missing. Several first commands may race to make it (nine `up`s
        started together on a fresh database): the one that loses the insert reads the winner's row."""
        try:
            with self.session() as s, s.begin():
                user = s.scalar(select(User).where(User.name == name))
                if user is None:
                    user = User(name=name, public_key=public_key, private_key_path=private_key_path)
                    s.add(user)
                    s.flush()
                return user
        except IntegrityError:
            made = self.user(name)
            if made is None:  # pragma: no cover - the row that refused ours cannot vanish: users are never deleted
                raise
            return made

    # -- infrastructures ------------------------------------------------------------------------------

    def create_infrastructure(self, **fields: Any) -> Infrastructure:
        with self.session() as s, s.begin():
            infra = Infrastructure(**fields)
            s.add(infra)
            return infra

    def add_group(self, infrastructure_id: str, **fields: Any) -> Group:
        with self.session() as s, s.begin():
            group = Group(infrastructure_id=infrastructure_id, **fields)
            s.add(group)
            return group

    def finish_pass(self, infra_id: str, fields: dict[str, Any], event: tuple[str, str] | None = None, *,
                    keep: int | None = None) -> None:
        """The end of a reconcile pass in one transaction: the infrastructure's ``fields`` (last pass, state)
        and, if given, the pass's event (of which the newest ``keep`` of its kind stay)."""
        with self.session() as s, s.begin():
            s.execute(update(Infrastructure).where(Infrastructure.id == infra_id)
                      .values(**fields, updated_at=utcnow()).execution_options(synchronize_session=False))
            if event is not None:
                self._event_in(s, infra_id, event[0], event[1])
                if keep is not None:
                    self._prune(s, infra_id, event[0], keep)

    def update_infrastructure(self, infra_id: str, **fields: Any) -> None:
        with self.session() as s, s.begin():
            infra = s.get_one(Infrastructure, infra_id)
            for key, value in fields.items():
                setattr(infra, key, value)

    def update_group(self, infra_id: str, name: str, **fields: Any) -> None:
        with self.session() as s, s.begin():
            group = s.scalar(select(Group).where(Group.infrastructure_id == infra_id, Group.name == name))
            if group is None:
                raise UsageError(f"no group {name} in {infra_id}")
            for key, value in fields.items():
                setattr(group, key, value)

    def update_groups(self, infra_id: str, changes: dict[str, dict[str, Any]]) -> None:
        """Several groups' fields, by name, in one transaction."""
        if not changes:
            return
        with self.session() as s, s.begin():
            rows = list(s.scalars(select(Group).where(Group.infrastructure_id == infra_id,
                                                      Group.name.in_(sorted(changes)))))
            missing = sorted(set(changes) - {g.name for g in rows})
            if missing:
                raise UsageError(f"no group {', '.join(missing)} in {infra_id}")
            for group in rows:
                for key, value in changes[group.name].items():
                    setattr(group, key, value)

    def set_infrastructure_state(self, infra_id: str, state: str, reason: str | None = None) -> None:
        with self.session() as s, s.begin():
            infra = s.get_one(Infrastructure, infra_id)
            infra.state = state
            infra.reason = reason

    def infrastructures(self, *, include_destroyed: bool = False, owner_id: str | None = None,
                        with_nodes: bool = True) -> list[Infrastructure]:
        """``with_nodes=False``: the rows alone (a manager choosing its targets needs no node of them)."""
        with self.reading() as s:
            query = select(Infrastructure).order_by(Infrastructure.created_at)
            if with_nodes:
                query = query.options(selectinload(Infrastructure.nodes))
            if owner_id is not None:
                query = query.where(Infrastructure.owner_id == owner_id)
            if not include_destroyed:
                query = query.where(Infrastructure.state != InfraState.DESTROYED)
            return list(s.scalars(query))

    def node_counts(self) -> dict[str, tuple[int, int]]:
        """Each infrastructure's live nodes and ready nodes."""
        with self.reading() as s:
            rows = s.execute(select(Node.infrastructure_id, Node.state, func.count()).group_by(Node.infrastructure_id,
                                                                                             Node.state))
            counts: dict[str, list[int]] = {}
            for infra_id, state, count in rows:
                totals = counts.setdefault(infra_id, [0, 0])
                totals[0] += count if state != NodeState.TERMINATED else 0
                totals[1] += count if state == NodeState.READY else 0
        return {infra_id: (live, ready) for infra_id, (live, ready) in counts.items()}

    def infrastructure(self, infra_id: str) -> Infrastructure:
        with self.reading() as s:
            infra = s.scalar(
                select(Infrastructure)
                .where(Infrastructure.id == infra_id)
                .options(selectinload(Infrastructure.groups), selectinload(Infrastructure.nodes))
            )
            if infra is None:
                raise UsageError(f"no infrastructure {infra_id}")
            return infra

    def active_named(self, name: str) -> Infrastructure | None:
        with self.reading() as s:
            return s.scalar(
                select(Infrastructure).where(Infrastructure.name == name,
                                             Infrastructure.state.in_(sorted(ACTIVE_INFRA_STATES)))
            )

    def resolve(self, ref: str) -> Infrastructure:
        """An infrastructure by id, unique id prefix or name (active ones first for names)."""
        ref = ref.strip()
        if not ref:
            raise blank_reference()
        with self.reading() as s:
            exact = s.get(Infrastructure, ref)
            if exact is not None:
                return self.infrastructure(exact.id)
            # a prefix compared as text, never as a LIKE pattern: '%' and '_' in what a user types are
            # characters, not wildcards (and LIKE is case-blind on SQLite, ids are not)
            by_prefix = list(s.scalars(select(Infrastructure).where(
                func.substr(Infrastructure.id, 1, len(ref)) == ref)))
            by_name = list(s.scalars(select(Infrastructure).where(Infrastructure.name == ref)))
        return self.infrastructure(pick_infrastructure(ref, by_prefix, by_name))

    # -- nodes ----------------------------------------------------------------------------------------

    def add_nodes(self, infrastructure_id: str, nodes: Sequence[dict[str, Any]]) -> list[Node]:
        with self.session() as s, s.begin():
            rows = [Node(infrastructure_id=infrastructure_id, **fields) for fields in nodes]
            s.add_all(rows)
            return rows

    def update_node(self, node_id: str, **fields: Any) -> None:
        with self.session() as s, s.begin():
            node = s.get_one(Node, node_id)
            for key, value in fields.items():
                setattr(node, key, value)

    def set_node_state_if(self, node_id: str, expected: str | None, state: str, reason: str | None) -> bool:
        """A node's state and reason, only if its state is still ``expected`` (None: whatever it is); whether it
        was written."""
        with self.session() as s, s.begin():
            query = update(Node).where(Node.id == node_id)
            if expected is not None:
                query = query.where(Node.state == expected)
            done = s.execute(query.values(state=state, reason=reason, updated_at=utcnow())
                             .execution_options(synchronize_session=False))
            return bool(getattr(done, "rowcount", 0))

    def update_nodes(self, infrastructure_id: str, changes: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Several nodes of one infrastructure, in one transaction (one UPDATE per set of values).

        The infrastructure narrows each UPDATE through its index: PostgreSQL, before it has analysed a grown
        table, may match ``id IN (…)`` by scanning every node row, 40 ms at 10,000 nodes."""
        if not changes:
            return
        now = utcnow()
        # nodes given the same values (a pass's healthy nodes: same check, same time) share one UPDATE … IN
        by_values: dict[tuple[tuple[str, Any], ...], list[str]] = {}
        for node_id, fields in changes:
            try:
                by_values.setdefault(tuple(sorted(fields.items())), []).append(node_id)
            except TypeError:  # a value that cannot be compared: a statement of its own
                by_values.setdefault(((" ", id(fields)), *fields.items()), []).append(node_id)
        with self.session() as s, s.begin():
            for values, ids in by_values.items():
                fields = {k: v for k, v in values if k != " "}
                for start in range(0, len(ids), 500):
                    s.execute(update(Node).where(Node.infrastructure_id == infrastructure_id,
                                                 Node.id.in_(ids[start:start + 500]))
                              .values(**fields, updated_at=now).execution_options(synchronize_session=False))

    def nodes(self, infrastructure_id: str, *, alive_only: bool = False) -> list[Node]:
        with self.reading() as s:
            query = (
                select(Node).where(Node.infrastructure_id == infrastructure_id).order_by(Node.group_name, Node.index)
            )
            if alive_only:
                query = query.where(Node.state != NodeState.TERMINATED)
            return list(s.scalars(query))

    def resolve_node(self, ref: str, *, infrastructure_id: str | None = None, ended_too: bool = False) -> Node:
        """The one node of ``infrastructure_id`` (else of any active infrastructure) that answers to ``ref``
        (:meth:`Node.answers_to`), not terminated; a located error when none or several do.  ``ended_too``: a
        terminated node answers as well when no live one does (what ``why`` asks of an ended node)."""
        with self.reading() as s:
            query = select(Node).join(Infrastructure)
            if not ended_too:
                query = query.where(Node.state != NodeState.TERMINATED)
            if infrastructure_id is not None:
                query = query.where(Node.infrastructure_id == infrastructure_id)
            else:
                query = query.where(Infrastructure.state.in_(ACTIVE_INFRA_STATES))
            found = [node for node in s.scalars(query.order_by(Node.created_at)) if node.answers_to(ref)]
            if ended_too:
                found = [n for n in found if n.state != NodeState.TERMINATED] or found[-1:]
        if not found:
            where = "in this infrastructure" if infrastructure_id else "in any active infrastructure"
            raise NotFound(f"no live node named {ref!r} {where} (cloudherd status shows the nodes)")
        if len(found) > 1:
            raise UsageError(f"{ref!r} names {len(found)} nodes ({', '.join(n.name for n in found[:5])}): "
                             "give the node's id")
        return found[0]

    # -- actions and events ---------------------------------------------------------------------------

    def start_action(self, infrastructure_id: str, node_id: str, kind: str, name: str,
                     digest: str | None = None) -> int:
        with self.session() as s, s.begin():
            action = Action(infrastructure_id=infrastructure_id, node_id=node_id, kind=kind, name=name,
                            digest=digest)
            s.add(action)
            s.flush()
            return action.id

    def finish_action(self, action_id: int, exit_code: int | None, stdout: str, stderr: str,
                      ended_at: datetime | None = None) -> None:
        with self.session() as s, s.begin():
            action = s.get_one(Action, action_id)
            action.exit_code = exit_code
            action.stdout = stdout
            action.stderr = stderr
            action.ended_at = ended_at or utcnow()

    def has_leftovers(self, infrastructure_id: str) -> bool:
        """Whether an interrupted command left an unfinished action or a node mid-deploy (one cheap query)."""
        with self.reading() as s:
            unfinished = s.scalar(select(Action.id).where(Action.infrastructure_id == infrastructure_id,
                                                          Action.ended_at.is_(None)).limit(1))
            stuck = s.scalar(select(Node.id).where(Node.infrastructure_id == infrastructure_id,
                                                   Node.state.in_([NodeState.DEPLOYING, NodeState.BOOTING])).limit(1))
            return unfinished is not None or stuck is not None

    def close_unfinished_actions(self, infrastructure_id: str, why: str, node_id: str | None = None) -> list[str]:
        """Actions that never ended (their command was killed or cancelled) end now, without an exit code;
        returns the ids of the nodes they ran on.  Read first: there usually are none, and then no write
        transaction (nor its fence check) is opened."""
        query = select(Action).where(Action.infrastructure_id == infrastructure_id, Action.ended_at.is_(None))
        if node_id:
            query = query.where(Action.node_id == node_id)
        with self.reading() as s:
            if s.scalar(query.with_only_columns(Action.id).limit(1)) is None:
                return []
        with self.session() as s, s.begin():
            rows = list(s.scalars(query))
            for action in rows:
                action.exit_code = None
                action.stderr = (action.stderr or "") + why
                action.ended_at = utcnow()
            return sorted({a.node_id for a in rows})

    def add_actions(self, rows: Sequence[dict[str, Any]]) -> None:
        """Many finished actions in one transaction: fleet commands record after the fact, off the hot path."""
        if not rows:
            return
        with self.session() as s, s.begin():
            s.execute(insert(Action), list(rows))  # one executemany, no ORM objects

    def script_digests(self, infrastructure_id: str) -> dict[tuple[str, str], str]:
        """(node id, script source) -> digest of its last run, when that run succeeded.

        The last run, not the last success: a script that failed (or was cut off) after a success may have
        changed the node halfway, so running the earlier text again is not a no-op (a rollback's case)."""
        with self.reading() as s:
            rows = s.execute(
                select(Action.node_id, Action.name, Action.digest, Action.exit_code)
                .where(Action.infrastructure_id == infrastructure_id, Action.kind == "script")
                .order_by(Action.id)
            )
            last = {(node_id, name): (digest, code) for node_id, name, digest, code in rows}
            return {key: digest for key, (digest, code) in last.items() if code == 0 and digest}

    def actions(self, infrastructure_id: str, node_id: str | None = None) -> list[Action]:
        with self.reading() as s:
            query = select(Action).where(Action.infrastructure_id == infrastructure_id).order_by(Action.id)
            if node_id:
                query = query.where(Action.node_id == node_id)
            return list(s.scalars(query))

    def last_actions(self, infrastructure_id: str) -> dict[str, Action]:
        return {action.node_id: action for action in self.actions(infrastructure_id)}

    # -- revisions ------------------------------------------------------------------------------------

    def add_revision(self, infrastructure_id: str, **fields: Any) -> Revision:
        """The next revision of ``infrastructure_id`` (numbered 1, 2, … per infrastructure)."""
        with self.session() as s, s.begin():
            last = s.scalar(select(func.max(Revision.number)).where(Revision.infrastructure_id == infrastructure_id))
            row = Revision(infrastructure_id=infrastructure_id, number=(last or 0) + 1, **fields)
            s.add(row)
            s.flush()
            return row

    def end_revision(self, revision_id: int, state: str, reason: str | None = None) -> None:
        with self.session() as s, s.begin():
            s.execute(update(Revision).where(Revision.id == revision_id).values(state=state, reason=reason,
                      ended_at=utcnow()).execution_options(synchronize_session=False))

    def settle_revisions(self, infrastructure_id: str) -> None:
        """A pass brought the fleet to the spec as applied: a revision still applying (its ``up`` was killed, or
        a submit left it to the manager) is applied now."""
        with self.session() as s, s.begin():
            s.execute(update(Revision).where(Revision.infrastructure_id == infrastructure_id,
                                             Revision.state == RevisionState.APPLYING)
                      .values(state=RevisionState.APPLIED, ended_at=utcnow())
                      .execution_options(synchronize_session=False))

    def revisions(self, infrastructure_id: str) -> list[Revision]:
        """Oldest first."""
        with self.reading() as s:
            return list(s.scalars(select(Revision).where(Revision.infrastructure_id == infrastructure_id)
                                  .order_by(Revision.number)))

    def _event_in(self, s: Session, infrastructure_id: str | None, kind: str, message: str,
                  node_id: str | None = None, cause_id: int | None = None, at: datetime | None = None) -> Event:
        """The one way an event is written, in the caller's transaction: its cause, origin and trace, its
        notifications (a crash loses both or neither) and its log record."""
        row = Event(infrastructure_id=infrastructure_id, node_id=node_id, kind=kind, message=message,
                    **_caused(cause_id), **({"at": at} if at is not None else {}))
        s.add(row)
        s.flush()
        self._notify(s, row)
        logs.event(infrastructure_id, kind, message, node_id, row.id, row.cause_id, row.origin, row.trace_id)
        return row

    def add_event(self, infrastructure_id: str | None, kind: str, message: str, node_id: str | None = None,
                  at: datetime | None = None, cause_id: int | None = None) -> int:
        """``at``: when it happened by the caller's clock (a pass's injectable one), else now.  ``cause_id``: the
        event it follows from, else the one the current operation says (:mod:`cloudherd.observe.cause`).
        Returns the new event's id, for the events that follow from it."""
        with self.session() as s, s.begin():
            return self._event_in(s, infrastructure_id, kind, message, node_id, cause_id, at).id

    @staticmethod
    def _prune(s: Session, infrastructure_id: str, kind: str, keep: int) -> None:
        """One DELETE: events of ``kind`` up to the newest one past the ``keep`` newest (none when fewer)."""
        oldest_dropped = (select(Event.id).where(Event.infrastructure_id == infrastructure_id, Event.kind == kind)
                          .order_by(Event.id.desc()).offset(keep).limit(1).scalar_subquery())
        s.execute(delete(Event).where(Event.infrastructure_id == infrastructure_id, Event.kind == kind,
                                      Event.id <= oldest_dropped).execution_options(synchronize_session=False))

    def recent_events(self, infrastructure_id: str, kind: str, since: datetime) -> list[Event]:
        with self.reading() as s:
            return list(s.scalars(select(Event).where(
                Event.infrastructure_id == infrastructure_id, Event.kind == kind, Event.at >= since,
            ).order_by(Event.id)))

    def events(self, infrastructure_id: str) -> list[Event]:
        with self.reading() as s:
            return list(s.scalars(select(Event).where(Event.infrastructure_id == infrastructure_id).order_by(Event.id)))

    def newest_event_id(self, infrastructure_id: str) -> int:
        """The id of the infrastructure's newest event (0 when none): what a live stream samples."""
        with self.reading() as s:
            return s.scalar(select(func.max(Event.id)).where(Event.infrastructure_id == infrastructure_id)) or 0

    def events_after(self, infrastructure_id: str, after_id: int = 0, limit: int | None = None) -> list[Event]:
        """Events newer than ``after_id``, oldest first (``events --follow`` polls with the last id seen)."""
        with self.reading() as s:
            query = select(Event).where(Event.infrastructure_id == infrastructure_id, Event.id > after_id
                                        ).order_by(Event.id)
            return list(s.scalars(query.limit(limit) if limit else query))

    # -- Occopus node definitions ---------------------------------------------------------------------

    def put_node_defs(self, definitions: dict[str, Any], source: str) -> None:
        """Store (or replace) node definitions by type, in one transaction."""
        with self.session() as s, s.begin():
            for key, implementations in definitions.items():
                kind = key.partition(":")[2]
                row = s.get(NodeDefinition, kind)
                value = {"list": implementations if isinstance(implementations, list) else [implementations]}
                if row is None:
                    s.add(NodeDefinition(type=kind, implementations=value, source=source))
                else:
                    row.implementations, row.source, row.imported_at = value, source, utcnow()

    def node_defs(self) -> dict[str, Any]:
        """Every imported definition as ``{'node_def:<type>': [implementations]}``."""
        with self.reading() as s:
            return {f"node_def:{row.type}": list((row.implementations or {}).get("list") or [])
                    for row in s.scalars(select(NodeDefinition))}

    # -- scale requests -------------------------------------------------------------------------------

    def add_scale_request(self, infrastructure_id: str, group_name: str, kind: str, amount: int,
                          victims: Sequence[str] = (), machines: Sequence[str] = (),
                          cause_id: int | None = None) -> int:
        """A request for the next pass: ``victims`` the node ids it names, ``machines`` (an attach's) the
        provider's machine ids.  ``cause_id``: the event that decided it (a policy's); without one, the request
        is an event of its own (kind ``request``, with the asking operation's origin), which what the pass
        does for it follows from (``cloudherd why``)."""
        named: dict[str, Any] = {"nodes": list(victims)}
        if machines:
            named["machines"] = list(machines)
        with self.session() as s, s.begin():
            if cause_id is None:
                asked = f"{group_name}: {kind} {amount} requested"
                cause_id = self._event_in(s, infrastructure_id, "request", asked).id
            named["cause"] = cause_id
            row = ScaleRequest(infrastructure_id=infrastructure_id, group_name=group_name, kind=kind, amount=amount,
                               victims=named)
            s.add(row)
            s.flush()
            return row.id

    def pending_scale_requests(self, infrastructure_id: str) -> list[ScaleRequest]:
        with self.reading() as s:
            return list(s.scalars(select(ScaleRequest).where(
                ScaleRequest.infrastructure_id == infrastructure_id, ScaleRequest.consumed_at.is_(None)
            ).order_by(ScaleRequest.id)))

    def scale_request(self, request_id: int) -> ScaleRequest | None:
        with self.reading() as s:
            return s.get(ScaleRequest, request_id)

    def consume_scale_request(self, request_id: int, outcome: str) -> None:
        with self.session() as s, s.begin():
            row = s.get_one(ScaleRequest, request_id)
            row.consumed_at = utcnow()
            row.outcome = outcome


def _caused(cause_id: int | None = None) -> dict[str, Any]:
    """An event's cause, origin and trace, from the current operation (see :mod:`cloudherd.observe.cause`)."""
    return {"cause_id": cause_id if cause_id is not None else cause.parent(), "origin": cause.origin(),
            "trace_id": tracing.current_trace_id()}
