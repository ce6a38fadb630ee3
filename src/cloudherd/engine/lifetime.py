"""An infrastructure's time to live: ``ttl:`` in its spec (from its making) or ``up --ttl`` (from that ``up``)
sets when it ends (``infrastructures.ends_at``), and the manager's first pass after that brings it down.

Why a moment kept in the state and not a timer: whichever manager holds the infrastructure then ends it, after a
restart or on another machine, and ``status`` can say when it will be.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cloudherd.engine.destroy import down_held
from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.spec import Spec
from cloudherd.state.models import Infrastructure
from cloudherd.state.repo import Store
from cloudherd.times import as_utc, utcnow


def stamp_end(store: Store, infra: Infrastructure, spec: Spec, ttl: float | None = None) -> None:
    """Record when ``infra`` ends: ``ttl`` seconds from now when given, else its spec's ``ttl`` from its making;
    with neither, what was recorded stands."""
    if ttl is not None:
        ends = utcnow() + timedelta(seconds=ttl)
    elif spec.ttl is not None:
        ends = as_utc(infra.created_at) + timedelta(seconds=spec.ttl)
    else:
        return
    store.update_infrastructure(infra.id, ends_at=ends)


async def end_if_due(store: Store, infra: Infrastructure, now: datetime, sink: EventSink | None) -> bool:
    """Bring ``infra`` down when its time to live has run out by ``now``; returns whether it did."""
    if infra.ends_at is None or as_utc(now) < as_utc(infra.ends_at):
        return False
    message = f"time to live ran out at {as_utc(infra.ends_at):%Y-%m-%d %H:%M:%S} UTC: down"
    store.add_event(infra.id, "ttl", message)
    emit(sink, ProgressEvent("info", f"{infra.name}: {message}"))
    await down_held(store, infra, on_event=sink)
    return True
