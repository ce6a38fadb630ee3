"""What a pass did to its nodes, written as events that say why (``cloudherd why NODE`` follows them back).

A retired node follows from what found it failed (its newest health or interruption event), else from what
decided its group's size this pass (a scale request, a policy).  A node made follows from the retirement it
replaces (a heal), else from that decision, else from the newest decision recorded for the infrastructure (a
size set through the Auto Scaling API, an ``up`` submitted through the server).  The same words count the
nodes made and terminated by reason (:mod:`cloudherd.observe.metrics`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from cloudherd.lifecycle import LIVE_NODE_STATES, NodeState
from cloudherd.observe import cause, metrics
from cloudherd.state.models import Event, Infrastructure, Node, utcnow
from cloudherd.state.repo import Store
from cloudherd.times import as_utc

FOUND_FAILED = ("health", "interruption")  # the events that find a node failed or gone
DECISIONS = ("request", "scale", "scale-out", "scale-in", "scheduled", "market", "placement", "rollout", "up",
             "submit", "budget", "circuit-breaker", "warm-pool")
# the reason a node made for a decision of each kind is counted under (cloudherd_nodes_created_total{reason})
MADE_FOR = {"request": "scale", "scale": "scale", "scale-out": "scale", "scale-in": "scale", "scheduled": "scale",
            "market": "market", "placement": "heal", "rollout": "rollout", "up": "up", "submit": "up",
            "warm-pool": "warm-pool"}
SICK = frozenset({NodeState.FAILED, NodeState.UNHEALTHY, NodeState.DEAD, NodeState.STOPPED})


def log_converge(store: Store, infra: Infrastructure, before: dict[str, Node], after: Sequence[Node],
                 made: Sequence[str], retired: Sequence[str]) -> None:
    """The heal / scale a pass did, as events with their causes, and as counts."""
    gone = [next(n for n in before.values() if n.name == name) for name in retired]
    found = store.newest_node_events([n.id for n in gone if n.state in SICK], FOUND_FAILED)
    healed: dict[str, tuple[int, datetime]] = {}  # group → (the retirement a replacement follows from, found when)
    for node in gone:
        why = f"{node.state}: {node.reason}" if node.reason else str(node.state)
        finding, decided = found.get(node.id), cause.decided(node.group_name)
        parent = finding.id if finding is not None else decided[0] if decided else None
        event_id = store.add_event(infra.id, "retired", f"{node.name} retired ({why})", node_id=node.id,
                                   cause_id=parent)
        metrics.node_terminated(_terminated_reason(node, decided))
        if finding is not None:
            healed.setdefault(node.group_name, (event_id, as_utc(finding.at)))
    newest: Event | None = None
    for node in [n for n in after if n.name in made]:
        decided = cause.decided(node.group_name)
        if node.group_name in healed:
            parent, reason = healed[node.group_name][0], "heal"
            metrics.healed((utcnow() - healed[node.group_name][1]).total_seconds())
        elif decided is not None:
            parent, reason = decided
        else:
            newest = newest or store.newest_event_of(infra.id, DECISIONS)
            parent, reason = (newest.id, MADE_FOR.get(newest.kind, "other")) if newest else (None, "other")
        _made(store, infra, node, parent, reason)


def _terminated_reason(node: Node, decided: tuple[int, str] | None) -> str:
    if node.state in (NodeState.FAILED, NodeState.UNHEALTHY):
        return str(node.state)
    if node.state in (NodeState.DEAD, NodeState.STOPPED):
        return "failed"
    if decided is not None and decided[1] == "scale":
        return "scale-in"
    if decided is not None:
        return "replaced"
    return "scale-in"


def log_made(store: Store, infra: Infrastructure, before: Collection[str], parent: int | None, reason: str,
             group: str | None = None) -> list[Node]:
    """The nodes made since ``before`` (ids of the nodes there were; ``group``: of that group only), each a
    ``made`` event following from ``parent``, and counted under ``reason``."""
    made = [n for n in store.nodes(infra.id) if n.id not in before and n.state in LIVE_NODE_STATES
            and (group is None or n.group_name == group)]
    for node in made:
        _made(store, infra, node, parent, reason)
    return made


def _made(store: Store, infra: Infrastructure, node: Node, parent: int | None, reason: str) -> None:
    store.add_event(infra.id, "made", f"{node.name} made and deployed", node_id=node.id, cause_id=parent)
    metrics.node_created(reason)
    if node.ready_at is not None:
        metrics.node_ready((as_utc(node.ready_at) - as_utc(node.created_at)).total_seconds())
