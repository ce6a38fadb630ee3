"""A rate budget per provider: a token bucket, a cap on calls in flight, and THE retry layer.

Why here: clouds throttle accounts, not processes.  A fleet operation that fires hundreds of calls at once
gets RequestLimitExceeded and then waits far longer than a steady pace would have taken.  And retries
belong in one place: drivers make one attempt per call and say by the error's *type* whether it is worth
another (:class:`ThrottledError`, :class:`TransientError`); capacity, quota, auth and invalid requests are
never retried (the engine fails over on them at once).

Settings of a provider entry: ``budget: {rate, burst, in_flight}`` (calls per second, calls saved up,
calls at once) and ``retries`` (attempts in all, 1 = no retry), ``backoff`` (base seconds of the jittered
exponential wait), ``backoff_max``.  They are validated with the spec (:mod:`cloudherd.spec.providers`).

Each attempt is counted, timed and traced (:mod:`.measured`): the metrics see every call the cloud saw.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from cloudherd.providers.base import (
    CreateRequest,
    Instance,
    InvalidRequestError,
    Provider,
    ProviderError,
    ThrottledError,
    TransientError,
)
from cloudherd.providers.measured import measured
from cloudherd.providers.wrapper import ProviderWrapper
from cloudherd.spec.providers import BUDGET_DEFAULTS, RETRY_DEFAULTS, SettingsError, budget_settings

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULTS = {**BUDGET_DEFAULTS, **RETRY_DEFAULTS}


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``acquire`` waits for one."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise InvalidRequestError("rate must be > 0 and burst ≥ 1")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> float:
        """Take a token; returns the seconds waited for it."""
        async with self._lock:
            waited = 0.0
            while True:
                now = self._clock()
                self.tokens = min(self.burst, self.tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return waited
                pause = (1 - self.tokens) / self.rate
                waited += pause
                await self._sleep(pause)


class BudgetedProvider(ProviderWrapper):
    """The same provider, paced: every attempt takes a token and a slot; throttling and transient errors
    are retried with jittered exponential backoff, up to ``retries`` attempts in all."""

    def __init__(self, inner: Provider, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(inner)
        try:
            config = budget_settings(settings or {})
        except SettingsError as exc:
            raise InvalidRequestError(f"provider {inner.name}: {exc}") from None
        self.bucket = TokenBucket(config["rate"], config["burst"])
        self.slots = asyncio.Semaphore(config["in_flight"])
        self.attempts = config["retries"]
        self.backoff = config["backoff"]
        self.backoff_max = config["backoff_max"]
        self.calls = 0

    async def create(self, request: CreateRequest) -> list[Instance]:
        # every attempt must be the same request to the cloud: give it a token now (EC2's ClientToken, GCE's
        # requestId), so that a retried create cannot make the machines twice
        if request.token is None:
            request = dataclasses.replace(request, token=f"ch-{uuid.uuid4().hex}")
        return await super().create(request)

    async def _through(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=self.backoff, max=self.backoff_max),
            retry=retry_if_exception_type((ThrottledError, TransientError)),
            before_sleep=self._log_retry(operation), reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self.bucket.acquire()
                    async with self.slots:
                        self.calls += 1
                        return await measured(self.type, self.name, operation, call)  # each attempt
        except ProviderError as exc:
            tries = int(retrying.statistics.get("attempt_number", 1))
            exc.attempts = tries
            if isinstance(exc, ThrottledError | TransientError) and tries > 1 and exc.args:
                exc.args = (f"{exc.args[0]} (gave up after {tries} attempts)", *exc.args[1:])
            raise
        raise AssertionError("unreachable")  # pragma: no cover - reraise=True always raises or returns

    def _log_retry(self, operation: str) -> Callable[[RetryCallState], None]:
        def log_it(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.info("%s %s: %s; attempt %d of %d, next in %.2fs", self.name, operation, error,
                     state.attempt_number, self.attempts, wait)

        return log_it
