"""The sender of notifications: delivers the outbox's rows (:mod:`cloudherd.state.repo_notify`) to their webhooks.

* In order per webhook and infrastructure: only the oldest pending row of each is tried; the next waits for it
  to be sent or given up.
* Each row is claimed first (by the database's clock, for ``claim`` seconds), so that several senders (two
  managers on one PostgreSQL) never send the same row at once; a sender that dies leaves its claim to lapse.
* A row is marked sent in a transaction right after its receiver's 2xx, so nothing is sent again to a receiver
  that answered 2xx, except when this process dies between the two: then the row is sent again, with the same
  ``Cloudherd-Delivery`` id (the receiver drops what it has seen: :class:`cloudherd.webhooks.Verifier`).
* A failed attempt (not 2xx, no answer within ``timeout``, refused) is retried after ``backoff`` seconds, doubled
  at each attempt up to ``backoff_cap``; after ``attempts`` attempts, or once the row is ``max_age`` seconds
  old, it is given up (``failed``, shown by ``cloudherd notify list`` and ``notify deliveries``).
* Each row is sent by a task of its own: a receiver that hangs holds only its own queue, ``timeout`` at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudherd.times import utcnow
from cloudherd.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, signature

if TYPE_CHECKING:
    import httpx

    from cloudherd.state.models import OutboxRow
    from cloudherd.state.repo import Store

log = logging.getLogger("cloudherd.notify")

USER_AGENT = "cloudherd-webhooks/1"


@dataclass(frozen=True)
class Tuning:
    """How the sender paces itself (seconds)."""

    timeout: float = 5.0  # one POST, connection to answer
    backoff: float = 2.0  # the first retry's delay, doubled at each attempt
    backoff_cap: float = 300.0
    attempts: int = 12  # then given up
    max_age: float = 24 * 3600.0  # a row this old is given up at its next failure
    poll: float = 1.0  # between looks at the outbox
    claim: float | None = None  # how long a claim holds (default: twice the timeout and 30 s more)
    concurrency: int = 32  # POSTs in flight

    @property
    def claim_seconds(self) -> float:
        return self.claim if self.claim is not None else 2 * self.timeout + 30.0

    def delay(self, attempts: int) -> float:
        """The wait before the next attempt, after ``attempts`` failed ones."""
        return float(min(self.backoff_cap, self.backoff * 2 ** max(0, attempts - 1)))

    @classmethod
    def configured(cls) -> Tuning:
        """The defaults, with what ``CLOUDHERD_WEBHOOK_TIMEOUT``, ``_ATTEMPTS`` and ``_MAX_AGE`` change; a value
        that is not one is a UsageError naming the variable (said when ``serve`` or ``manage`` starts)."""
        from cloudherd.settings import current
        from cloudherd.spec.durations import duration_setting

        settings = current()
        timeout = duration_setting("CLOUDHERD_WEBHOOK_TIMEOUT", settings.webhook_timeout, cls.timeout, "5s")
        max_age = duration_setting("CLOUDHERD_WEBHOOK_MAX_AGE", settings.webhook_max_age, cls.max_age, "1d")
        attempts = cls.attempts
        raw = (settings.webhook_attempts or "").strip()
        if raw:
            if not raw.isdigit() or int(raw) < 1:
                from cloudherd.errors import UsageError

                raise UsageError(f"CLOUDHERD_WEBHOOK_ATTEMPTS={raw!r}: a whole number of attempts, 1 or more, "
                                 "such as 12")
            attempts = int(raw)
        return cls(timeout=timeout, attempts=attempts, max_age=max_age)


@dataclass(frozen=True)
class Outcome:
    """What one POST got: the status (None: no answer) and, when not a 2xx, why."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def signed_request(secret: str, payload: dict[str, Any], *, now: float | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one POST of ``payload``, signed with ``secret`` at ``now``."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    stamp = int(time.time() if now is None else now)
    return body, {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                  SIGNATURE_HEADER: signature(secret, body, stamp),
                  DELIVERY_HEADER: str(payload.get("delivery_id", ""))}


async def post(client: httpx.AsyncClient, url: str, secret: str, payload: dict[str, Any], timeout: float) -> Outcome:
    """One signed POST, given up after ``timeout`` seconds in all (a receiver that trickles its answer too)."""
    import httpx

    body, headers = signed_request(secret, payload)
    try:
        async with asyncio.timeout(timeout):
            answer = await client.post(url, content=body, headers=headers, timeout=timeout)
    except TimeoutError:
        return Outcome(None, f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Outcome(None, f"{exc.__class__.__name__}: {str(exc) or 'no answer'}"[:300])
    if 200 <= answer.status_code < 300:
        return Outcome(answer.status_code)
    return Outcome(answer.status_code, f"HTTP {answer.status_code}: {answer.text[:200]}")


def new_client() -> httpx.AsyncClient:
    """A client for webhooks: redirects not followed (a 3xx is a failure to see), no proxy from the environment."""
    import httpx

    return httpx.AsyncClient(follow_redirects=False, trust_env=False,
                             limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))


class Sender:
    """Delivers the outbox until stopped.  ``open_secret``: the webhook's secret from its sealed form (None when
    it cannot be opened: then the row fails at once, said in its last error)."""

    def __init__(self, store: Store, open_secret: Callable[[str], str | None], tuning: Tuning | None = None) -> None:
        self.store = store
        self.open_secret = open_secret
        self.tuning = tuning or Tuning()
        self.token = uuid.uuid4().hex
        self.wake = asyncio.Event()
        self._busy: set[tuple[str, str | None]] = set()  # the queues with a POST of this sender in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.tuning.concurrency)
        self._client: httpx.AsyncClient | None = None
        self.sent = self.failed = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds every ``poll`` seconds (or when woken) until ``stop`` is set; then the POSTs in flight are cut
        and this sender's claims released (their rows are sent again by the next sender: same delivery ids)."""
        self._client = new_client()
        failing = False
        try:
            while not stop.is_set():
                try:
                    await self.round()
                    if failing:
                        log.info("notifications: rounds work again")
                    failing = False
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database away a moment, a bug: said once, the next round tries again
                    if not failing:
                        log.warning("notifications: a round failed (said once until one works): %s: %s",
                                    exc.__class__.__name__, exc)
                    failing = True
                waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
                await asyncio.wait(waits, timeout=self.tuning.poll, return_when=asyncio.FIRST_COMPLETED)
                for waiting in waits:
                    waiting.cancel()
                self.wake.clear()
        finally:
            await self.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.release_outbox, self.token)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def round(self) -> int:
        """Claim and start sending the due head of every queue not in flight here; how many were started."""
        if self._client is None:
            self._client = new_client()
        due = await asyncio.to_thread(self.store.outbox_due, 4 * self.tuning.concurrency)
        started = 0
        for row, url, sealed in due:
            key = (row.webhook_id, row.infrastructure_id)
            if key in self._busy:
                continue
            if not await asyncio.to_thread(self.store.claim_outbox, row.id, self.token, self.tuning.claim_seconds):
                continue  # another sender's
            self._busy.add(key)
            task = asyncio.create_task(self._deliver(row, url, sealed, key), name=f"notify {row.delivery_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    async def _deliver(self, row: OutboxRow, url: str, sealed: str, key: tuple[str, str | None]) -> None:
        try:
            secret = self.open_secret(sealed)
            if secret is None:
                outcome = Outcome(None, "the webhook's secret cannot be opened (sealed with another key): "
                                        "remove the webhook and add it again")
                await asyncio.to_thread(self.store.outbox_retry, row.id, self.token, status=None,
                                        error=outcome.error or "", delay=None)
                self.failed += 1
                return
            assert self._client is not None
            async with self._slots:
                outcome = await post(self._client, url, secret, row.payload, self.tuning.timeout)
            if outcome.ok:
                await asyncio.to_thread(self.store.outbox_sent, row.id, self.token, outcome.status or 200)
                self.sent += 1
                self.wake.set()  # the queue's next row is due at once
                return
            attempts = row.attempts + 1
            age = (utcnow() - row.created_at).total_seconds()
            give_up = attempts >= self.tuning.attempts or age >= self.tuning.max_age
            delay = None if give_up else self.tuning.delay(attempts)
            await asyncio.to_thread(self.store.outbox_retry, row.id, self.token, status=outcome.status,
                                    error=outcome.error or "", delay=delay)
            if give_up:
                self.failed += 1
                log.warning("notification %s to webhook %s given up after %d attempt(s): %s", row.delivery_id,
                            row.webhook_id, attempts, outcome.error)
                self.wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database away: the claim lapses, the row is tried again
            log.warning("notification %s: %s: %s", row.delivery_id, exc.__class__.__name__, exc)
        finally:
            self._busy.discard(key)


async def send_now(url: str, secret: str, payload: dict[str, Any], timeout: float = 10.0) -> Outcome:
    """One signed POST now, outside the outbox (``cloudherd notify test``)."""
    async with new_client() as client:
        return await post(client, url, secret, payload, timeout)
