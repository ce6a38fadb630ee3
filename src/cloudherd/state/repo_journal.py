"""The journal's rows and the pinned host keys: what a cloud call in flight and a node's first contact leave for
the next command to check.  Mixed into :class:`cloudherd.state.repo.Store`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloudherd.state.models import HostKey, Intent, Node, utcnow


class JournalState:
    """Intents and host keys; ``session`` and ``reading`` come from the Store."""

    def session(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    def reading(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    # -- intents ----------------------------------------------------------------------------------

    def open_intent(self, infrastructure_id: str, provider: str, kind: str, *, group_name: str | None = None,
                    count: int = 0, token: str | None = None, tags: dict[str, str] | None = None,
                    node_ids: Sequence[str] = (), provider_ids: Sequence[str] = (),
                    intent_id: str | None = None, node_updates: Sequence[tuple[str, dict[str, Any]]] = ()) -> Intent:
        """Commit the intent before the call it describes is made (with what the nodes are while it is in
        flight, in the same transaction)."""
        with self.session() as s, s.begin():
            intent = Intent(
                id=intent_id or None, infrastructure_id=infrastructure_id, provider=provider, kind=kind,
                group_name=group_name, count=count, token=token, tags=dict(tags or {}),
                node_ids={"nodes": list(node_ids)}, provider_ids={"ids": list(provider_ids)}, state="open",
            )
            s.add(intent)
            _apply(s, node_updates)
            return intent

    def close_intent(self, intent_id: str, state: str, outcome: str | None = None,
                     provider_ids: Sequence[str] | None = None,
                     node_updates: Sequence[tuple[str, dict[str, Any]]] = ()) -> None:
        """Close an intent and apply what it produced to the nodes, in one transaction."""
        with self.session() as s, s.begin():
            intent = s.get_one(Intent, intent_id)
            intent.state = state
            intent.outcome = outcome
            intent.closed_at = utcnow()
            if provider_ids is not None:
                intent.provider_ids = {"ids": list(provider_ids)}
            _apply(s, node_updates)

    def open_intents(self, infrastructure_id: str | None = None) -> list[Intent]:
        with self.reading() as s:
            query = select(Intent).where(Intent.state == "open").order_by(Intent.created_at)
            if infrastructure_id:
                query = query.where(Intent.infrastructure_id == infrastructure_id)
            return list(s.scalars(query))

    def has_open_intents(self, infrastructure_id: str) -> bool:
        with self.reading() as s:
            return s.scalar(select(Intent.id).where(Intent.infrastructure_id == infrastructure_id,
                                                    Intent.state == "open").limit(1)) is not None

    def intents(self, infrastructure_id: str) -> list[Intent]:
        with self.reading() as s:
            return list(s.scalars(select(Intent).where(Intent.infrastructure_id == infrastructure_id)
                                  .order_by(Intent.created_at)))

    # -- host keys ------------------------------------------------------------------------------------

    def host_keys(self, infrastructure_id: str) -> dict[str, HostKey]:
        """The pinned (current) host key of each node that has one."""
        with self.reading() as s:
            rows = s.scalars(
                select(HostKey).where(HostKey.infrastructure_id == infrastructure_id, HostKey.replaced_at.is_(None))
            )
            return {row.node_id: row for row in rows}

    def pins(self, infrastructure_id: str) -> dict[str, str]:
        """Each node's pinned (current) host key, as an OpenSSH line."""
        return {node_id: row.public_key for node_id, row in self.host_keys(infrastructure_id).items()}

    def pin_host_keys(self, infrastructure_id: str, keys: Sequence[tuple[str, str, str, str]]) -> None:
        """Pin (node id, public key, fingerprint, source) in one transaction; a node's earlier pin is kept as
        history, marked replaced."""
        if not keys:
            return
        with self.session() as s, s.begin():
            node_ids = [k[0] for k in keys]
            now = utcnow()
            for old in s.scalars(select(HostKey).where(HostKey.node_id.in_(node_ids), HostKey.replaced_at.is_(None))):
                old.replaced_at = now
            s.add_all(
                HostKey(infrastructure_id=infrastructure_id, node_id=node_id, public_key=key, fingerprint=fp,
                        source=source)
                for node_id, key, fp, source in keys
            )


def _apply(session: Session, node_updates: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Set each node's fields (inside the caller's transaction)."""
    for node_id, fields in node_updates:
        node = session.get_one(Node, node_id)
        for key, value in fields.items():
            setattr(node, key, value)
