"""What a running server holds beside its routes: the manager that keeps the attached infrastructures,
the background work it answered 202 for (teardowns, exec jobs), and the warm SSH connections.

Nothing here is the only copy of anything: the manager reads what it keeps from the database at every
pass, a job's outcome is written to its row, and a teardown cut by a stop is started again at the next
start (its infrastructure is still ``destroying``, or its Auto Scaling group still "Delete in progress").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cloudherd.api.client import Client
from cloudherd.api.notify import configured_tuning
from cloudherd.engine.manager import Manager
from cloudherd.errors import CloudherdError
from cloudherd.lifecycle import InfraState
from cloudherd.server.config import ServerConfig
from cloudherd.server.live import LiveHub
from cloudherd.state.repo import Store

if TYPE_CHECKING:
    from cloudherd.engine.outbox import Tuning
    from cloudherd.spec.confine import Confinement

log = logging.getLogger("cloudherd.server")


@dataclass
class Runtime:
    config: ServerConfig
    client: Client
    manager: Manager | None = None
    _manager_thread: threading.Thread | None = None
    _manager_loop: asyncio.AbstractEventLoop | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    pool: Any = None  # a warm ConnectionPool, made on first use
    _loop: asyncio.AbstractEventLoop | None = None
    live: LiveHub = field(default_factory=LiveHub)  # the dashboard's streams: one sampler per thing watched
    _notify_stop: asyncio.Event | None = None  # stops the notifications' sender
    # the sender's pace (CLOUDHERD_WEBHOOK_*): read when the server is made, so that a bad value stops its start
    notify_tuning: Tuning = field(default_factory=configured_tuning)

    @property
    def store(self) -> Store:
        return self.client.store

    @property
    def within(self) -> Confinement:
        """What a spec sent to this server may use: the clouds of its configuration, nothing of its own."""
        from cloudherd.spec.confine import Confinement

        return Confinement(self.config.providers, self.config.max_group_size)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        cut = self.store.interrupt_running_jobs()
        if cut:
            log.warning("%d job(s) were cut by the last stop", cut)
        ready = threading.Event()
        self._manager_thread = threading.Thread(target=self._run_manager, args=(ready,), name="manager", daemon=True)
        self._manager_thread.start()
        await asyncio.to_thread(ready.wait, 30)
        for infra in self.store.infrastructures():
            if infra.state == InfraState.DESTROYING and not infra.attached:
                self.start_down(infra.id)  # a teardown the last stop cut: finished now
        self._start_notifications()

    def _start_notifications(self) -> None:
        """The outbox's sender, on the server's loop (its database work in threads, its POSTs async): what the
        manager's events and the Auto Scaling API's test notifications wait in is delivered."""
        from cloudherd.api import notify

        stop = self._notify_stop = asyncio.Event()
        self.spawn(lambda: notify.sender(self.store, self.notify_tuning).run(stop), "notifications")

    def _run_manager(self, ready: threading.Event) -> None:
        """The manager's passes on a loop (and thread) of their own: a long pass, and its database work, never
        stands between a request and its answer."""
        async def main() -> None:
            manager = self.manager = Manager(self.store, every_attached=True, interval=self.config.interval)
            self._manager_loop = asyncio.get_running_loop()
            ready.set()
            while not manager.stop.is_set():  # supervised: a manager that fails is started again
                try:
                    await manager.run()
                except Exception:  # a bug of ours (a round's own failures are kept inside it): logged
                    log.exception("the manager failed; started again")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(manager.stop.wait(), timeout=min(self.config.interval, 5.0))

        try:
            asyncio.run(main())
        except Exception:  # a bug of ours: logged; the routes go on answering, /healthz says 503
            log.exception("the manager stopped")
        finally:
            ready.set()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the server can do its work (its database answers, its manager completes rounds), and what
        it knows of both; blocking (the database is asked), so called in a thread."""
        answer: dict[str, Any] = {}
        ok = True
        try:
            self.store.ping()
            answer["database"] = "ok"
        except Exception as exc:
            ok, answer["database"] = False, f"unreachable: {exc.__class__.__name__}"
        manager, thread = self.manager, self._manager_thread
        if manager is None or thread is None or not thread.is_alive():
            ok, answer["manager"] = False, "not running"
            return ok, answer
        # a round never waits for a slow pass (each infrastructure's passes go on by themselves): a loop that
        # has not turned for this long is stuck
        stuck_after = max(300.0, 20 * self.config.interval)
        age = None if manager.last_round is None else time.monotonic() - manager.last_round
        answer["manager"] = {"rounds": manager.rounds, "failed_in_a_row": manager.failed_rounds,
                             "last_round_seconds_ago": None if age is None else round(age, 1)}
        if manager.failed_rounds or (age is not None and age > stuck_after):
            ok = False
        return ok, answer

    async def stop(self) -> None:
        """The current passes finish; teardowns and jobs in flight are cut (and resumed or marked at the next
        start); nothing is torn down because the server stops."""
        if self.manager is not None and self._manager_loop is not None:
            with contextlib.suppress(RuntimeError):  # its loop ended already
                self._manager_loop.call_soon_threadsafe(self.manager.stop.set)
        await self.live.close()
        if self._notify_stop is not None:
            self._notify_stop.set()  # the sender lets its claims go (its next start sends those rows)
        if self._manager_thread is not None:
            await asyncio.to_thread(self._manager_thread.join)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self.pool is not None:
            self.client.keep_connections(None)
            await self.pool.__aexit__(None, None, None)
            self.pool = None
        await self.client.close()
        said = "cloudherd serve: stopped; the passes in progress finished, nothing was torn down"
        if logging.getLogger("cloudherd").handlers:  # --log-format json: a line like the others
            log.info(said)
        else:
            print(said, file=sys.stderr)

    def _on_loop(self, call: Callable[[], Any]) -> None:
        """Run ``call`` on the server's loop: the routes' blocking parts run in threads."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop or self._loop is None:
            call()
        else:
            self._loop.call_soon_threadsafe(call)

    def poke(self, infra_id: str | None = None) -> None:
        """Have the manager pass over ``infra_id`` (or everything) now; callable from any thread."""
        if self.manager is not None and self._manager_loop is not None:
            with contextlib.suppress(RuntimeError):
                self._manager_loop.call_soon_threadsafe(self.manager.poke, infra_id)

    def spawn(self, work: Callable[[], Awaitable[Any]], name: str) -> None:
        """Run ``work`` in the background; its errors are logged (its job row says the rest)."""
        async def run() -> None:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except CloudherdError as exc:  # the work's own refusal ("no earlier revision"): one line, no traceback
                log.warning("background task %s: %s", name, exc)
            except Exception:  # a bug of ours: logged, the server goes on
                log.exception("background task %s failed", name)

        task = asyncio.create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def tear_down(self, infra_id: str, owner_id: str) -> Any:
        """What a DELETE of any face does: no longer kept, a ``down`` job recorded, the teardown started; the
        job row.  An Auto Scaling group's infrastructure goes only with its group (DeleteAutoScalingGroup)."""
        from cloudherd.server.errors import Conflict

        if any(g.infrastructure_id == infra_id for g in self.store.scaling_groups(owner_id)):
            raise Conflict(f"{infra_id} keeps an Auto Scaling group: delete it with DeleteAutoScalingGroup")
        # the infrastructure turns "destroying" only once the teardown begins (after a pass in progress): until
        # then, the running job is what says it is going already
        job = self.store.add_job_unless_running(owner_id=owner_id, infrastructure_id=infra_id, kind="down", request={})
        if job is None:
            raise Conflict(f"{infra_id} is being torn down already")
        self.store.update_infrastructure(infra_id, attached=False)
        self.start_down(infra_id, job.id)
        return job

    def start_down(self, infra_id: str, job_id: str | None = None) -> None:
        """Tear ``infra_id`` down in the background (waiting for a pass on it to end first)."""
        async def work() -> None:
            from cloudherd.api.autoscaling import AutoScaling

            infra = self.store.infrastructure(infra_id)
            try:
                await self.client.down(infra.id, wait=600.0)
            except Exception as exc:
                if job_id:
                    self.store.finish_job(job_id, "failed", error=str(exc))
                raise
            if job_id:
                self.store.finish_job(job_id, "done", {"infrastructure": infra_id})
            AutoScaling(self.store, infra.owner_id, self.config.providers).forget_group(infra_id)

        self._on_loop(lambda: self.spawn(work, f"down {infra_id}"))

    async def warm_pool(self) -> Any:
        """The server's SSH connections, kept open between commands (idle ones close after a timeout)."""
        if self.pool is None:
            from cloudherd.engine.context import ensure_identity
            from cloudherd.remote.pool import ConnectionPool

            identity = ensure_identity(self.store)
            pool = ConnectionPool(identity.key)
            await pool.__aenter__()
            self.pool = pool
            self.client.keep_connections(pool)
            self.spawn(self._close_idle, "ssh idle reaper")
        return self.pool

    async def _close_idle(self) -> None:
        while self.pool is not None:
            await asyncio.sleep(min(30.0, self.config.ssh_idle_timeout / 2))
            await self.pool.close_idle(self.config.ssh_idle_timeout)
