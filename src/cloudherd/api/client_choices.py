"""What a user sets on a running fleet for the manager to honour: a node's protection from scale-in, a node in
standby (out of service, kept), a group's suspended processes, a machine detached from its group (kept running)
or attached to one.  Part of :class:`~cloudherd.api.client.Client`.

Each is recorded first (with its event) and honoured by every pass after it, the manager's or the one a command
runs when no manager keeps the infrastructure.  AWS Auto Scaling's rules hold: protection guards against a
shrink, not against the replacement of a failed node nor a user's own request; a node leaves standby only into a
group with room for it under its max; a suspended process stays suspended until resumed, across restarts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cloudherd.api import views
from cloudherd.api.client_core import ClientCore, Selectable, _scaling
from cloudherd.api.types import Group, InfrastructureSummary, Node
from cloudherd.errors import UsageError
from cloudherd.lifecycle import InfraState, NodeState

if TYPE_CHECKING:
    from cloudherd.engine.events import EventSink
    from cloudherd.state.models import Group as GroupRow
    from cloudherd.state.models import Infrastructure as InfraRow
    from cloudherd.state.models import Node as NodeRow

IN_SERVICE = frozenset({NodeState.READY, NodeState.UNHEALTHY})  # what may enter standby (AWS: InService)
LEAVING = frozenset({NodeState.PENDING, NodeState.CREATING, NodeState.DRAINING, NodeState.TERMINATING,
                     NodeState.TERMINATED})  # what has no machine of its own to detach


def _names(value: Selectable) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


class ChoiceCommands(ClientCore):
    """Protection, standby and suspended processes."""

    async def protect(self, ref: str, nodes: Selectable, *, protected: bool = True) -> list[Node]:
        """Keep ``nodes`` (names, ids or addresses) from scale-in, or with ``protected=False`` give them back to
        it.  A protected node stays when its group shrinks, which then runs above its size until it is released."""
        infra = self._live(ref)
        rows = self._nodes(infra, nodes)
        word = "protected from scale-in" if protected else "no longer protected from scale-in"
        self.store.set_protection(infra.id, [n.id for n in rows], protected,
                                  f"{', '.join(n.name for n in rows)}: {word}")
        return self._fresh(infra, rows)

    async def standby(self, ref: str, nodes: Selectable, *, enter: bool = True, replace: bool = False,
                      wait: float = 600.0, on_event: EventSink | None = None, run_pass: bool = True) -> list[Node]:
        """Put ``nodes`` in standby (out of service: not counted, checked, sampled, replaced or chosen by a
        shrink, but kept running), or with ``enter=False`` bring them back.  Entering, the group's size goes down
        by as many (not below its min), unless ``replace``: then new nodes are made in their place.  Leaving, the
        size goes up by as many (not above its max).  A pass applies it at once when no manager keeps the
        infrastructure (unless ``run_pass`` is False)."""
        infra = self._live(ref)
        rows = self._nodes(infra, nodes)
        group = self._one_group(rows)
        wrong = [n.name for n in rows if (n.standby if enter else not n.standby)
                 or (enter and NodeState(n.state) not in IN_SERVICE)]
        if wrong:
            why = "in service (ready or unhealthy) and not in standby" if enter else "in standby"
            raise UsageError(f"{', '.join(wrong)}: not {why}")
        row = next(g for g in infra.groups if g.name == group)
        low, high, _ = _scaling(infra, self.store).get(group, (None, None, ()))
        resize = self._standby_resize(group, row.count, len(rows), enter, replace, low, high)
        names = ", ".join(n.name for n in rows)
        message = (f"{group}: {names} into standby" + (" (replaced)" if replace else f" (size {row.count} → "
                                                         f"{row.count - len(rows)})")
                   if enter else f"{group}: {names} back in service (size {row.count} → {row.count + len(rows)})")
        self.store.set_standby(infra.id, group, [n.id for n in rows], enter, resize, message)
        if run_pass:
            await self._pass_now(infra, "standby", wait, on_event)
        return self._fresh(infra, rows)

    @staticmethod
    def _standby_resize(group: str, count: int, moving: int, enter: bool, replace: bool, low: int | None,
                        high: int | None) -> tuple[str, int] | None:
        """The scale request that keeps the group's size honest about its standby nodes (None: none)."""
        if enter and replace:
            return None
        if enter and low is not None and count - moving < low:
            raise UsageError(f"{group} would have {count - moving} node(s) in service, below its min ({low}): "
                             "replace them (--replace) or lower the min")
        if not enter and high is not None and count + moving > high:
            raise UsageError(f"{group} would have {count + moving} node(s), above its max ({high}): "
                             "shrink the group first or raise the max")
        return ("remove" if enter else "add", moving)

    async def suspend(self, ref: str, group: str, processes: Sequence[str] = (), *,
                      reason: str | None = None) -> Group:
        """Suspend ``processes`` of ``group`` (all when none is named; cloudherd's names or AWS's): the manager
        does not run them until :meth:`resume_processes`.  Returns the group as it is now."""
        from cloudherd.engine.processes import parse

        infra = self._live(ref)
        row = self._group(infra, group)
        chosen = parse(processes)
        why = reason or "suspended by the user"
        now = {**(row.suspended or {}), **{p.value: why for p in chosen}}
        self.store.set_suspended(infra.id, group, now, f"{group}: suspended {', '.join(p.value for p in chosen)}")
        return await self._group_view(infra.id, group)

    async def resume_processes(self, ref: str, group: str, processes: Sequence[str] = ()) -> Group:
        """Resume suspended ``processes`` of ``group`` (all when none is named).  Returns the group as it is now."""
        from cloudherd.engine.processes import parse

        infra = self._live(ref)
        row = self._group(infra, group)
        chosen = {p.value for p in parse(processes)}
        left = {p: why for p, why in (row.suspended or {}).items() if p not in chosen}
        resumed = [p for p in (row.suspended or {}) if p in chosen]
        self.store.set_suspended(infra.id, group, left,
                                 f"{group}: resumed {', '.join(resumed) or 'nothing (none was suspended)'}")
        return await self._group_view(infra.id, group)

    async def stop_machines(self, ref: str, *, wait: float = 600.0, on_event: EventSink | None = None,
                            run_pass: bool = True) -> InfrastructureSummary:
        """Stop the infrastructure's machines, kept with their disks (where the provider can stop them), and suspend
        every group's launching processes with the reason, so that nothing starts or replaces one until
        :meth:`start_machines`; as autostop and a total budget stop a fleet.  A pass carries it out, at once when
        no manager keeps the infrastructure (unless ``run_pass`` is False)."""
        from cloudherd.engine.wake import STOP

        infra = self._live(ref)
        if not infra.groups:
            raise UsageError(f"{infra.name} has no group to stop")
        request = self.store.add_scale_request(infra.id, infra.groups[0].name, STOP, 0)
        await self._carried_out(infra, request, STOP, wait, on_event, run_pass)
        return await self._summary(infra.id)

    async def start_machines(self, ref: str, *, wait: float = 600.0, on_event: EventSink | None = None,
                             run_pass: bool = True) -> InfrastructureSummary:
        """Start a stopped infrastructure again: every group's processes that a stop suspended (``cloudherd stop``,
        autostop, a total budget) resumed; the next pass starts the stopped nodes and logs in to them (their
        scripts ran before).  A budget that was reached stops it again at the next pass, unless it was raised."""
        from cloudherd.engine.idle_times import HELD

        infra = self._live(ref)
        held = {p.value for p in HELD}
        for group in infra.groups:
            left = {p: why for p, why in (group.suspended or {}).items() if p not in held}
            if left != (group.suspended or {}):
                self.store.set_suspended(infra.id, group.name, left, f"{group.name}: resumed "
                                         f"{', '.join(p for p in (group.suspended or {}) if p in held)} (start)")
        if run_pass:
            await self._pass_now(infra, "start", wait, on_event)
        return await self._summary(infra.id)

    async def _summary(self, infra_id: str) -> InfrastructureSummary:
        row = self.store.infrastructure(infra_id)
        return views.summary(row, self.store.nodes(infra_id))

    async def detach_nodes(self, ref: str, nodes: Selectable, *, replace: bool = False, wait: float = 600.0,
                           on_event: EventSink | None = None, run_pass: bool = True) -> list[Node]:
        """Take ``nodes`` out of their group with their machines kept running (AWS's DetachInstances): their
        cloudherd tags are cleared and their rows end (``detached …``), so that nothing of cloudherd's counts,
        checks or ends them any more; :meth:`attach_machines` can bring a machine back, into any group.  The
        group's size goes down by as many (not below its min), unless ``replace``: then new nodes are made in their
        place.
        A pass carries it out, at once when no manager keeps the infrastructure (unless ``run_pass`` is False)."""
        from cloudherd.engine.membership import DETACH

        infra = self._live(ref)
        rows = self._nodes(infra, nodes)
        group = self._one_group(rows)
        wrong = [n.name for n in rows if n.warm or not n.provider_id or NodeState(n.state) in LEAVING]
        if wrong:
            raise UsageError(f"{', '.join(wrong)}: not a machine of the group's to detach (being made, in the "
                             "warm pool or ending)")
        row = self._group(infra, group)
        counted = sum(1 for n in rows if not n.standby)
        low = _scaling(infra, self.store).get(group, (None, None, ()))[0]
        if not replace and low is not None and row.count - counted < low:
            raise UsageError(f"{group} would have {row.count - counted} node(s), below its min ({low}): replace "
                             "them (--replace) or lower the min")
        request = self.store.add_scale_request(infra.id, group, DETACH, 0 if replace else counted,
                                               [n.id for n in rows])
        await self._carried_out(infra, request, DETACH, wait, on_event, run_pass)
        return self._fresh(infra, rows)

    async def attach_machines(self, ref: str, group: str, machines: Selectable, *, wait: float = 600.0,
                              on_event: EventSink | None = None, run_pass: bool = True,
                              owner: str | None = None) -> list[Node]:
        """Make running machines nodes of ``group`` (AWS's AttachInstances): machines of the group's provider that
        no node holds, named by their id or, for a machine detached before, by its old node's name or id.  They
        are retagged and deployed (the group's scripts run on them) and the group's size goes up by as many (not
        above its max).  Returns their nodes once a pass has carried it out (none yet when a manager will).
        ``owner`` (a server's caller): only machines detached from that user's own infrastructures."""
        from cloudherd.engine.membership import ATTACH

        infra = self._live(ref)
        row = self._group(infra, group)
        ids = self._machines(row.provider, _names(machines), owner)
        held = self.store.machine_holders(row.provider, ids)
        if held:
            raise UsageError("; ".join(f"{m} is node {n.name}'s: detach it first" for m, n in held.items()))
        high = _scaling(infra, self.store).get(group, (None, None, ()))[1]
        if high is not None and row.count + len(ids) > high:
            raise UsageError(f"{group} would have {row.count + len(ids)} node(s), above its max ({high}): shrink "
                             "the group first or raise the max")
        request = self.store.add_scale_request(infra.id, group, ATTACH, len(ids), machines=ids)
        await self._carried_out(infra, request, ATTACH, wait, on_event, run_pass)
        now = [n for n in self.store.nodes(infra.id) if n.provider_id in ids and n.state != NodeState.TERMINATED]
        return self._fresh(infra, now)

    def _machines(self, provider: str, refs: Sequence[str], owner: str | None) -> list[str]:
        """Machine ids: a detached node's (by its name or id) or as given (not on a server: there a user takes
        back only what they detached)."""
        if not refs:
            raise UsageError("name at least one machine (its id, or a detached node's name)")
        ids = []
        for ref in refs:
            before = self.store.detached_node(ref, owner)
            if before is None and owner is not None:
                raise UsageError(f"{ref}: not a machine detached from one of your infrastructures")
            if before is not None and before.provider != provider:
                raise UsageError(f"{ref} was a machine of provider {before.provider}, not {provider}")
            ids.append(before.provider_id or ref if before is not None else ref)
        return list(dict.fromkeys(ids))

    async def _carried_out(self, infra: InfraRow, request: int, what: str, wait: float,
                           on_event: EventSink | None, run_pass: bool) -> None:
        """The pass that carries a request out, here when no manager keeps the infrastructure; its refusal
        raised."""
        if not run_pass or not await self._pass_now(infra, what, wait, on_event):
            return
        done = self.store.scale_request(request)
        outcome = (done.outcome or "") if done is not None else ""
        if done is None or done.consumed_at is None or " refused: " in outcome or " failed: " in outcome:
            raise UsageError(outcome or f"the {what} was not carried out: `cloudherd events` says why")

    # -- helpers ------------------------------------------------------------------------------------

    def _live(self, ref: str) -> InfraRow:
        infra = self.store.resolve(ref)
        if infra.state == InfraState.DESTROYED:
            raise UsageError(f"{infra.name} ({infra.id}) is destroyed")
        return infra

    @staticmethod
    def _one_group(rows: Sequence[NodeRow]) -> str:
        groups = {n.group_name for n in rows}
        if len(groups) > 1:
            raise UsageError(f"the nodes are of several groups ({', '.join(sorted(groups))}): one group at a time")
        return groups.pop()

    def _nodes(self, infra: InfraRow, refs: Selectable) -> list[NodeRow]:
        names = _names(refs)
        if not names:
            raise UsageError("name at least one node (name, id or address)")
        rows = {}
        for ref in names:
            row = self.store.resolve_node(ref, infrastructure_id=infra.id)
            rows[row.id] = row
        return list(rows.values())

    @staticmethod
    def _group(infra: InfraRow, name: str) -> GroupRow:
        found = next((g for g in infra.groups if g.name == name), None)
        if found is None:
            raise UsageError(f"no group '{name}' in {infra.name} (groups: "
                             f"{', '.join(sorted(g.name for g in infra.groups))})")
        return found

    def _fresh(self, infra: InfraRow, rows: Sequence[NodeRow]) -> list[Node]:
        pins = self._pins(infra.id)
        now = {n.id: n for n in self.store.nodes(infra.id)}
        return [views.node(now.get(n.id, n), pins.get(n.id)) for n in rows]

    async def _group_view(self, infra_id: str, group: str) -> Group:
        view = self._view(self.store.infrastructure(infra_id), self.store.nodes(infra_id))
        return next(g for g in view.groups if g.name == group)
