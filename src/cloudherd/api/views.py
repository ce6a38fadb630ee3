"""ORM rows and engine results turned into the API's frozen values (the only place that reads both)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cloudherd.api import types
from cloudherd.lifecycle import InfraState, NodeState

Scaling = tuple[int | None, int | None, Sequence[str]]  # a group's min, max and its policies, a line each

if TYPE_CHECKING:
    from cloudherd.api.costs import Priced
    from cloudherd.engine.fleet import ExecResult, TransferResult
    from cloudherd.engine.gc import Orphan
    from cloudherd.engine.plan import Plan
    from cloudherd.engine.reconcile import PassReport
    from cloudherd.spec.parts import Market
    from cloudherd.state import models, records

    # a view is made from the store's rows or from the lean reader's records alike (the same attributes)
    InfraRow = models.Infrastructure | records.InfraRecord
    GroupRow = models.Group | records.GroupRecord
    NodeRow = models.Node | records.NodeRecord
    ActionRow = models.Action | records.ActionRecord


def action(row: ActionRow, node_name: str | None) -> types.Action:
    return types.Action(
        id=row.id, node=node_name or row.node_id, kind=row.kind, name=row.name, exit_code=row.exit_code,
        stdout=row.stdout or "", stderr=row.stderr or "", started_at=row.started_at, ended_at=row.ended_at,
    )


def node(row: NodeRow, host_key: str | None = None, last: ActionRow | None = None) -> types.Node:
    return types.Node(
        id=row.id, name=row.name, group=row.group_name, index=row.index, state=NodeState(row.state),
        reason=row.reason, provider=row.provider, provider_id=row.provider_id, address=row.address,
        private_address=row.private_address, port=row.port, user=row.ssh_user, host_key=host_key or row.host_key,
        created_at=row.created_at, updated_at=row.updated_at,
        last_action=action(last, row.name) if last is not None else None,
        health=row.health, last_check=row.last_check, last_check_at=row.last_check_at,
        protected=bool(row.protected), standby=bool(row.standby), warm=bool(row.warm),
        market=getattr(row, "market", None),
    )


def group(row: GroupRow, nodes: Iterable[NodeRow] = (), scaling: Scaling | None = None,
          metrics: Mapping[str, float] | None = None) -> types.Group:
    """``scaling``: the group's bounds and policies from the spec as applied; ``metrics``: its latest samples."""
    low, high, policies = scaling if scaling is not None else (None, None, ())
    config: Mapping[str, Any] = row.config or {}
    mine = [n for n in nodes if n.group_name == row.name and n.state != NodeState.TERMINATED and not n.warm]
    return types.Group(
        name=row.name, provider=row.provider, provider_type=row.provider_type, image=row.image, size=row.size,
        count=row.count, tags={str(k): str(v) for k, v in (config.get("tags") or {}).items()},
        min=low, max=high, actual=len(mine), healthy=sum(n.state == NodeState.READY for n in mine),
        policies=tuple(policies), metrics=dict(metrics or {}),
        suspended={str(k): str(v) for k, v in (row.suspended or {}).items()},
        markets=dict(Counter(str(n.market) for n in mine if getattr(n, "market", None))),
        fallback=_fallback(getattr(row, "market", None)),
    )


def _fallback(state: Mapping[str, Any] | None) -> str | None:
    """A spot group's fallback in words: ``on-demand since 2026-12-07 10:00 UTC: 3 spot interruptions …``."""
    if not state or not state.get("on"):
        return None
    where = f"off {state['place']}" if state["on"] == "next-place" and state.get("place") else str(state["on"])
    since = str(state.get("since", ""))[:16].replace("T", " ")
    return f"{where} since {since} UTC: {state.get('reason', '')}"


def counts(nodes: Iterable[NodeRow]) -> tuple[int, int]:
    """Live nodes and ready nodes."""
    live = [n for n in nodes if n.state != NodeState.TERMINATED]
    return len(live), sum(n.state == NodeState.READY for n in live)


def summary(row: InfraRow, nodes: Iterable[NodeRow] | None = None, managed: bool = False, *,
            node_counts: tuple[int, int] | None = None) -> types.InfrastructureSummary:
    """``node_counts``: the live and ready nodes as counted by the database, instead of ``nodes``."""
    if node_counts is None:
        node_counts = counts(row.nodes if nodes is None else nodes)
    return types.InfrastructureSummary(**_summary_fields(row, node_counts, managed))


def _summary_fields(row: InfraRow, node_counts: tuple[int, int], managed: bool) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "state": InfraState(row.state), "reason": row.reason, "spec": row.spec_path,
        "created_at": row.created_at, "updated_at": row.updated_at, "live_nodes": node_counts[0],
        "ready_nodes": node_counts[1],
        "attached": bool(row.attached), "managed": managed, "last_pass_at": row.last_pass_at,
        "last_pass": row.last_pass, "ends_at": getattr(row, "ends_at", None),
    }


def infrastructure(row: InfraRow, nodes: Iterable[NodeRow], pins: Mapping[str, str],
                   last: Mapping[str, ActionRow], scaling: Mapping[str, Scaling], managed: bool,
                   metrics: Mapping[str, Mapping[str, float]] | None = None) -> types.Infrastructure:
    nodes = list(nodes)
    return types.Infrastructure(
        **_summary_fields(row, counts(nodes), managed),
        groups=tuple(group(g, nodes, scaling.get(g.name), (metrics or {}).get(g.name)) for g in row.groups),
        nodes=tuple(node(n, pins.get(n.id), last.get(n.id)) for n in nodes),
    )


def pass_result(report: PassReport) -> types.PassResult:
    return types.PassResult(
        infrastructure=report.infrastructure, name=report.name, checked=report.checked,
        unhealthy=tuple(report.unhealthy), failed=tuple(report.failed), made=tuple(report.made),
        retired=tuple(report.retired),
        scaled=tuple(report.scaled), held=tuple(report.held), converged=report.converged, error=report.error,
        summary=report.line(),
    )


def event(row: models.Event, names: Mapping[str, str]) -> types.Event:
    return types.Event(id=row.id, at=row.at, kind=row.kind, message=row.message,
                       node=names.get(row.node_id or "") if row.node_id else None, cause=row.cause_id,
                       origin=row.origin, trace_id=row.trace_id)


def revision(row: models.Revision, current: bool) -> types.Revision:
    groups = (row.bundle or {}).get("groups") or {}
    scripts = [f"{name}: {script['source']}" for name, group in groups.items() for script in group.get("scripts") or []]
    return types.Revision(number=row.number, digest=row.digest[:12], author=row.author, origin=row.origin,
                          state=row.state, reason=row.reason, created_at=row.created_at, ended_at=row.ended_at,
                          current=current, scripts=scripts)


def exec_result(result: ExecResult) -> types.ExecResult:
    return types.ExecResult(node=result.node, group=result.group, exit_code=result.exit_code, stdout=result.stdout,
                            stderr=result.stderr, seconds=result.seconds, error=result.error,
                            remedy=_remedy(result.remedy))


def transfer_result(result: TransferResult) -> types.TransferResult:
    return types.TransferResult(node=result.node, group=result.group, files=tuple(result.files),
                                seconds=result.seconds, error=result.error, remedy=_remedy(result.remedy))


def _remedy(remedy: tuple[str, str] | None) -> types.Remedy | None:
    return types.Remedy(option=remedy[0], value=remedy[1]) if remedy else None


def plan(result: Plan, warnings: Sequence[object] = (), priced: Mapping[str, Priced] | None = None,
         markets: Mapping[str, Market | None] | None = None) -> types.Plan:
    """The plan as the faces show it; ``priced``: each group's price per node (for its Δ $/h); ``markets``: each
    group's market (a spot group's node is priced at its mix of spot and on-demand)."""
    priced = priced or {}
    markets = markets or {}
    return types.Plan(
        name=result.name, infrastructure=result.infrastructure_id, warnings=tuple(map(str, warnings)),
        groups=tuple(
            types.GroupPlan(
                name=g.name, provider=g.provider, count=g.count, current=g.current, new=g.new, removed=g.removed,
                create=g.create, destroy=tuple(n.name for n in g.destroy), replace=tuple(n.name for n in g.replace),
                reasons=tuple(g.reasons), scripts={source: tuple(names) for source, names in g.reruns.items()},
                rolling=tuple(g.rolling), surge=g.surge, warmed=len(g.warmed), pool_create=g.pool_create,
                **_price_fields(priced.get(g.name), markets.get(g.name), g.count),
            )
            for g in result.groups
        ),
    )


def _price_fields(priced: Priced | None, market: Market | None = None, count: int = 0) -> dict[str, Any]:
    if priced is None:
        return {}
    if priced.price is None:
        return {"prices": f"{priced.label}: {priced.why}" if priced.book is not None else priced.why}
    if market is None or not market.spot:
        return {"hourly": priced.price.hourly, "prices": priced.label}
    nodes = max(count, 1)
    on_demand = market.on_demand_of(nodes)
    mix = f"{nodes - on_demand} spot + {on_demand} on-demand" if on_demand else "spot"
    spot = "no spot price: reckoned at on-demand" if priced.price.spot is None else \
        f"spot ${priced.price.spot:.4f}/h, on-demand ${priced.price.hourly:.4f}/h"
    return {"hourly": (priced.for_count(market, nodes) or 0.0) / nodes, "prices": f"{priced.label}; {mix} ({spot})"}


def orphan(found: Orphan) -> types.Orphan:
    fields = found.as_dict()
    known = set(types.Orphan.model_fields)
    return types.Orphan(**{k: v for k, v in fields.items() if k in known})
