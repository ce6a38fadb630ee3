"""What ``/metrics``' gauges read at each scrape (:mod:`cloudherd.api.metrics_view`), in a fixed number of
queries whatever the number of infrastructures.  Mixed into :class:`cloudherd.state.repo.Store`."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, selectinload

from cloudherd.lifecycle import LIVE_NODE_STATES, InfraState, NodeState
from cloudherd.state import clock
from cloudherd.state.models import Infrastructure, Lease, Node, Revision

Place = tuple[str, str, str, str]  # (infrastructure id, group, provider, market)


@dataclass
class GaugeReads:
    """The state as the gauges see it: live nodes by (infrastructure name, group, state); running machines by
    place; the newest release of each infrastructure counted by state; live leases; and the rows (with their
    groups) of the infrastructures that have running machines, for their prices."""

    nodes: dict[tuple[str, str, str], int] = field(default_factory=dict)
    running: dict[Place, int] = field(default_factory=dict)
    releases: dict[str, int] = field(default_factory=dict)
    leases_held: int = 0
    priced: list[Infrastructure] = field(default_factory=list)


class GaugeState:
    """``reading`` and ``engine`` come from the Store."""

    engine: Engine

    def reading(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    def gauge_reads(self) -> GaugeReads:
        found = GaugeReads()
        with self.reading() as s:
            rows = s.execute(
                select(Infrastructure.id, Infrastructure.name, Node.group_name, Node.provider, Node.state,
                       Node.market, Node.provider_id.is_not(None), func.count())
                .join(Infrastructure, Node.infrastructure_id == Infrastructure.id)
                .where(Node.state != NodeState.TERMINATED, Infrastructure.state != InfraState.DESTROYED)
                .group_by(Infrastructure.id, Infrastructure.name, Node.group_name, Node.provider, Node.state,
                          Node.market, Node.provider_id.is_not(None)))
            for infra_id, name, group, provider, state, market, has_machine, count in rows:
                key = (name, group, state)
                found.nodes[key] = found.nodes.get(key, 0) + count
                if has_machine and state in LIVE_NODE_STATES:
                    place = (infra_id, group, provider, market or "on-demand")
                    found.running[place] = found.running.get(place, 0) + count
            newest = select(func.max(Revision.id)).group_by(Revision.infrastructure_id)
            releases = (select(Revision.state, func.count())
                        .join(Infrastructure, Revision.infrastructure_id == Infrastructure.id)
                        .where(Revision.id.in_(newest), Infrastructure.state != InfraState.DESTROYED)
                        .group_by(Revision.state))
            found.releases = {state: count for state, count in s.execute(releases)}
            found.leases_held = int(s.scalar(select(func.count()).select_from(Lease).where(
                ~clock.passed(self.engine.dialect.name, Lease.expires_at))) or 0)
            if found.running:
                found.priced = list(s.scalars(
                    select(Infrastructure).where(Infrastructure.id.in_({place[0] for place in found.running}))
                    .options(selectinload(Infrastructure.groups))))
        return found
