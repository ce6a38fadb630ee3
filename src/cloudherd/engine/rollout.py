"""Rolling updates: a group with ``update: {strategy: rolling}`` reaches a new release batch by batch.

Each node records the release of its group it was made or deployed at (``nodes.release``, a digest of the
group's spec and scripts, sizes aside).  Nodes behind the group's current release are *held*: a converge
(``up``'s, or a manager pass's) neither re-runs the new scripts on them nor replaces them all at once.  The
rollout replaces them, ``max_surge`` at a time, through the same converge:

1. the group is converged at its size plus the batch: that many nodes of the new release are made and
   deployed beside the old ones;
2. the health gate: each new node must pass the group's health checks continuously for
   ``min_healthy_seconds``, within ``timeout``;
3. the group is converged back at its size with the batch's old nodes as the victims: they are retired.

So the group never has fewer healthy nodes than its size.  A batch that fails its gate stops the rollout
(:class:`RolloutFailed`); ``up`` then retires that batch's new nodes and rolls the group back to the release
before, through this same path.

The batches are the plan's (:attr:`GroupDiff.batches <cloudherd.engine.diff.GroupDiff>`, decided by
:func:`cloudherd.engine.diff.rollout_batches`: in place for nodes whose shape is the group's when it allows
``max_unavailable``, else by surge): the rollout goes through them as planned, leaving out of a batch a node
no longer behind when its turn comes.  Level-based across runs: a rollout cut short (a kill, a refused batch)
goes on from the nodes as they are at the next ``up``, whose plan holds what is still behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from cloudherd.engine.causes import log_made
from cloudherd.engine.converge import converge, failure_reason
from cloudherd.engine.diff import Batch, behind, rollout_batches
from cloudherd.engine.events import ProgressEvent, emit
from cloudherd.engine.plan import Plan
from cloudherd.engine.probe import probe
from cloudherd.engine.session import RunSession
from cloudherd.errors import CloudherdError
from cloudherd.lifecycle import LIVE_NODE_STATES, NodeState
from cloudherd.observe import cause, tracing
from cloudherd.spec import LoadedSpec
from cloudherd.spec.durations import parse_duration
from cloudherd.state.models import Infrastructure, Node
from cloudherd.state.repo import Store

GATE_POLL = 1.0  # seconds between the gate's probes (at most: the group's health interval when shorter)


class RolloutPaused(Exception):
    """The rollout replaced ``pause_after`` nodes and stops there (a canary): resume or abort it later."""

    def __init__(self, done: int, left: int) -> None:
        super().__init__(f"paused after {done} node(s), {left} to go")
        self.done, self.left = done, left


class RolloutFailed(CloudherdError):
    """A batch did not pass its health gate; ``made`` are its new nodes (to retire)."""

    def __init__(self, message: str, group: str, made: Sequence[str]) -> None:
        super().__init__(message)
        self.group = group
        self.made = list(made)


@dataclass
class Rollout:
    """What a rollout needs of the ``up`` (or the pass) that runs it."""

    store: Store
    infra: Infrastructure
    session: RunSession
    run_intents: list[str]
    _replaced: int = 0
    _pause_after: int | None = None

    async def run(self, loaded: LoadedSpec, pause_after: int | None = None, plan: Plan | None = None) -> int:
        """Roll every rolling group that has nodes behind, group by group (in dependency order), through ``plan``'s
        batches (None: those of the nodes as they stand now); returns how many nodes were replaced.  Raises
        RolloutFailed at the first batch that fails its gate, and RolloutPaused once ``pause_after`` nodes are
        replaced while some are still behind."""
        self._replaced, self._pause_after = 0, pause_after
        for level in loaded.spec.levels():
            for name in level:
                await self._group(loaded, name, plan.batches(name) if plan is not None else None)
        return self._replaced

    async def _group(self, loaded: LoadedSpec, name: str, batches: list[Batch] | None) -> None:
        """The group's batches in order; a node no longer behind when its batch comes (gone meanwhile) is left
        out of it, and a batch left empty is skipped."""
        if batches is None:
            batches = rollout_batches(loaded, name, [n for n in behind(loaded, self.store.nodes(self.infra.id))
                                                     if n.group_name == name])
        group = loaded.group(name)
        batch_number = 0
        for position, planned in enumerate(batches):
            nodes = self.store.nodes(self.infra.id)  # read once a batch: what is behind, and what is there before it
            late = behind(loaded, nodes)
            old = {n.id: n for n in late if n.group_name == name}
            batch = [old[i] for i in planned.nodes if i in old]
            if not batch:
                continue
            if self._pause_after is not None and self._replaced >= self._pause_after:
                raise RolloutPaused(self._replaced, len(late))
            batch_number += 1
            total = batch_number + len(batches) - position - 1
            if planned.in_place:
                await self._in_place(loaded, name, batch, batch_number, total)
                continue
            said = f"{name}: batch {batch_number}/{total}: replacing {', '.join(n.name for n in batch)}"
            emit(self.session.sink, ProgressEvent("info", said))
            with tracing.span("rollout-batch", infrastructure=self.infra.name, group=name, batch=batch_number,
                              nodes=len(batch)), cause.because(self.store.add_event(self.infra.id, "rollout", said)):
                await self._replace_batch(loaded, name, group.count, batch, batch_number, nodes)

    async def _replace_batch(self, loaded: LoadedSpec, name: str, count: int, batch: Sequence[Node], number: int,
                             nodes: Sequence[Node]) -> None:
        """New nodes for the batch, the health gate, then the batch's old nodes retired."""
        before = {n.id for n in nodes}
        await self._step(_sized(loaded, name, count + len(batch)), name, number, before)
        made = log_made(self.store, self.infra, before, cause.parent(), "rollout", name)
        why = await self._gate(loaded, made)
        if why is not None:
            raise self._failed(name, number, why, [n.id for n in made])
        await self._converge(_sized(loaded, name, count), victims=[n.id for n in batch])
        self._replaced += len(batch)
        self.store.add_event(self.infra.id, "rollout", f"{name}: batch {number}: "
                             f"{', '.join(n.name for n in made)} healthy; retired {', '.join(n.name for n in batch)}")

    async def _in_place(self, loaded: LoadedSpec, name: str, batch: Sequence[Node], number: int, total: int) -> None:
        """A batch that takes the release where it stands: its scripts re-run on those nodes (out of the healthy
        count meanwhile), then the same health gate."""
        emit(self.session.sink, ProgressEvent("info", f"{name}: batch {number}/{total}: "
                                                      f"in place on {', '.join(n.name for n in batch)}"))
        await self._step(loaded, name, number, in_place=[n.id for n in batch])
        nodes = {n.id: n for n in self.store.nodes(self.infra.id)}
        why = await self._gate(loaded, [nodes[n.id] for n in batch if n.id in nodes])
        if why is not None:
            raise self._failed(name, number, why, [])
        self._replaced += len(batch)
        self.store.add_event(self.infra.id, "rollout", f"{name}: batch {number}: "
                             f"{', '.join(n.name for n in batch)} took the release in place, healthy")

    async def _step(self, loaded: LoadedSpec, name: str, number: int, before: Collection[str] | None = None,
                    in_place: Collection[str] = ()) -> None:
        """A batch's converge; when it cannot make or deploy the batch's nodes, the batch failed (its new nodes,
        those not in ``before``, to retire)."""
        try:
            await self._converge(loaded, in_place=in_place)
        except Exception as exc:
            if not isinstance(exc, CloudherdError | ExceptionGroup):
                raise
            made = [n.id for n in self._new(before, name)] if before is not None else []
            raise self._failed(name, number, failure_reason(exc), made, gate=False) from None

    def _failed(self, name: str, number: int, why: str, made: Sequence[str], *, gate: bool = True) -> RolloutFailed:
        """The batch's failure, recorded as an event; ``made``: its new nodes."""
        self.store.add_event(self.infra.id, "rollout", f"{name}: batch {number} failed: {why}")
        return RolloutFailed(f"{name}: batch {number} failed{' its health gate' if gate else ''}: {why}", name, made)

    def _new(self, before: Collection[str], group: str) -> list[Node]:
        return [n for n in self.store.nodes(self.infra.id)
                if n.id not in before and n.group_name == group and n.state != NodeState.TERMINATED]

    async def retire_made(self, loaded: LoadedSpec, group: str, made: Sequence[str]) -> None:
        """Retire a failed batch's new nodes (the group back at its size, those first to go)."""
        if made:
            await self._converge(_sized(loaded, group, loaded.group(group).count), victims=made)

    async def _converge(self, loaded: LoadedSpec, victims: Collection[str] = (), in_place: Collection[str] = ()
                        ) -> None:
        self.infra, _ = await converge(loaded, self.store, self.infra, self.session, run_intents=self.run_intents,
                                       victims=victims, in_place=in_place)

    async def _gate(self, loaded: LoadedSpec, made: Sequence[Node]) -> str | None:
        """None once every node of ``made`` has passed its checks for ``min_healthy_seconds`` in a row; else
        why not (a node that fails ``unhealthy_after`` checks in a row, past its grace, or the timeout)."""
        if not made:
            return None
        group = loaded.group(made[0].group_name)
        update, health = group.update, group.health
        started = time.monotonic()
        healthy_since: dict[str, float] = {}
        failing_since: dict[str, float] = {}
        failures: dict[str, int] = {}
        last: dict[str, str] = {}
        # the group's own bound: failed checks in a row, or failing for a while ("30s")
        count_limit = health.unhealthy_after if isinstance(health.unhealthy_after, int) else None
        time_limit = None if count_limit is not None else parse_duration(health.unhealthy_after)
        while True:
            nodes = self.store.nodes(self.infra.id)
            by_id = {n.id: n for n in nodes}
            current = [by_id[n.id] for n in made if n.id in by_id]
            gone = [f"{n.name} ({n.reason or n.state})" for n in current
                    if n.state not in LIVE_NODE_STATES or n.state == NodeState.FAILED]
            if gone:
                return "failed: " + ", ".join(gone)
            results = await asyncio.gather(*(probe(n, nodes, self.infra, loaded, self.session.pool, self.session.reach)
                                             for n in current))
            now = time.monotonic()
            for node, result in zip(current, results, strict=True):
                last[node.name] = result.detail
                if result.healthy:
                    healthy_since.setdefault(node.id, now)
                    failures[node.id] = 0
                    failing_since.pop(node.id, None)
                else:
                    healthy_since.pop(node.id, None)
                    failures[node.id] = failures.get(node.id, 0) + 1
                    since = failing_since.setdefault(node.id, now)
                    over = failures[node.id] >= count_limit if count_limit is not None \
                        else now - since >= (time_limit or 0.0)
                    if over and now - started >= health.grace:
                        return f"{node.name}: unhealthy after {failures[node.id]} checks: {result.detail}"
            if all(now - healthy_since.get(n.id, now + 1) >= update.min_healthy_seconds for n in current):
                return None
            if now - started > update.timeout:
                waiting = [f"{n.name} ({last.get(n.name, 'not checked')})" for n in current
                           if n.id not in healthy_since]
                return f"not healthy for {update.min_healthy_seconds:g}s within {update.timeout:g}s: " + \
                    ", ".join(waiting or [n.name for n in current])
            await asyncio.sleep(min(GATE_POLL, health.interval))


def _sized(loaded: LoadedSpec, group: str, count: int) -> LoadedSpec:
    """``loaded`` with one group at ``count`` (the rest as they are)."""
    groups = dict(loaded.spec.groups)
    groups[group] = groups[group].model_copy(update={"count": count})
    return dataclasses.replace(loaded, spec=loaded.spec.model_copy(update={"groups": groups}))
