"""The machines' own deadline (Capability.NODE_TIMER, AWS): when a machine ends itself if no manager has ended it.

Why: a time to live, an autodown and an autostop are the manager's to enforce (:mod:`cloudherd.engine.lifetime`,
:mod:`cloudherd.engine.idle`), and a manager on a laptop that went to sleep enforces nothing.  So the machines of
such an infrastructure carry the moment (the tag ``cloudherd:deadline``) and end themselves at it
(:mod:`cloudherd.providers.aws.node_timer`): made with it, and moved by the manager's passes as it moves — a longer
``--ttl``, a fleet found in use again, which pushes an idle deadline on.

The moment is the manager's own plus :data:`GRACE`: while a manager is there it acts first (it runs the teardown
scripts, pulls artifacts, records why); the machine's timer is for when none is.  Ending rules (``ttl``,
``autodown``, ``autostop`` with ``action: down``) have the machine terminate itself; a stopping autostop alone has
it stop.  A pass moves the tag when the moment came nearer, or went on by more than :data:`STEP` (a fleet in use
pushes it on at every pass: one CreateTags call every few minutes, not one a pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cloudherd.engine.idle_times import done_by, idle_since
from cloudherd.errors import CloudherdError
from cloudherd.lifecycle import LIVE_NODE_STATES
from cloudherd.providers.base import TAG_DEADLINE, Capability
from cloudherd.times import as_utc

if TYPE_CHECKING:
    from cloudherd.engine.session import RunSession
    from cloudherd.spec import LoadedSpec
    from cloudherd.state.models import Infrastructure, Node
    from cloudherd.state.repo import Store

GRACE = timedelta(minutes=10)
STEP = 300  # seconds: how far a deadline goes on before the machines' tag is moved with it


def deadline_of(store: Store, infra: Infrastructure, loaded: LoadedSpec) -> tuple[int, str] | None:
    """(Unix seconds, "terminate" / "stop"): when the machines end themselves, and how; None: no rule asks."""
    spec = loaded.spec
    ending: list[datetime] = []
    if infra.ends_at is not None:
        ending.append(as_utc(infra.ends_at))
    idle_rules = [(name, rule) for name, rule in (("autostop", spec.autostop), ("autodown", spec.autodown))
                  if rule is not None and not done_by(infra, name)]
    since = idle_since(store, infra) if idle_rules else None
    stopping: list[datetime] = []
    for name, rule in idle_rules:
        moment = (since or as_utc(infra.created_at)) + timedelta(seconds=rule.idle)
        (ending if name == "autodown" or rule.action == "down" else stopping).append(moment)
    chosen, how = (min(ending), "terminate") if ending else (min(stopping), "stop") if stopping else (None, "")
    if chosen is None:
        return None
    return int((chosen + GRACE).timestamp()), how


async def keep(store: Store, infra: Infrastructure, loaded: LoadedSpec, run: RunSession, nodes: Sequence[Node],
               tagged: dict[str, int]) -> None:
    """Move the machines' deadline tag where it should be now (``tagged``: what this manager last wrote, by
    infrastructure; the first pass writes it once)."""
    wanted = deadline_of(store, infra, loaded)
    if wanted is None:
        return
    moment = wanted[0]
    last = tagged.get(infra.id)
    if last is not None and last <= moment < last + STEP:
        return
    for provider_name in sorted({n.provider for n in nodes if n.state in LIVE_NODE_STATES and n.provider_id}):
        provider = run.providers.get(provider_name)
        if not provider.supports(Capability.NODE_TIMER):
            continue
        ids = [n.provider_id or "" for n in nodes if n.provider == provider_name and n.state in LIVE_NODE_STATES
               and n.provider_id]
        try:
            await provider.tag(ids, {TAG_DEADLINE: str(moment)})
        except CloudherdError as exc:  # the manager still enforces the rule; the next pass tries again
            store.add_event(infra.id, "timer", f"{provider_name}: the machines' deadline not moved: {exc}")
            return
    tagged[infra.id] = moment
