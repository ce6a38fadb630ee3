"""Lifecycle hooks from the outside: the holds a fleet's nodes wait on, completing them and keeping them alive
(:mod:`cloudherd.engine.hooks`).  Part of :class:`~cloudherd.api.client.Client`."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from cloudherd.api.client_core import ClientCore
from cloudherd.api.types import HookHold
from cloudherd.errors import UsageError

if TYPE_CHECKING:
    from cloudherd.engine.events import EventSink
    from cloudherd.state.models import HookWait
    from cloudherd.state.models import Infrastructure as InfraRow

RESULTS = ("CONTINUE", "ABANDON")


class HookCommands(ClientCore):
    """List, complete and heartbeat lifecycle-hook holds."""

    async def hooks(self, ref: str, *, done: bool = False) -> list[HookHold]:
        """The holds open now (with ``done``, the completed ones too), oldest first.  A hold of a node that has
        ended meanwhile (``down`` runs no hook) is no longer open."""
        from cloudherd.lifecycle import NodeState

        infra = self.store.resolve(ref)
        ended = {n.id for n in self.store.nodes(infra.id) if n.state == NodeState.TERMINATED}
        return self._holds(infra, [w for w in self.store.hook_waits(infra.id, open_only=not done)
                                   if done or w.node_id not in ended])

    async def complete_hook(self, ref: str, node: str, hook: str | None = None, *, result: str = "CONTINUE",
                            wait: float = 600.0, on_event: EventSink | None = None, run_pass: bool = True,
                            by: str | None = None) -> list[HookHold]:
        """Complete ``node``'s open hold by ``hook`` (every open one of the node when None) with ``result``
        (CONTINUE or ABANDON).  The node then moves on at the next pass: one runs here at once when no manager
        keeps the infrastructure (unless ``run_pass`` is False).  ``by``: who completed it (a server names its
        caller; else this machine's user)."""
        answer = result.upper()
        if answer not in RESULTS:
            raise UsageError(f"result {result!r}: CONTINUE or ABANDON")
        infra, chosen = self._open(ref, node, hook)
        for found in chosen:
            self.store.complete_wait(found.id, answer, f"user {by or self._user_name()}",
                                     f"{node}: {found.transition} hook {found.hook}: {answer} (completed by a user)")
        if run_pass:
            await self._pass_now(infra, "hook", wait, on_event)
        return self._holds(infra, [w for w in self.store.hook_waits(infra.id, open_only=False)
                                   if w.id in {c.id for c in chosen}])

    async def heartbeat_hook(self, ref: str, node: str, hook: str | None = None) -> list[HookHold]:
        """Move the deadline of ``node``'s open hold(s) on by the hook's timeout, from now (AWS's
        RecordLifecycleActionHeartbeat)."""
        from cloudherd.engine.context import snapshot
        from cloudherd.times import utcnow

        infra, chosen = self._open(ref, node, hook)
        spec = snapshot(infra).spec
        for found in chosen:
            group = spec.groups.get(found.group_name)
            timeout = next((h.timeout for h in group.hooks if h.name == found.hook), None) if group else None
            if timeout is not None:
                self.store.extend_wait(found.id, utcnow() + timedelta(seconds=timeout))
        return self._holds(infra, [w for w in self.store.hook_waits(infra.id) if w.id in {c.id for c in chosen}])

    def _open(self, ref: str, node: str, hook: str | None) -> tuple[InfraRow, list[HookWait]]:
        infra = self.store.resolve(ref)
        row = self.store.resolve_node(node, infrastructure_id=infra.id)
        waits = [w for w in self.store.hook_waits(infra.id, node_id=row.id) if hook is None or w.hook == hook]
        if not waits:
            what = f"by hook {hook!r}" if hook else "by any hook"
            raise UsageError(f"{row.name} is not held {what} now (cloudherd hook ls {infra.name} shows the holds)")
        return infra, waits

    def _user_name(self) -> str:
        from cloudherd.engine.context import ensure_identity

        try:
            return ensure_identity(self.store).user_name
        except Exception:  # a user without a local identity (the server's): named by the face instead
            return "unknown"

    def _holds(self, infra: InfraRow, waits: list[HookWait]) -> list[HookHold]:
        names = {n.id: n.name for n in self.store.nodes(infra.id)}
        return [HookHold(node=names.get(w.node_id, w.node_id), node_id=w.node_id, group=w.group_name, hook=w.hook,
                         transition=w.transition, token=w.token, started_at=w.started_at, deadline=w.deadline,
                         result=w.result, completed_by=w.completed_by) for w in waits]
