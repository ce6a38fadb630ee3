"""What a fleet's machines cost: a group's price per node, and each node's machine reckoned over a window, from
the state and the providers' price books (:mod:`cloudherd.providers.prices`).  Used by ``plan``, ``cost`` and
``status`` (through :mod:`cloudherd.api.costs`) and by the manager's budgets.

Why node-hours from the state: a node's row is written before its machine's create call and ended when its
terminate call has been made, so every machine a cloud bills is in it, including those of a failed ``up``.  A row
whose machine was never made (a create refused) holds no machine id and costs nothing: a failed launch is not
billed, as no cloud bills it.  A node is reckoned from its row's creation to its end (or now), at its group's
size's price; the time a node spent stopped is reckoned as running (the state keeps no record of when it
stopped): an over-estimate, said in the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cloudherd.lifecycle import LIVE_NODE_STATES, NodeState
from cloudherd.providers.prices import HOURS_A_MONTH, Price, PriceBook, price_book, region_of
from cloudherd.spec import Spec
from cloudherd.times import as_utc, utcnow

if TYPE_CHECKING:  # the lean reader's status prints a cost: no SQLAlchemy for it
    from cloudherd.spec.parts import Market
    from cloudherd.state.models import Infrastructure, Node
    from cloudherd.state.records import InfraRecord, NodeRecord

STOPPED_NOTE = "a stopped node is reckoned as running (its disk is billed; its compute is not)"


@dataclass(frozen=True)
class Priced:
    """A group's price per node and the book it comes from (``price`` None: unknown, ``why`` says why)."""

    price: Price | None
    book: PriceBook | None
    provider_type: str
    region: str | None
    size: str | None
    why: str = ""

    @property
    def label(self) -> str:
        return self.book.label() if self.book is not None else f"{self.provider_type}: no price book"

    def of_market(self, market: str | None) -> float | None:
        """One node's price an hour bought on ``market``: a spot node at the book's spot price where it has one,
        else (and on-demand) at the on-demand price — an upper bound for spot, never a guess below it."""
        if self.price is None:
            return None
        if market == "spot" and self.price.spot is not None:
            return self.price.spot
        return self.price.hourly

    def for_count(self, market: Market | None, count: int) -> float | None:
        """What ``count`` nodes of a group cost an hour, bought as its market distributes them (its on-demand base
        and share at the on-demand price, the rest at spot)."""
        if self.price is None:
            return None
        on_demand = count if market is None else market.on_demand_of(count)
        return on_demand * self.price.hourly + (count - on_demand) * (self.of_market("spot") or 0.0)


class Prices:
    """Price books read once per provider type, for one report or plan."""

    def __init__(self) -> None:
        self._books: dict[str, PriceBook | None] = {}

    def book(self, provider_type: str) -> PriceBook | None:
        if provider_type not in self._books:
            self._books[provider_type] = price_book(provider_type)
        return self._books[provider_type]

    def of_group(self, spec: Spec, group_name: str, provider: str | None = None, size: str | None = None) -> Priced:
        """The price of one node of ``group_name`` (on ``provider``, at ``size`` when given: a row's)."""
        group = spec.groups.get(group_name)
        provider = provider or (group.provider if group is not None else "")
        config = spec.providers.get(provider)
        kind = config.type if config is not None else provider
        settings: Mapping[str, Any] = (config.model_extra or {}) if config is not None else {}
        size = size or (group.size_name if group is not None else None)
        region = region_of(kind, settings)
        book = self.book(kind)
        if book is None:
            return Priced(None, None, kind, region, size, f"no price book for {kind}")
        price = book.price(region, size)
        why = "" if price is not None else f"no price for {size or book.default_size or 'its default size'} in " \
                                           f"{region or 'its region'}"
        return Priced(price, book, kind, region, size, why)


def monthly(hourly: float) -> float:
    return hourly * HOURS_A_MONTH


@dataclass
class NodeCost:
    """One node's machine, reckoned over a window."""

    infrastructure: str
    group: str
    provider: str
    hours: float
    hourly: float | None  # its price now (None: unknown)
    cost: float | None
    running: bool  # its machine runs now (not stopped, not ended)
    market: str = "on-demand"  # what it was bought as


def node_costs(infra: Infrastructure | InfraRecord, spec: Spec, nodes: Iterable[Node | NodeRecord], prices: Prices,
               since: datetime | None = None, now: datetime | None = None) -> list[NodeCost]:
    """Each node that held a machine, reckoned from its creation (or ``since``) to its end (or ``now``)."""
    now = now or utcnow()
    sizes = {g.name: g.size for g in infra.groups}
    found = []
    for node in nodes:
        if not node.provider_id:
            continue  # never a machine: nothing billed
        ended = node.state == NodeState.TERMINATED
        start = as_utc(node.created_at)
        end = as_utc(node.updated_at) if ended else now
        if since is not None:
            start = max(start, since)
        hours = max((end - start).total_seconds(), 0.0) / 3600
        priced = prices.of_group(spec, node.group_name, node.provider, sizes.get(node.group_name))
        market = getattr(node, "market", None) or "on-demand"
        hourly = priced.of_market(market)
        found.append(NodeCost(infra.name, node.group_name, node.provider, hours, hourly,
                              None if hourly is None else hours * hourly, node.state in LIVE_NODE_STATES, market))
    return found
