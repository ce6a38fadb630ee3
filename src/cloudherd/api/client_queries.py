"""The client's reading queries: infrastructures, nodes, their logs and events, releases, users and tokens,
the providers' catalogs.  They change nothing (``status`` asks the providers)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from cloudherd.api import views
from cloudherd.api.client_core import ClientCore, _catalog_provider
from cloudherd.api.types import (
    Action,
    CostReport,
    Event,
    Image,
    Infrastructure,
    InfrastructureSummary,
    Node,
    Revision,
    Rollout,
    RolloutGroup,
    Size,
    Token,
    User,
    Why,
)
from cloudherd.errors import UsageError
from cloudherd.lifecycle import InfraState, NodeState

if TYPE_CHECKING:
    pass


class Queries(ClientCore):
    """What :class:`~cloudherd.api.client.Client` reads."""

    async def ls(self, *, include_destroyed: bool = False) -> list[InfrastructureSummary]:
        """Infrastructures, oldest first (destroyed ones only when asked)."""
        reads = self.reads
        counts = reads.node_counts()
        return [views.summary(i, node_counts=counts.get(i.id, (0, 0)))
                for i in reads.infrastructures(include_destroyed=include_destroyed, with_nodes=False)]

    async def status(self, ref: str) -> Infrastructure:
        """The infrastructure with its nodes' states checked against the providers (one list per provider)."""
        from cloudherd.engine.liveness import refresh

        infra = self.reads.resolve(ref)
        machines: dict[str, str] = {}
        view = self._view(infra, await refresh(self.reads, infra, machines, store=lambda: self.store))
        view = view.model_copy(update={"idle_deadlines": self._idle_deadlines(infra.id),
                                       "notifications_given_up": self.reads.notifications_given_up(infra.id)})
        if not machines:
            return view
        nodes = tuple(node.model_copy(update={"machine": machines.get(node.id)}) for node in view.nodes)
        return view.model_copy(update={"nodes": nodes})

    async def cost(self, ref: str | None = None, *, since: datetime | None = None,
                   owner: str | None = None) -> CostReport:
        """What machines have cost, by infrastructure, group and provider: every infrastructure (destroyed ones
        too; ``owner``: a user id's only), or the one ``ref`` names, from ``since`` (else from the start) until
        now."""
        from cloudherd.api.costs import cost_report

        reads = self.reads  # the lean reader where it can: status prints the cost without opening the store
        if ref is not None:
            rows = [reads.infrastructure(reads.resolve(ref).id)]
        elif owner is None:
            rows = [reads.infrastructure(i.id) for i in reads.infrastructures(include_destroyed=True)]
        else:
            rows = [reads.infrastructure(i.id) for i in self.store.infrastructures(include_destroyed=True,
                                                                                    owner_id=owner, with_nodes=False)]
        return cost_report(rows, since)

    def _idle_deadlines(self, infra_id: str) -> dict[str, datetime]:
        from cloudherd.engine.context import snapshot
        from cloudherd.engine.idle_times import idle_deadlines
        from cloudherd.errors import CloudherdError

        row = self.reads.infrastructure(infra_id)
        if row.state == InfraState.DESTROYED:
            return {}
        try:
            loaded = snapshot(row)
        except CloudherdError:
            return {}
        if loaded.spec.autostop is None and loaded.spec.autodown is None:
            return {}
        return idle_deadlines(self.reads, row, loaded)

    async def infrastructure(self, ref: str) -> Infrastructure:
        """The infrastructure as recorded (no provider call)."""
        infra = self.store.resolve(ref)
        return self._view(infra, self.store.nodes(infra.id))

    async def node(self, ref: str, name: str) -> Node:
        """The live node that answers to ``name``: its name, id, provider id or an address (the one rule,
        :meth:`cloudherd.state.repo.Store.resolve_node`)."""
        infra = self.store.resolve(ref)
        row = self.store.resolve_node(name, infrastructure_id=infra.id)
        return views.node(row, self._pins(infra.id).get(row.id))

    async def logs(self, ref: str, node: str | None = None) -> list[Action]:
        """Recorded actions (scripts, teardowns, exec commands) with their output, secrets masked."""
        infra = self.store.resolve(ref)
        nodes = {n.id: n for n in self.store.nodes(infra.id)}
        node_id = None
        if node:
            # the one rule (Node.answers_to); a terminated node's logs stay, but a live node answers first
            match = [n for n in nodes.values() if n.answers_to(node)]
            match = [n for n in match if n.state != NodeState.TERMINATED] or match
            if not match:
                raise UsageError(f"no node '{node}' in {infra.name}")
            if len(match) > 1:
                raise UsageError(f"{node!r} names {len(match)} nodes ({', '.join(n.name for n in match[:5])}): "
                                 "give the node's id")
            node_id = match[0].id
        return [views.action(a, nodes[a.node_id].name if a.node_id in nodes else None)
                for a in self.store.actions(infra.id, node_id)]

    async def events(self, ref: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        """The event log, oldest first, after event ``after`` (``events --follow`` asks with the last id seen)."""
        infra = self.store.resolve(ref)
        names = {n.id: n.name for n in self.store.nodes(infra.id)}
        return [views.event(e, names) for e in self.store.events_after(infra.id, after, limit)]

    async def why(self, node: str, ref: str | None = None) -> Why:
        """Why ``node`` exists: what made it, and what that followed from, back to the operation that began it
        (a manager's pass, a command, a request).  ``ref`` narrows the search to one infrastructure, where a
        terminated node answers too."""
        from cloudherd.engine.causes import DECISIONS

        infra_id = self.store.resolve(ref).id if ref else None
        row = self.store.resolve_node(node, infrastructure_id=infra_id, ended_too=infra_id is not None)
        infra = self.store.infrastructure(row.infrastructure_id)
        names = {n.id: n.name for n in self.store.nodes(infra.id)}
        made = self.store.node_made_event(infra.id, row.id)
        start = made or self.store.newest_event_of(infra.id, DECISIONS, before_at=row.created_at)
        chain = self.store.cause_chain(start.id) if start is not None else []
        return Why(node=row.name, infrastructure=infra.name, infrastructure_id=infra.id, state=str(row.state),
                   created_at=row.created_at,
                   chain=tuple(views.event(e, names) for e in chain), inferred=made is None)

    async def history(self, ref: str) -> list[Revision]:
        """The releases applied to an infrastructure, oldest first; the last is the current one."""
        infra = self.store.resolve(ref)
        rows = self.store.revisions(infra.id)
        return [views.revision(row, index == len(rows) - 1) for index, row in enumerate(rows)]

    async def rollout(self, ref: str) -> Rollout:
        """Where the latest release stands: each rolling group's nodes on it and those still behind."""
        from cloudherd.engine.reconcile import applied_spec
        from cloudherd.engine.revisions import group_digest
        from cloudherd.engine.rollout import behind

        infra = self.store.resolve(ref)
        rows = self.store.revisions(infra.id)
        latest = rows[-1] if rows else None
        groups: list[RolloutGroup] = []
        if infra.state != InfraState.DESTROYED:
            loaded = applied_spec(infra)
            nodes = self.store.nodes(infra.id, alive_only=True)
            late = {n.id for n in behind(loaded, nodes)}
            for name, group in loaded.spec.groups.items():
                if group.update.strategy != "rolling":
                    continue
                digest = group_digest(loaded, name)
                members = [n for n in nodes if n.group_name == name]
                groups.append(RolloutGroup(
                    name=name, count=group.count, surge=group.update.max_surge,
                    updated=tuple(n.name for n in members if n.release == digest),
                    behind=tuple(n.name for n in members if n.id in late)))
        return Rollout(infrastructure=infra.id, name=infra.name, revision=latest.number if latest else None,
                       state=latest.state if latest else "none", reason=latest.reason if latest else None,
                       groups=tuple(groups))

    async def users(self) -> list[User]:
        """Every user."""
        from cloudherd.api import auth

        return auth.users(self.store)

    async def tokens(self, *, user: str | None = None) -> list[Token]:
        """Tokens, without their secrets."""
        from cloudherd.api import auth

        return auth.tokens(self.store, user=user)

    # -- catalogs ----------------------------------------------------------------------------------

    async def sizes(self, provider: str, pattern: str | None = None, *, region: str | None = None) -> list[Size]:
        """Machine sizes a provider type offers (``pattern``: a regular expression); the default is marked."""
        async with _catalog_provider(provider, region) as driver:
            default = await driver.default_size()
            return [Size(name=s.name, cpus=s.cpus, memory_mb=s.memory_mb, default=s.name == default)
                    for s in await driver.sizes(pattern)]

    async def images(self, provider: str, pattern: str | None = None, *, region: str | None = None) -> list[Image]:
        """Images a provider type offers (``pattern``: a regular expression)."""
        async with _catalog_provider(provider, region) as driver:
            return [Image(id=i.id, name=i.name) for i in await driver.images(pattern)]

    async def regions(self, provider: str, pattern: str | None = None) -> list[str]:
        """Regions a provider type offers (``pattern``: a substring)."""
        async with _catalog_provider(provider, None) as driver:
            return [r for r in await driver.regions() if pattern is None or pattern in r]
