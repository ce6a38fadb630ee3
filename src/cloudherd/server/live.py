"""One watcher per thing watched, however many pages watch it: the dashboard's live streams.

Why: each open page used to recompute its own digest (a few queries) every half second, so fifty pages on
one fleet did fifty times the database work for the same answer.  Here the first page to watch a key starts
a task that samples it; every page watching that key gets the digest when it changes; the last one to
leave stops the task.  Level-based, as the manager is: a page only ever needs the newest digest, so a slow
reader's queue keeps just that.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

SAMPLE_EVERY = 0.5  # seconds between two samples of what a page shows
KEEP_ALIVE = 15.0  # seconds of quiet before a comment line keeps proxies from closing the stream
RECHECK = 5.0  # seconds between two checks that a reader's login still holds (a revoked token ends its stream)
DENIED = "denied"  # what :meth:`LiveHub.changes` yields when the reader's login no longer holds


@dataclass
class _Watch:
    sample: Callable[[], str]
    readers: set[asyncio.Queue[str]] = field(default_factory=set)
    digest: str = ""
    task: asyncio.Task[None] | None = None


class LiveHub:
    """Digests of what pages show, sampled once per key and fanned out to every reader of that key."""

    def __init__(self, every: float = SAMPLE_EVERY) -> None:
        self.every = every
        self._watches: dict[str, _Watch] = {}

    @property
    def watched(self) -> int:
        """How many keys are sampled now (one task each)."""
        return len(self._watches)

    async def stream(self, key: str, sample: Callable[[], str],
                     allowed: Callable[[], Awaitable[bool]] | None = None) -> AsyncIterator[str]:
        """Server-Sent Events for a page: ``change`` with the digest each time it differs, the current one
        first; ``denied`` and the end once ``allowed`` says no (the page goes back to its login)."""
        yield "retry: 1000\n\n"
        # aclosing: a page that goes (its stream closed) leaves the watch at once, not when the loop collects it
        async with contextlib.aclosing(self.changes(key, sample, allowed)) as changes:
            async for digest in changes:
                if digest == DENIED:
                    yield "event: denied\ndata: log in again\n\n"
                    return
                yield f"event: change\ndata: {digest}\n\n" if digest else ": keep-alive\n\n"

    async def changes(self, key: str, sample: Callable[[], str],
                      allowed: Callable[[], Awaitable[bool]] | None = None) -> AsyncGenerator[str, None]:
        """The digest of ``key`` each time it differs (the current one first, when there is one), an empty
        string after ``KEEP_ALIVE`` seconds of quiet, and :data:`DENIED` (then the end) once ``allowed`` says
        no.

        ``sample`` (blocking: it reads the database) runs in a thread; the first reader's is the one used for
        the key, so every reader of one key must mean the same thing by it.  ``allowed`` is asked every
        ``RECHECK`` seconds by a monotonic clock, however many changes come meanwhile: a revoked token ends
        a busy stream as surely as a quiet one."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        watch = self._join(key, sample, queue)
        try:
            if watch.digest:
                yield watch.digest
            now = time.monotonic()
            check_at, quiet_until = now + RECHECK, now + KEEP_ALIVE
            while True:
                try:
                    digest = await asyncio.wait_for(queue.get(), max(0.0, min(check_at, quiet_until) - now))
                except TimeoutError:
                    digest = ""
                now = time.monotonic()
                if now >= check_at:
                    if allowed is not None and not await allowed():
                        yield DENIED
                        return
                    now = time.monotonic()
                    check_at = now + RECHECK
                if digest or now >= quiet_until:
                    quiet_until = now + KEEP_ALIVE
                    yield digest
        finally:
            self._leave(key, queue)

    def _join(self, key: str, sample: Callable[[], str], queue: asyncio.Queue[str]) -> _Watch:
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _Watch(sample)
            watch.task = asyncio.create_task(self._run(watch), name=f"live {key}")
        watch.readers.add(queue)
        return watch

    def _leave(self, key: str, queue: asyncio.Queue[str]) -> None:
        watch = self._watches.get(key)
        if watch is None:
            return
        watch.readers.discard(queue)
        if not watch.readers:
            del self._watches[key]
            if watch.task is not None:
                watch.task.cancel()

    async def _run(self, watch: _Watch) -> None:
        while True:
            with contextlib.suppress(Exception):  # a failed sample (a busy database): the next one tells
                state = await asyncio.to_thread(watch.sample)
                digest = hashlib.sha256(state.encode()).hexdigest()[:16]
                if digest != watch.digest:
                    watch.digest = digest
                    for queue in list(watch.readers):
                        _put_newest(queue, digest)
            await asyncio.sleep(self.every)

    async def close(self) -> None:
        tasks = [w.task for w in self._watches.values() if w.task is not None]
        self._watches.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _put_newest(queue: asyncio.Queue[str], digest: str) -> None:
    """Only the newest digest matters to a page: an unread older one is dropped."""
    with contextlib.suppress(asyncio.QueueEmpty):
        queue.get_nowait()
    queue.put_nowait(digest)
