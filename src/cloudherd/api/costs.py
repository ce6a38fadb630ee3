"""What a fleet has cost, as the faces show it: ``cloudherd cost`` and the line ``status`` prints, from the node-hours
and prices of :mod:`cloudherd.engine.pricing` (which says how a machine is reckoned)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from cloudherd.api.types import CostLine, CostReport
from cloudherd.engine.pricing import STOPPED_NOTE, Priced, Prices, node_costs
from cloudherd.lifecycle import InfraState
from cloudherd.times import utcnow

if TYPE_CHECKING:  # the lean reader's status prints a cost: no SQLAlchemy for it
    from cloudherd.state.models import Infrastructure
    from cloudherd.state.records import InfraRecord

__all__ = ["Priced", "Prices", "cost_report"]


def cost_report(infras: Iterable[Infrastructure | InfraRecord], since: datetime | None = None,
                now: datetime | None = None) -> CostReport:
    """Each infrastructure's machines reckoned over the window, a line per group and provider."""
    from cloudherd.engine.context import snapshot
    from cloudherd.errors import CloudherdError

    now = now or utcnow()
    prices = Prices()
    lines: list[CostLine] = []
    notes: list[str] = []
    for infra in infras:
        try:
            spec = snapshot(infra).spec
        except CloudherdError as exc:
            notes.append(f"{infra.name}: not priced: its spec no longer loads ({exc})")
            continue
        costs = node_costs(infra, spec, infra.nodes, prices, since, now)
        keys = sorted({(c.group, c.provider, c.market) for c in costs if c.hours > 0 or c.running})
        for group, provider, market in keys:
            mine = [c for c in costs if (c.group, c.provider, c.market) == (group, provider, market)
                    and (c.hours > 0 or c.running)]
            priced = prices.of_group(spec, group, provider, next((g.size for g in infra.groups if g.name == group),
                                                                 None))
            hourly = priced.of_market(market)
            running = sum(c.running for c in mine)
            label = priced.label if priced.price is not None else f"{priced.label}: {priced.why}"
            if market == "spot" and priced.price is not None and priced.price.spot is None:
                label += " (no spot price: reckoned at on-demand)"
            lines.append(CostLine(
                infrastructure=infra.name, infrastructure_id=infra.id,
                destroyed=infra.state == InfraState.DESTROYED, group=group, provider=provider, machines=len(mine),
                running=running, node_hours=sum(c.hours for c in mine), hourly=hourly,
                hourly_now=None if hourly is None else running * hourly,
                cost=None if hourly is None else sum(c.cost or 0.0 for c in mine),
                prices=label, market=market))
    if any(line.prices.endswith("(stale") or "stale:" in line.prices for line in lines):
        notes.append("a price book is stale: `cloudherd catalog refresh PROVIDER`")
    notes.append(STOPPED_NOTE)
    return CostReport(since=since, until=now, lines=tuple(lines), notes=tuple(notes))
