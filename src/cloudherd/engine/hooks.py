"""Lifecycle hooks (AWS Auto Scaling's, in cloudherd's words): a group's new nodes wait after their scripts before
they count as in service (``waiting``), and the nodes it ends wait before their machines go (``draining``), each
until every hook on that transition is completed.

Who completes a hold: a user (:meth:`cloudherd.api.client.Client.complete_hook`, ``cloudherd hook complete``,
CompleteLifecycleAction), the hook's ``command`` (run by the manager's pass on the node: exit 0 is CONTINUE), or
the timeout, which applies the hook's default (a heartbeat moves the timeout on).  Once a node's holds are all
completed: a launched node is ready if each said CONTINUE, else failed (the manager replaces it); a draining node
is retired whatever they said.

``down`` runs no hook: it ends everything, as AWS's forced delete does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from datetime import datetime

from cloudherd.engine.destroy import retire
from cloudherd.engine.session import RunSession
from cloudherd.engine.templates import node_env
from cloudherd.errors import CloudherdError
from cloudherd.lifecycle import LIVE_NODE_STATES, NodeState
from cloudherd.remote.scripts import in_workdir
from cloudherd.spec import LoadedSpec
from cloudherd.spec.parts import Hook
from cloudherd.state.models import HookWait, Infrastructure, Node, utcnow
from cloudherd.state.repo import Store

CONTINUE, ABANDON = "CONTINUE", "ABANDON"


def _names(hooks: Sequence[Hook]) -> str:
    return ", ".join(h.name for h in hooks)


def hold_launched(loaded: LoadedSpec, store: Store, infra_id: str, made: Collection[str]) -> int:
    """After a converge deployed them: the new nodes (``made``) of groups with launch hooks that are ready now wait
    for their hooks.  Returns how many were held."""
    held = 0
    if not made or not any(g.hooks_on("launch") for g in loaded.spec.groups.values()):
        return held
    for node in store.nodes(infra_id):
        if node.id not in made or node.state != NodeState.READY or node.warm \
                or node.group_name not in loaded.spec.groups:
            continue
        hooks = loaded.group(node.group_name).hooks_on("launch")
        if hooks:
            store.hold_node(infra_id, node.id, node.group_name, "launch", [(h.name, h.timeout) for h in hooks],
                            NodeState.WAITING, f"{node.name}: waiting for launch hook(s) {_names(hooks)}")
            held += 1
    return held


def hold_leaving(loaded: LoadedSpec, store: Store, infra_id: str, leaving: Sequence[Node]) -> list[Node]:
    """Of the nodes a converge is about to end, those whose group has terminate hooks (and whose machine lives)
    drain instead; returns the ones to retire now."""
    now: list[Node] = []
    for node in leaving:
        group = loaded.spec.groups.get(node.group_name)
        hooks = group.hooks_on("terminate") if group is not None else []
        if not hooks or node.state not in LIVE_NODE_STATES or node.state == NodeState.DRAINING:
            now.append(node)
            continue
        store.hold_node(infra_id, node.id, node.group_name, "terminate", [(h.name, h.timeout) for h in hooks],
                        NodeState.DRAINING, f"{node.name}: draining for terminate hook(s) {_names(hooks)}")
    return now


async def advance(store: Store, infra: Infrastructure, loaded: LoadedSpec, nodes: Sequence[Node], run: RunSession,
                  now: datetime | None = None) -> bool:
    """A pass's step: run the hooks' commands, apply the defaults of the holds past their deadline, and move each
    node whose holds are all completed.  Returns whether a node's state changed."""
    held = {n.id: n for n in nodes if n.state in (NodeState.WAITING, NodeState.DRAINING)}
    if not held and not any(g.hooks for g in loaded.spec.groups.values()):
        return False  # no query: a pass of a fleet without hooks costs nothing here
    waits = store.hook_waits(infra.id)
    if not waits and not held:
        return False
    moment = now or utcnow()
    by_node = {n.id: n for n in nodes}
    commanded = [w for w in waits if w.node_id in held and getattr(_hook(loaded, w), "command", None)]
    await asyncio.gather(*(_run_command(store, infra, loaded, by_node[w.node_id], w, run) for w in commanded))
    for wait in store.hook_waits(infra.id):
        hook = _hook(loaded, wait)
        if wait.node_id not in held:  # the node went another way meanwhile (its machine died, down ran)
            store.complete_wait(wait.id, ABANDON, "cloudherd", f"{wait.hook}: the node is no longer held")
        elif wait.deadline <= moment:
            result = (hook.default if hook is not None else "abandon").upper()
            store.complete_wait(wait.id, result, "timeout", f"{by_node[wait.node_id].name}: {wait.transition} hook "
                                f"{wait.hook} timed out: {result}")
    return await _move_on(store, infra, loaded, held, run)


def _hook(loaded: LoadedSpec, wait: HookWait) -> Hook | None:
    group = loaded.spec.groups.get(wait.group_name)
    return next((h for h in group.hooks if h.name == wait.hook), None) if group is not None else None


async def _run_command(store: Store, infra: Infrastructure, loaded: LoadedSpec, node: Node, wait: HookWait,
                       run: RunSession) -> None:
    """The hook's command on the node, its output kept as an action; exit 0 completes the hold with CONTINUE,
    anything else with ABANDON (a node that cannot be reached: the hold stays, and its timeout decides)."""
    hook = _hook(loaded, wait)
    assert hook is not None and hook.command is not None
    command = in_workdir(hook.command, node_env(node, loaded.group(node.group_name).env))
    action = store.start_action(infra.id, node.id, "hook", f"{wait.transition} hook {wait.hook}")
    left = max(1.0, (wait.deadline - utcnow()).total_seconds())
    try:
        result = await run.pool.run(run.reach.target(node), command, timeout=left)
    except (CloudherdError, TimeoutError, OSError) as exc:
        store.finish_action(action, None, "", f"{exc.__class__.__name__}: {exc}")
        return
    store.finish_action(action, result.exit_code, result.stdout, result.stderr)
    answer = CONTINUE if result.exit_code == 0 else ABANDON
    store.complete_wait(wait.id, answer, "command", f"{node.name}: {wait.transition} hook {wait.hook}: its command "
                        f"exited {result.exit_code}: {answer}")


async def _move_on(store: Store, infra: Infrastructure, loaded: LoadedSpec, held: dict[str, Node],
                   run: RunSession) -> bool:
    """Nodes whose holds are all completed: waiting ones in service (or failed), draining ones retired."""
    everything = store.hook_waits(infra.id, open_only=False)
    open_for = {w.node_id for w in everything if w.result is None}
    leaving: list[Node] = []
    moved = False
    for node_id, node in held.items():
        if node_id in open_for:
            continue
        transition = "launch" if node.state == NodeState.WAITING else "terminate"
        results = [w for w in everything if w.node_id == node_id and w.transition == transition]
        if node.state == NodeState.DRAINING:
            leaving.append(node)
            continue
        abandoned = [w.hook for w in results if w.result == ABANDON]
        if abandoned:
            reason = f"launch hook {', '.join(abandoned)}: ABANDON"
            store.update_node(node_id, state=NodeState.FAILED, reason=reason)
            store.add_event(infra.id, "hook", f"{node.name}: failed: {reason} (it is replaced)", node_id=node_id)
        else:
            store.update_node(node_id, state=NodeState.READY, reason=None, ready_at=utcnow())
            store.add_event(infra.id, "hook", f"{node.name}: in service (launch hooks completed)", node_id=node_id)
        moved = True
    if leaving:
        await retire(store, infra, leaving, loaded=loaded, reach=run.reach, pool=run.pool, providers=run.providers,
                     sink=run.sink)
        moved = True
    return moved
