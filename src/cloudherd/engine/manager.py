"""The manager: reconcile passes every few seconds for the infrastructures it keeps, until asked to stop.

Each infrastructure it keeps is claimed for the manager's whole life through a ``manager:<name>`` lease
(a second manager of the same infrastructure is refused, and ``scale`` knows whether to wait for one),
and each pass also takes the infrastructure's own lease without waiting: a pass never runs beside an
``up`` or ``down``; it is skipped and tried again at the next tick.  Stopping ends the current pass
cleanly and tears nothing down.

Passes of different infrastructures are independent: each tick starts a pass over every infrastructure whose
last pass has ended, and none waits for another's (a fleet whose health URL takes its time delays only its
own next pass).  The times between them come from the monotonic clock; the leases are timed by the
database's clock (:mod:`cloudherd.state.clock`), so a process whose clock is off takes no live lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.engine.locks import (
    BusyError,
    FencedOut,
    Held,
    describe,
    exclusive,
    holder_gone,
    infra_scope,
    is_managed,
    lease_ttl,
    manager_scope,
    try_hold,
)
from cloudherd.engine.reconcile import CheckTimes, PassReport, pass_failure, reconcile
from cloudherd.lifecycle import InfraState
from cloudherd.observe import metrics, tracing
from cloudherd.state.models import Infrastructure
from cloudherd.state.repo import Store

__all__ = ["Manager", "is_managed", "manager_scope"]  # the last two: where callers have taken them from

MANAGERS = "managers/"  # leases of the live managers themselves (scope: managers/<token>)


def kept(infra: Infrastructure) -> bool:
    """Whether ``manage --all`` (and ``serve``) looks after an infrastructure: attached ones always, and any
    submitted one until it is made — a POST with ``attach=false`` is a request to make it, not to keep it."""
    return bool(infra.attached) or infra.state == InfraState.CREATING


@dataclass
class Manager:
    """Keeps the infrastructures ``ids`` names (or, with ``every_attached``, all attached ones) alive."""

    store: Store
    ids: Sequence[str] = ()
    every_attached: bool = False
    interval: float = 10.0
    sink: EventSink | None = None
    on_pass: Callable[[PassReport], None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    concurrency: int = 8  # passes over different infrastructures at once (each under its own lease)
    ttl: float = field(default_factory=lease_ttl)  # of its claims and its passes' leases (renewed every third)
    _claims: dict[str, Held] = field(default_factory=dict)
    _poked: asyncio.Event = field(default_factory=asyncio.Event)
    _poked_ids: set[str] = field(default_factory=set)
    _poked_all: bool = False
    _registration: Held | None = None  # this manager's ``managers/<token>`` lease: how others count it
    _passes: dict[str, asyncio.Task[PassReport | None]] = field(default_factory=dict)  # in flight, by infra id
    _repoke: set[str] = field(default_factory=set)  # poked while their pass ran: passed over again after it
    _gate: asyncio.Semaphore = field(init=False)
    _times: CheckTimes = field(default_factory=CheckTimes)  # when each node was checked (monotonic), pass to pass
    rounds: int = 0  # rounds completed (each starts the passes that are due; none waits for a slow one)
    last_round: float | None = None  # when the last one completed (time.monotonic())
    failed_rounds: int = 0  # rounds failed in a row (the database away…): the wait before the next grows

    def __post_init__(self) -> None:
        self._gate = asyncio.Semaphore(self.concurrency)

    def poke(self, infra_id: str | None = None) -> None:
        """Pass over ``infra_id`` now (or over every target, with None) instead of at the next tick: the server
        calls it after a change.  A poke passes over what was poked only; the ticks still cover everything."""
        if infra_id is None:
            self._poked_all = True
        else:
            self._poked_ids.add(infra_id)
        self._poked.set()

    def targets(self) -> list[Infrastructure]:
        if self.every_attached:
            return [i for i in self.store.infrastructures(with_nodes=False) if kept(i)]
        return [self.store.infrastructure(i) for i in self.ids]

    def register(self) -> None:
        """Say that this manager lives (a lease of its own, renewed with its claims), so that managers of
        ``--all`` can share the attached infrastructures evenly."""
        if self._registration is None:
            self._registration = try_hold(self.store, f"{MANAGERS}{uuid.uuid4().hex}", "manage", self.ttl)

    def live_managers(self) -> int:
        alive = [lease for lease in self.store.leases_under(MANAGERS, live=True) if not holder_gone(lease)]
        return max(1, len(alive))

    def share(self, count: int) -> int:
        """How many of ``count`` attached infrastructures this manager keeps: an even share, rounded up."""
        return math.ceil(count / self.live_managers()) if count else 0

    def claim(self, infra: Infrastructure) -> bool:
        """Hold ``manager:<name>`` for as long as this manager runs; refuse (named ids) or skip (--all)."""
        if infra.id in self._claims:
            if self.store.renew_lease(self._claims[infra.id].scope, self._claims[infra.id].owner, self.ttl):
                return True
            del self._claims[infra.id]  # lapsed (this manager was paused past its TTL): taken afresh, or not ours
        held = try_hold(self.store, manager_scope(infra.name), "manage", self.ttl)
        if held is None:
            lease = self.store.lease(manager_scope(infra.name))
            if not self.every_attached:
                raise BusyError(f"{infra.name} is already managed: {describe(lease) if lease else 'another manager'}")
            return False
        self._claims[infra.id] = held
        return True

    async def run(self, *, once: bool = False) -> list[PassReport]:
        """Passes until ``stop`` is set (or one round with ``once``); returns the last round's reports.

        Passes still running when it ends finish first (a stop is a flag, not a cancel); a cancelled manager
        cancels them."""
        reports: list[PassReport] = []
        beat = asyncio.create_task(self._keep_claims())
        try:
            only: set[str] | None = None
            while True:
                reports = await self._supervised_round(only, wait=None if once else self.interval)
                if once or self.stop.is_set():
                    return reports
                ticked = await self._rest()
                if self.stop.is_set():
                    return reports
                only = None if ticked or self._poked_all else set(self._poked_ids)
                self._poked_ids.clear()
                self._poked_all = False
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled or interrupted: the passes in flight are too
                for task in self._passes.values():
                    task.cancel()
            raise
        finally:
            try:
                await self._drain()
            finally:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
                self.release()

    async def _drain(self) -> None:
        """Wait for the passes in flight to end; cancelled meanwhile, they are cancelled too."""
        try:
            while self._passes:
                await asyncio.wait(list(self._passes.values()))
        except asyncio.CancelledError:
            for task in self._passes.values():
                task.cancel()
            raise

    async def _supervised_round(self, only: set[str] | None, *, wait: float | None = None) -> list[PassReport]:
        """A round whose failure (the database away, a bug) costs that round, never the manager: it is said,
        and the next one comes after a wait that doubles with each failure in a row (up to a minute).

        A round completes whatever its passes do (see :meth:`round`): ``rounds`` and ``last_round`` say that the
        manager's loop turns, which a slow infrastructure does not stop; a loop that is wedged still stops them."""
        try:
            if self.every_attached and self._registration is None:
                self.register()
            reports = await self.round(only, wait=wait)
        except BusyError:
            raise  # an infrastructure named to this manager is kept by another: the user is told
        except Exception as exc:
            self.failed_rounds += 1
            pause = min(self.interval * 2 ** (self.failed_rounds - 1), 60.0)
            emit(self.sink, ProgressEvent("error", f"manager: round failed ({pass_failure(exc)}); "
                                                   f"next in {pause:g}s"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=pause)
            return []
        self.failed_rounds = 0
        self.rounds += 1
        self.last_round = time.monotonic()
        return reports

    async def _rest(self) -> bool:
        """Wait for the next tick, a stop or a poke, whichever comes first; True when it was the tick."""
        waits = [asyncio.ensure_future(self.stop.wait()), asyncio.ensure_future(self._poked.wait())]
        try:
            done, _ = await asyncio.wait(waits, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        self._poked.clear()
        return not done

    async def _keep_claims(self) -> None:
        """Renew the ``manager:`` claims between passes and during long ones, so they never lapse while this
        manager lives (a pass that deploys for minutes must not let a second manager in)."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            with contextlib.suppress(Exception):  # the database away: renewed at the next beat
                await self._renew_claims()

    async def _renew_claims(self) -> None:
        for infra_id, held in list(self._claims.items()):
            if not await asyncio.to_thread(self.store.renew_lease, held.scope, held.owner, self.ttl):
                self._claims.pop(infra_id, None)  # lost while paused: another manager keeps it now
        if self._registration is not None and not await asyncio.to_thread(
                self.store.renew_lease, self._registration.scope, self._registration.owner, self.ttl):
            self._registration = None  # lapsed while paused: counted again from now on
            await asyncio.to_thread(self.register)

    async def round(self, only: set[str] | None = None, *, wait: float | None = None) -> list[PassReport]:
        """Start a pass over each target (or over those of ``only``) whose previous pass has ended, and wait for
        them up to ``wait`` seconds (None: until they all end).  Returns the reports of those that ended, in the
        targets' order.

        Passes of different infrastructures never wait for each other: one still running when the wait is over
        goes on by itself, and the rounds after it leave its infrastructure out until it ends (a poke meanwhile
        passes over it again once it has), while the other infrastructures get their passes every round."""
        if only is None:
            targets = [i for i in self.targets() if i.state != InfraState.DESTROYED]
            self._drop_claims({i.id for i in targets})
            if self.every_attached:
                targets = self._balanced(targets)
        else:
            targets = [i for i in self._poked_targets(only) if i.state != InfraState.DESTROYED]
        started: list[asyncio.Task[PassReport | None]] = []
        for infra in targets:
            if self.stop.is_set():
                break
            if infra.id in self._passes:  # its last pass still runs
                if only is not None:
                    self._repoke.add(infra.id)
                continue
            if self.claim(infra):  # a named one managed elsewhere: BusyError
                started.append(self._start_pass(infra))
        if started:
            await asyncio.wait(started, timeout=wait)
        return [report for task in started if task.done() and not task.cancelled()
                and (report := task.result()) is not None]

    def _start_pass(self, infra: Infrastructure) -> asyncio.Task[PassReport | None]:
        task = asyncio.create_task(self._one_pass(infra), name=f"pass over {infra.name}")
        self._passes[infra.id] = task
        task.add_done_callback(lambda _task: self._pass_ended(infra.id))
        return task

    def _pass_ended(self, infra_id: str) -> None:
        self._passes.pop(infra_id, None)
        if infra_id in self._repoke:
            self._repoke.discard(infra_id)
            if not self.stop.is_set():
                self.poke(infra_id)

    async def _one_pass(self, infra: Infrastructure) -> PassReport | None:
        """One pass over ``infra``, at most ``concurrency`` of them at once; its trouble is its own."""
        async with self._gate:
            if self.stop.is_set():
                return None
            try:
                report = await self.pass_over(infra)
                if report is not None and self.on_pass is not None:
                    self.on_pass(report)
            except Exception as exc:  # one infrastructure's trouble does not hold back the others
                emit(self.sink, ProgressEvent("error", f"{infra.name}: pass failed: {pass_failure(exc)}"))
                return None
            return report

    def _balanced(self, targets: list[Infrastructure]) -> list[Infrastructure]:
        """This manager's even share of ``targets``: what it keeps already first; a surplus (another manager
        joined) is let go, and what nobody keeps is claimed until the share is full.  Level-based: worked out
        anew each round from the leases, so a manager that died is replaced within its TTL."""
        share = self.share(len(targets))
        ordered = sorted(targets, key=lambda i: i.id)
        kept = [i for i in ordered if i.id in self._claims]
        for extra in kept[share:]:
            held = self._claims.pop(extra.id)
            self.store.release_lease(held.scope, held.owner)
        mine = kept[:share]
        for infra in ordered:
            if len(mine) >= share:
                break
            if infra.id not in self._claims and self.claim(infra):
                mine.append(infra)
        return [i for i in ordered if i in mine]

    def _poked_targets(self, only: set[str]) -> list[Infrastructure]:
        from cloudherd.errors import UsageError

        found = []
        for infra_id in sorted(only):
            if not self.every_attached and infra_id not in self.ids:
                continue
            try:
                infra = self.store.infrastructure(infra_id)
            except UsageError:
                continue
            if kept(infra) or not self.every_attached:
                found.append(infra)
        return found

    def _drop_claims(self, keep: set[str]) -> None:
        """Let go of infrastructures no longer kept (detached, destroyed): another manager may take them."""
        for infra_id in [i for i in self._claims if i not in keep]:
            held = self._claims.pop(infra_id)
            self.store.release_lease(held.scope, held.owner)

    async def pass_over(self, infra: Infrastructure) -> PassReport | None:
        """One pass under the infrastructure's lease; None when an ``up`` / ``down`` holds it (skipped: the
        next tick tries again).  A stop asked for meanwhile lets the pass finish: it is a flag, not a cancel."""
        try:
            async with exclusive(self.store, infra_scope(infra.name), "manage", wait=0, ttl=self.ttl) as held:
                began, timer = datetime.now(UTC), time.perf_counter()
                with tracing.operation_span("pass", f"manager pass (fence {held.fence}, pid {os.getpid()})",
                                            infrastructure=infra.name):
                    report = await reconcile(self.store, infra.id, sink=self.sink, times=self._times, keeper=True,
                                             log_pass=lambda report: self._pass_line(held, began, report))
                metrics.pass_done(time.perf_counter() - timer, error=report.error is not None)
                return report
        except FencedOut as exc:  # paused past the TTL: another manager keeps it now; this one lets go
            self._claims.pop(infra.id, None)
            emit(self.sink, ProgressEvent("info", str(exc)))
            return None
        except BusyError:
            return None

    @staticmethod
    def _pass_line(held: Held, began: datetime, report: PassReport) -> str:
        """Each pass in the event log with who held the lease (its fence) and when: one manager at a time per
        infrastructure can be checked from the log.  Only the latest PASS_EVENTS of them are kept."""
        ended = datetime.now(UTC)
        return f"fence {held.fence} pid {os.getpid()} {began.isoformat()} {ended.isoformat()}: {report.line()}"

    def release(self) -> None:
        for held in self._claims.values():
            self.store.release_lease(held.scope, held.owner)
        self._claims.clear()
        if self._registration is not None:
            self.store.release_lease(self._registration.scope, self._registration.owner)
            self._registration = None
