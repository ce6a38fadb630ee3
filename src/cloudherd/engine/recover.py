"""Settling what a killed or refused command left half-done, so that no state is a dead end.

The journal settles machines (open intents); this settles the rest: script runs that never ended,
and nodes left ``deploying`` or ``booting`` by a command that is gone.  It runs only under the
infrastructure's lease, when no live command is working on it: then a half-done state can only be
a leftover.  Level-based, like the rest: it looks at what is recorded, not at what it remembers.
"""

from __future__ import annotations

from collections.abc import Sequence

from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.lifecycle import NodeState
from cloudherd.state.models import Infrastructure, Node
from cloudherd.state.repo import Store

INTERRUPTED = "interrupted: the command running it ended before it did"
ORPHANED_STATES = {
    NodeState.DEPLOYING: "its deploy was interrupted: the next up runs its scripts again",
    NodeState.BOOTING: "it was made but never deployed: the next up deploys it",
}


def recover(store: Store, infra: Infrastructure, sink: EventSink | None = None,
            nodes: Sequence[Node] | None = None, *, unfinished: bool = True) -> int:
    """End unfinished actions and fail nodes stuck mid-deploy; returns how many things were settled.

    ``nodes``: the infrastructure's nodes as just read, when the caller has them (else they are read);
    ``unfinished``: False when the caller has just read that no action is unfinished (a snapshot's)."""
    touched = store.close_unfinished_actions(infra.id, INTERRUPTED) if unfinished else []
    settled = len(touched)
    for node in store.nodes(infra.id) if nodes is None else nodes:
        why = ORPHANED_STATES.get(NodeState(node.state)) if node.state in ORPHANED_STATES else None
        if why is None:
            continue
        store.update_node(node.id, state=NodeState.FAILED, reason=why)
        emit(sink, ProgressEvent("node", why, node=node.name, group=node.group_name, state=NodeState.FAILED))
        settled += 1
    if settled:
        store.add_event(infra.id, "recovered", f"settled {settled} leftover(s) of an interrupted command")
    return settled
