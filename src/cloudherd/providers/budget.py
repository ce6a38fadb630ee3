"""A rate budget per provider: a token bucket, a cap on calls in flight, and retries with backoff.

Why: clouds throttle accounts, not processes.  A fleet operation that fires hundreds of calls at once
gets RequestLimitExceeded and then waits far longer than a steady pace would have taken.  Every
provider object is wrapped (settings ``rate``: calls per second, ``burst``, ``in_flight``,
``retries``); drivers that retry on their own (``retries_itself``) are not retried a second time.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from cloudherd.providers.base import (
    CreateRequest,
    Image,
    Instance,
    InvalidRequestError,
    Provider,
    Size,
    ThrottledError,
    TransientError,
)

T = TypeVar("T")
DEFAULTS = {"rate": 20.0, "burst": 40, "in_flight": 16, "retries": 3, "backoff": 0.5, "backoff_max": 20.0}


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


def budget_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Our budget settings from a provider entry (the rest belong to the driver)."""
    chosen = {**DEFAULTS, **{k: settings[k] for k in DEFAULTS if k in settings}}
    try:
        return {"rate": float(chosen["rate"]), "burst": int(chosen["burst"]), "in_flight": int(chosen["in_flight"]),
                "retries": int(chosen["retries"]), "backoff": float(chosen["backoff"]),
                "backoff_max": float(chosen["backoff_max"])}
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"rate budget settings: {exc}") from None


class BudgetedProvider(Provider):
    """The same provider, paced: every call takes a token and a slot; throttling and 5xx are retried."""

    def __init__(self, inner: Provider, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(inner.name, inner.settings)
        self.inner = inner
        self.type = inner.type  # type: ignore[misc]
        config = budget_settings(settings or {})
        self.bucket = TokenBucket(config["rate"], config["burst"])
        self.slots = asyncio.Semaphore(max(1, config["in_flight"]))
        self.attempts = 1 if getattr(inner, "retries_itself", False) else 1 + max(0, config["retries"])
        self.backoff = config["backoff"]
        self.backoff_max = config["backoff_max"]
        self.calls = 0

    async def _paced(self, call: Callable[[], Awaitable[T]]) -> T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=self.backoff, max=self.backoff_max),
            retry=retry_if_exception_type((ThrottledError, TransientError)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self.bucket.acquire()
                async with self.slots:
                    self.calls += 1
                    return await call()
        raise AssertionError("unreachable")  # pragma: no cover - reraise=True always raises or returns

    async def create(self, request: CreateRequest) -> list[Instance]:
        return await self._paced(lambda: self.inner.create(request))

    async def list(self, tags: Mapping[str, str]) -> list[Instance]:
        return await self._paced(lambda: self.inner.list(tags))

    async def terminate(self, ids: Sequence[str]) -> None:
        await self._paced(lambda: self.inner.terminate(ids))

    async def tag(self, ids: Sequence[str], tags: Mapping[str, str]) -> None:
        await self._paced(lambda: self.inner.tag(ids, tags))

    async def stop(self, ids: Sequence[str]) -> None:
        await self._paced(lambda: self.inner.stop(ids))

    async def start(self, ids: Sequence[str]) -> None:
        await self._paced(lambda: self.inner.start(ids))

    async def sizes(self, pattern: str | None = None) -> builtins.list[Size]:
        return await self._paced(lambda: self.inner.sizes(pattern))

    async def images(self, pattern: str | None = None) -> builtins.list[Image]:
        return await self._paced(lambda: self.inner.images(pattern))

    async def regions(self) -> builtins.list[str]:
        return await self._paced(self.inner.regions)

    async def default_size(self) -> str | None:
        return await self._paced(self.inner.default_size)

    async def close(self) -> None:
        await self.inner.close()
