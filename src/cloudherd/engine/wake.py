"""Fleets stopped and started again: ``cloudherd stop`` (a request the next pass carries out, as autostop and a
total budget stop a fleet: machines stopped where the provider can, the launching processes suspended with the
reason), and the start: the in-service nodes a stop left stopped are started by the first pass after their group
may launch again (``cloudherd start``, or ``resume`` of the group's processes).

Why in the pass and not in the command: the pass is what keeps a fleet as it should be (level-based): a group whose
``launch`` runs and whose nodes are stopped is not as it should be, whoever resumed it and however (the CLI, the
dashboard, ResumeProcesses).  The machines keep their disks and host keys; the deploy that follows finds their
scripts done and only logs in.  A start counts as use: autostop's idle time counts again from it, else a fleet
idle before its stop would be stopped again by the next pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cloudherd.engine.budget import stop_machines
from cloudherd.engine.idle_times import hold
from cloudherd.engine.processes import held_groups
from cloudherd.engine.warm_pool import each_provider, fresh_addresses
from cloudherd.lifecycle import NodeState, Process
from cloudherd.times import utcnow

if TYPE_CHECKING:
    from cloudherd.engine.session import RunSession
    from cloudherd.state.models import Infrastructure, Node
    from cloudherd.state.repo import Store

KIND = "start"
STOP = "stop"  # the scale request ``cloudherd stop`` writes, and its events' kind


async def wake(store: Store, infra: Infrastructure, run: RunSession, nodes: Sequence[Node]) -> str | None:
    """Start the stopped in-service nodes of the groups that may launch; returns what it did (also an event)."""
    kept = held_groups(infra.groups, Process.LAUNCH)
    stopped = [n for n in nodes if n.state == NodeState.STOPPED and not n.warm and not n.standby and n.provider_id
               and n.group_name not in kept]
    if not stopped:
        return None
    await each_provider(run, stopped, "start")
    fresh = await fresh_addresses(run, infra, stopped)
    store.update_nodes(infra.id, [(n.id, {"state": NodeState.BOOTING, "reason": None, **fresh.get(n.id, {})})
                                  for n in stopped])
    store.update_infrastructure(infra.id, busy_at=utcnow())
    said = "; ".join(f"{group}: {', '.join(n.name for n in stopped if n.group_name == group)} started again"
                     for group in sorted({n.group_name for n in stopped}))
    store.add_event(infra.id, KIND, said)
    return said


async def stop_requested(store: Store, infra: Infrastructure, run: RunSession, nodes: Sequence[Node],
                         scaled: list[str]) -> bool:
    """Carry out a pending ``cloudherd stop``: every group's launching processes suspended (a reason already there
    is kept), the running machines stopped.  Returns whether there was one."""
    requests = [r for r in store.pending_scale_requests(infra.id) if r.kind == STOP]
    if not requests:
        return False
    why = f"{STOP}: asked at {utcnow():%Y-%m-%d %H:%M:%S} UTC (`cloudherd start` starts it again)"
    hold(store, infra, why)
    done = f"{why}: {await stop_machines(store, infra, run, nodes, f'stopped: {why}', STOP)} machine(s) stopped"
    store.add_event(infra.id, STOP, done)
    for request in requests:
        store.consume_scale_request(request.id, done)
    scaled.append(done)
    return True
