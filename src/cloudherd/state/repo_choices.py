"""A node's protection and standby, a group's suspended processes, machines detached from a group or attached to
one: what a user sets on a running fleet for the manager to honour.  Each change and its event are one
transaction, so the feed never says what did not happen.  Mixed into :class:`cloudherd.state.repo.Store`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloudherd.lifecycle import NodeState
from cloudherd.state.models import Event, Group, Infrastructure, Node, ScaleRequest


class ChoiceState:
    """``session`` comes from the Store."""

    def session(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    def _event_in(self, s: Session, infrastructure_id: str | None, kind: str, message: str,
                  node_id: str | None = None) -> Event:  # pragma: no cover - the Store's
        raise NotImplementedError

    def set_protection(self, infra_id: str, node_ids: Sequence[str], protected: bool, message: str) -> None:
        """Nodes kept from (or given back to) scale-in."""
        with self.session() as s, s.begin():
            s.execute(update(Node).where(Node.infrastructure_id == infra_id, Node.id.in_(list(node_ids)))
                      .values(protected=protected))
            self._event_in(s, infra_id, "protection", message)

    def set_standby(self, infra_id: str, group: str, node_ids: Sequence[str], standby: bool,
                    resize: tuple[str, int] | None, message: str) -> int | None:
        """Nodes of ``group`` into (or out of) standby, and, with ``resize`` (kind, amount), the group's size
        asked to follow (a scale request, consumed by the next pass as any other); returns the request's id."""
        with self.session() as s, s.begin():
            s.execute(update(Node).where(Node.infrastructure_id == infra_id, Node.id.in_(list(node_ids)))
                      .values(standby=standby))
            self._event_in(s, infra_id, "standby", message)
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
            self._event_in(s, infra_id, "processes", message)

    def detach_nodes(self, infra_id: str, group: str, reasons: Mapping[str, str], count: int | None,
                     message: str) -> None:
        """Nodes (id → why) out of the group with their machines kept: their rows end (``terminated``, the why as
        their reason), and the group's size becomes ``count`` (None: kept, and a pass makes new nodes in their
        place)."""
        with self.session() as s, s.begin():
            for node_id, reason in reasons.items():
                s.execute(update(Node).where(Node.infrastructure_id == infra_id, Node.id == node_id)
                          .values(state=NodeState.TERMINATED.value, reason=reason))
            if count is not None:
                s.execute(update(Group).where(Group.infrastructure_id == infra_id, Group.name == group)
                          .values(count=count))
            self._event_in(s, infra_id, "membership", message)

    def attach_nodes(self, infra_id: str, group: str, moved: Mapping[str, dict[str, Any]],
                     made: Sequence[dict[str, Any]], count: int, message: str) -> None:
        """Machines into the group as nodes to deploy: a detached node's row comes back (``moved``: id → its new
        fields), keeping its id; any other machine gets a new row (``made``); the group's size becomes ``count``."""
        with self.session() as s, s.begin():
            for node_id, fields in moved.items():
                s.execute(update(Node).where(Node.id == node_id).values(infrastructure_id=infra_id, **fields))
            for fields in made:
                s.add(Node(infrastructure_id=infra_id, **fields))
            s.execute(update(Group).where(Group.infrastructure_id == infra_id, Group.name == group)
                      .values(count=count))
            self._event_in(s, infra_id, "membership", message)

    def machine_holders(self, provider: str, machine_ids: Sequence[str]) -> dict[str, Node]:
        """The nodes, of any infrastructure, that hold these machines now (not ended), whatever name their
        provider has there (one cloud account can be two entries' of two specs)."""
        with self.session() as s:
            rows = s.scalars(select(Node).where(Node.provider_id.in_(list(machine_ids)),
                                                Node.state != NodeState.TERMINATED.value))
            return {row.provider_id or "": row for row in rows}

    def detached_node(self, ref: str, owner_id: str | None = None) -> Node | None:
        """The newest ended node, detached from its group with its machine kept, that ``ref`` names (its id, name or
        machine's id); ``owner_id``: only of that user's infrastructures."""
        with self.session() as s:
            query = select(Node).where(Node.state == NodeState.TERMINATED.value,
                                       Node.reason.startswith(DETACHED_REASON))
            if owner_id is not None:
                query = query.join(Infrastructure).where(Infrastructure.owner_id == owner_id)
            rows = s.scalars(query.order_by(Node.updated_at.desc()))
            return next((row for row in rows if ref in (row.id, row.name, row.provider_id)), None)


DETACHED_REASON = "detached"  # how a detached node's reason begins: its machine was kept running
