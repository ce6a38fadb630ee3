"""Nodes held by lifecycle hooks: each hold opened with the node's new state and its event in one transaction,
completed once (a later completion of the same hold changes nothing).  Mixed into
:class:`cloudherd.state.repo.Store`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloudherd.state.models import Event, HookWait, Node, utcnow


class HookState:
    """``session`` and ``reading`` come from the Store."""

    def session(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    def _event_in(self, s: Session, infrastructure_id: str | None, kind: str, message: str,
                  node_id: str | None = None) -> Event:  # pragma: no cover - the Store's
        raise NotImplementedError

    def reading(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    def hold_node(self, infra_id: str, node_id: str, group: str, transition: str,
                  hooks: Sequence[tuple[str, float]], state: str, message: str) -> None:
        """``node_id`` into ``state``, held by ``hooks`` ((name, timeout in seconds)), with an event."""
        now = utcnow()
        with self.session() as s, s.begin():
            s.execute(update(Node).where(Node.id == node_id).values(state=state, reason=message))
            s.add_all(HookWait(infrastructure_id=infra_id, node_id=node_id, group_name=group, hook=name,
                               transition=transition, started_at=now, deadline=now + timedelta(seconds=timeout))
                      for name, timeout in hooks)
            self._event_in(s, infra_id, "hook", message, node_id)

    def hook_waits(self, infra_id: str, *, open_only: bool = True, node_id: str | None = None) -> list[HookWait]:
        with self.reading() as s:
            query = select(HookWait).where(HookWait.infrastructure_id == infra_id)
            if open_only:
                query = query.where(HookWait.result.is_(None))
            if node_id is not None:
                query = query.where(HookWait.node_id == node_id)
            return list(s.scalars(query.order_by(HookWait.id)))

    def complete_wait(self, wait_id: int, result: str, by: str, message: str) -> bool:
        """Set the hold's result; False when it was completed already (by another, first)."""
        with self.session() as s, s.begin():
            done = s.execute(update(HookWait).where(HookWait.id == wait_id, HookWait.result.is_(None))
                             .values(result=result, completed_at=utcnow(), completed_by=by))
            if not done.rowcount:  # type: ignore[attr-defined]
                return False
            wait = s.get_one(HookWait, wait_id)
            self._event_in(s, wait.infrastructure_id, "hook", message, wait.node_id)
            return True

    def extend_wait(self, wait_id: int, deadline: datetime) -> bool:
        """A heartbeat: the hold's deadline moved on; False when it is no longer open."""
        with self.session() as s, s.begin():
            done = s.execute(update(HookWait).where(HookWait.id == wait_id, HookWait.result.is_(None))
                             .values(deadline=deadline))
            return bool(done.rowcount)  # type: ignore[attr-defined]
