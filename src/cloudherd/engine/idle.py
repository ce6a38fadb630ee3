"""Autostop and autodown: an infrastructure idle long enough is stopped (``autostop``, or ended with ``action:
down``) or ended (``autodown``), by the manager's passes.

Idle means, on every running node: no interactive SSH session (an ``sshd: USER@pts/N`` process, or
``sshd-session: …`` from OpenSSH 9.8: a person logged in, ``cloudherd ssh`` included; cloudherd's own
connections have no terminal), no script or command of cloudherd's running, and the node's cpu under the rule's
``cpu`` percent (``autostop``'s, else ``autodown``'s).  Each pass that finds the infrastructure in use writes
when (``infrastructures.busy_at``); its idle time counts from the latest of that, its last action and its
making, so that whichever manager holds it next goes on counting.  SkyPilot has one timer for both "stop" and
"down"; here they are two rules, so a fleet can stop after 30 minutes and be ended after a week.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

from cloudherd.engine.budget import stop_machines
from cloudherd.engine.destroy import down_held
from cloudherd.engine.idle_times import done_by, hold, idle_since
from cloudherd.engine.metrics import Sampler
from cloudherd.engine.session import RunSession
from cloudherd.errors import CloudherdError
from cloudherd.lifecycle import NodeState
from cloudherd.spec import LoadedSpec
from cloudherd.spec.parts import Idle
from cloudherd.state.models import Infrastructure, Node
from cloudherd.state.repo import Store

# interactive SSH sessions on the node: OpenSSH names a session's process "sshd: USER@pts/N" (from 9.8,
# "sshd-session: USER@pts/N"); three processes in all, whatever the node runs, so that looking costs its cpu
# nothing worth counting (a loop over /proc made a small node's cpu look busy)
SESSIONS = ("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' "
            "| grep -cE '^sshd(-session)?: [^ ]*@pts/' || true")
TIMEOUT = 10.0
CPU_WINDOW = 5.0  # seconds a node's cpu is measured over at the least (passes closer together do not measure it)
IN_USE = frozenset({NodeState.READY, NodeState.UNHEALTHY, NodeState.WAITING, NodeState.DEPLOYING})


async def watch_idle(store: Store, infra: Infrastructure, loaded: LoadedSpec, run: RunSession,
                     nodes: Sequence[Node], sampler: Sampler, now: datetime) -> str | None:
    """Note whether the infrastructure is in use; stop or end it once idle long enough; returns what it did."""
    rules = [(name, rule) for name, rule in (("autostop", loaded.spec.autostop), ("autodown", loaded.spec.autodown))
             if rule is not None]
    if not rules:
        return None
    threshold = rules[0][1].cpu
    why_busy = await _busy(store, infra, run, nodes, sampler, threshold)
    if why_busy or infra.busy_at is None:  # the first pass that watches starts the count: not its making
        store.update_infrastructure(infra.id, busy_at=now)
        return None
    since = idle_since(store, infra)
    for name, rule in reversed(rules):  # autodown first: a fleet idle long enough to end is not merely stopped
        if now - since >= timedelta(seconds=rule.idle) and not done_by(infra, name):
            return await _act(store, infra, run, nodes, name, rule, since)
    return None


async def _busy(store: Store, infra: Infrastructure, run: RunSession, nodes: Sequence[Node], sampler: Sampler,
                threshold: float) -> str | None:
    """Why the infrastructure is in use now (None: it is not)."""
    if any(a.ended_at is None for a in store.last_actions(infra.id).values()):
        return "a script or command runs"
    live = [n for n in nodes if n.state in IN_USE and not n.standby and not n.warm]
    answers = await asyncio.gather(*(_node_busy(n, run, sampler, threshold) for n in live))
    return next((why for why in answers if why), None)


async def _node_busy(node: Node, run: RunSession, sampler: Sampler, threshold: float) -> str | None:
    try:
        result = await run.pool.run(run.reach.target(node), SESSIONS, timeout=TIMEOUT)
    except (CloudherdError, TimeoutError, OSError):
        return f"{node.name}: not reachable (its use unknown)"  # never stop what cannot be seen
    if (result.stdout.strip() or "0").isdigit() and int(result.stdout.strip() or "0") > 0:
        return f"{node.name}: an SSH session is open"
    cpu = (await sampler.builtin(node, run.pool, run.reach, min_window=CPU_WINDOW)).get("cpu")
    if cpu is not None and cpu >= threshold:
        return f"{node.name}: cpu {cpu:.0f}% ≥ {threshold:g}%"
    return None


async def _act(store: Store, infra: Infrastructure, run: RunSession, nodes: Sequence[Node], name: str, rule: Idle,
               since: datetime) -> str:
    why = f"{name}: idle since {since:%Y-%m-%d %H:%M:%S} UTC ({rule.idle:g} s allowed)"
    if name == "autodown" or rule.action == "down":
        store.add_event(infra.id, name, f"{why}: down")
        await down_held(store, infra, on_event=run.sink, reason="down")
        return f"{why}: down"
    hold(store, infra, why)
    done = f"{why}: {await stop_machines(store, infra, run, nodes, f'stopped: {why}', name)} machine(s) stopped"
    store.add_event(infra.id, name, done)
    return done
