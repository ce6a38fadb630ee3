"""Every call to a cloud counted, timed and traced: ``cloudherd_provider_calls_total{provider,operation,outcome}``,
``cloudherd_provider_call_seconds{provider,operation}`` and a span ``provider.<operation>``.

Where: inside the rate budget's attempts (:meth:`cloudherd.providers.budget.BudgetedProvider._through`), the one
wrapper every driver is made behind, so that each *attempt* is one call — a create throttled twice then made
counts two ``throttled`` and one ``ok``, as the cloud saw them — and the seconds are the cloud's, not the time a
call waited for a token of the budget.  The outcome is ``ok`` or the kind of the error
(:func:`cloudherd.observe.metrics.outcome_of`): a short fixed set, never a message.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cloudherd.observe import metrics, tracing

T = TypeVar("T")


async def measured(provider_type: str, provider_name: str, operation: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` (one attempt of ``operation`` on a provider of ``provider_type``), counted, timed and traced."""
    started = time.monotonic()
    error: BaseException | None = None
    try:
        with tracing.span(f"provider.{operation}", provider=provider_type, provider_name=provider_name,
                          operation=operation):
            return await call()
    except BaseException as exc:
        error = exc
        raise
    finally:
        metrics.provider_call(provider_type, operation, metrics.outcome_of(error), time.monotonic() - started)
