"""A node's protection and standby, a group's suspended processes: what a user sets on a running fleet for the
manager to honour.  Each change and its event are one transaction, so the feed never says what did not happen.
Mixed into :class:`cloudherd.state.repo.Store`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloudherd.state.models import Event, Group, Node, ScaleRequest


class ChoiceState:
    """``session`` comes from the Store."""

    def session(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    def set_protection(self, infra_id: str, node_ids: Sequence[str], protected: bool, message: str) -> None:
        """Nodes kept from (or given back to) scale-in."""
        with self.session() as s, s.begin():
            s.execute(update(Node).where(Node.infrastructure_id == infra_id, Node.id.in_(list(node_ids)))
                      .values(protected=protected))
            s.add(Event(infrastructure_id=infra_id, kind="protection", message=message))

    def set_standby(self, infra_id: str, group: str, node_ids: Sequence[str], standby: bool,
                    resize: tuple[str, int] | None, message: str) -> int | None:
        """Nodes of ``group`` into (or out of) standby, and, with ``resize`` (kind, amount), the group's size
        asked to follow (a scale request, consumed by the next pass as any other); returns the request's id."""
        with self.session() as s, s.begin():
            s.execute(update(Node).where(Node.infrastructure_id == infra_id, Node.id.in_(list(node_ids)))
                      .values(standby=standby))
            s.add(Event(infrastructure_id=infra_id, kind="standby", message=message))
            if resize is None:
                return None
            request = ScaleRequest(infrastructure_id=infra_id, group_name=group, kind=resize[0], amount=resize[1],
                                   victims={"nodes": []})
            s.add(request)
            s.flush()
            return request.id

    def set_suspended(self, infra_id: str, group: str, suspended: Mapping[str, Any], message: str) -> None:
        """The group's suspended processes (process → why), all of them; empty: none."""
        with self.session() as s, s.begin():
            row = s.scalars(select(Group).where(Group.infrastructure_id == infra_id, Group.name == group)).one()
            row.suspended = dict(suspended) or None
            s.add(Event(infrastructure_id=infra_id, kind="processes", message=message))
