"""The lifecycle-hook holds ``cloudherd status`` shows beside its waiting and draining nodes: which hook holds each
node and until when, read as cheaply as the rest of ``status``.

Why not :meth:`~cloudherd.api.client_hooks.HookCommands.hooks` alone: over the local state it opens the store,
and with it SQLAlchemy, the import ``status`` keeps away from (:mod:`cloudherd.state.reader`).  So where the lean
reader serves, the open holds are read through it (:meth:`cloudherd.state.reader.Reader.hook_waits`, the same
rows as the store's); where the store is open anyway, from the store; a server's client is asked (``hooks``).
Nothing is asked at all when no node is held.  What cannot be read (an older server without the route) leaves the
holds out: ``status`` still answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cloudherd.api.types import HookHold, Infrastructure
from cloudherd.errors import CloudherdError
from cloudherd.lifecycle import NodeState
from cloudherd.times import as_utc

HELD = (NodeState.WAITING, NodeState.DRAINING)


def open_holds(herd: Any, infra: Infrastructure) -> list[HookHold]:
    """The open holds of ``infra``'s nodes, oldest first, asked of ``herd`` (a local client or a server's); none
    when no node waits or drains."""
    if not any(n.state in HELD for n in infra.nodes):
        return []
    reads = getattr(herd, "reads", None)  # a local client's: the lean reader, or the store once it is open
    try:
        if reads is None:  # a server's client: its answer
            return list(herd.hooks(infra.id))
        waits: list[Any] = list(reads.hook_waits(infra.id))  # the lean reader's records, or the store's rows
    except CloudherdError:
        return []
    names = {n.id: n.name for n in infra.nodes}
    return [HookHold(node=names.get(w.node_id, w.node_id), node_id=w.node_id, group=w.group_name, hook=w.hook,
                     transition=w.transition, token=w.token, started_at=_moment(w.started_at),
                     deadline=_moment(w.deadline), result=w.result, completed_by=w.completed_by) for w in waits]


def _moment(value: Any) -> datetime:
    return as_utc(value if isinstance(value, datetime) else datetime.fromisoformat(value))
