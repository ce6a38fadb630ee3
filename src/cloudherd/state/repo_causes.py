"""The events as a chain of causes: what failed a node, what a node was made for, and the chain behind an event
(``cloudherd why``).  Mixed into :class:`cloudherd.state.repo.Store`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloudherd.state.models import Event

CHAIN_MAX = 20  # links followed back from an event (a cause is always older, so a chain ends; this bounds it)


class CauseState:
    """``reading`` comes from the Store."""

    def reading(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    def newest_node_events(self, node_ids: Sequence[str], kinds: Sequence[str]) -> dict[str, Event]:
        """Each node's newest event of ``kinds`` (what found it failed, say), in one query."""
        if not node_ids:
            return {}
        with self.reading() as s:
            newest = (select(func.max(Event.id)).where(Event.node_id.in_(list(node_ids)), Event.kind.in_(list(kinds)))
                      .group_by(Event.node_id))
            return {row.node_id or "": row for row in s.scalars(select(Event).where(Event.id.in_(newest)))}

    def node_made_event(self, infrastructure_id: str, node_id: str) -> Event | None:
        """The event that says a node was made (its first of kind ``made``)."""
        with self.reading() as s:
            return s.scalars(select(Event).where(Event.infrastructure_id == infrastructure_id,
                                                 Event.node_id == node_id, Event.kind == "made")
                             .order_by(Event.id).limit(1)).first()

    def newest_event_of(self, infrastructure_id: str, kinds: Sequence[str],
                        before_at: datetime | None = None) -> Event | None:
        """The infrastructure's newest event of ``kinds`` (at or before ``before_at`` when given)."""
        with self.reading() as s:
            query = select(Event).where(Event.infrastructure_id == infrastructure_id, Event.kind.in_(list(kinds)))
            if before_at is not None:
                query = query.where(Event.at <= before_at)
            return s.scalars(query.order_by(Event.id.desc()).limit(1)).first()

    def cause_chain(self, event_id: int) -> list[Event]:
        """The event and those it follows from, newest first, as far as they are kept (old ones are pruned)."""
        chain: list[Event] = []
        with self.reading() as s:
            next_id: int | None = event_id
            while next_id is not None and len(chain) < CHAIN_MAX:
                row = s.get(Event, next_id)
                if row is None or any(e.id == row.id for e in chain):
                    break
                chain.append(row)
                next_id = row.cause_id if row.cause_id is not None and row.cause_id < row.id else None
        return chain
