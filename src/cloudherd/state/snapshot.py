"""What an operation observes of an infrastructure before it acts, in one read: the row with its groups and nodes,
the intents a killed command left open, whether an action was left unfinished, and the pinned host keys.

A Kubernetes controller observes once, then diffs and acts; the engine did ask the store the same things again
helper by helper (the nodes to settle, the intents to resolve, the pins to reach, the infrastructure to plan).
``up`` and a manager's pass now read one :class:`Snapshot` and hand it down, reading again only what their own
writes changed.  Mixed into :class:`cloudherd.state.repo.Store`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from cloudherd.errors import UsageError
from cloudherd.lifecycle import NodeState
from cloudherd.state.models import Action, HostKey, Infrastructure, Intent, Node


@dataclass
class Snapshot:
    """One infrastructure as read at one moment (see the module)."""

    infra: Infrastructure  # with its groups and nodes loaded
    open_intents: list[Intent]
    unfinished_actions: bool
    pins: dict[str, str]  # node id -> its pinned host key (an OpenSSH line)

    @property
    def nodes(self) -> list[Node]:
        """The nodes, in the order :meth:`Store.nodes` gives them."""
        return sorted(self.infra.nodes, key=lambda n: (n.group_name, n.index))

    @property
    def leftovers(self) -> bool:
        """Whether a killed command left work half done: an action unfinished, a node mid-deploy, a call open."""
        stuck = any(n.state in (NodeState.DEPLOYING, NodeState.BOOTING) for n in self.infra.nodes)
        return self.unfinished_actions or stuck or bool(self.open_intents)


class SnapshotState:
    """The one read; ``reading`` comes from the Store."""

    def reading(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    def snapshot(self, infra_id: str) -> Snapshot:
        with self.reading() as s:
            infra = s.scalar(select(Infrastructure).where(Infrastructure.id == infra_id)
                             .options(selectinload(Infrastructure.groups), selectinload(Infrastructure.nodes)))
            if infra is None:
                raise UsageError(f"no infrastructure {infra_id}")
            intents = list(s.scalars(select(Intent).where(Intent.infrastructure_id == infra_id, Intent.state == "open")
                                     .order_by(Intent.created_at)))
            unfinished = s.scalar(select(Action.id).where(Action.infrastructure_id == infra_id,
                                                          Action.ended_at.is_(None)).limit(1)) is not None
            pins = {row.node_id: row.public_key for row in s.scalars(
                select(HostKey).where(HostKey.infrastructure_id == infra_id, HostKey.replaced_at.is_(None))
                .order_by(HostKey.id))}
        return Snapshot(infra, intents, unfinished, pins)
