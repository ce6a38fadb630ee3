"""The base of the drivers over a blocking cloud SDK (``aws``: boto3, ``gce``: google-cloud-compute,
``libcloud``): one attempt per call in a worker thread, the SDK's exceptions turned into cloudherd's typed
errors, and messages without secrets.

Why one base: each of these drivers must do the same three things, and a difference between them is a bug —
a call that blocks the event loop, an SDK exception that escapes untyped (the engine then neither retries
nor fails over), a message that quotes a credential.  A driver says only what is its own: how its SDK's
exceptions map (:meth:`SdkDriver._error`, with :func:`typed` for its cloud's error codes), which values are
secrets (:meth:`SdkDriver._secrets`) and what secret-looking text its cloud may echo
(:attr:`SdkDriver.secret_patterns`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from cloudherd.providers.base import AuthError, Provider, ProviderError
from cloudherd.providers.toolkit import error_from_status, one_line

T = TypeVar("T")


@dataclass(frozen=True)
class CodeRule:
    """One row of a driver's error table: a cloud error code among ``codes`` (or an HTTP status among
    ``statuses``) makes a ``kind`` error, its message followed by ``hint`` (what the user can do)."""

    kind: type[ProviderError]
    codes: Collection[str] = frozenset()
    statuses: Collection[int] = frozenset()
    hint: str = ""


def typed(text: str, status: int, code: str | None, rules: Sequence[CodeRule],
          found: Collection[str] | None = None) -> ProviderError:
    """The error of the first rule that ``found`` (the error's codes; default: ``code``) or ``status`` meets,
    else the HTTP status fallback (:func:`~cloudherd.providers.toolkit.error_from_status`)."""
    words = set(found if found is not None else [code] if code else [])
    for rule in rules:
        if status in rule.statuses or words & set(rule.codes):
            return rule.kind(text + rule.hint, code=code, status=status)
    return error_from_status(text, status, code)


class SdkDriver(Provider):
    """A driver whose cloud calls are blocking SDK calls; see the module notes."""

    mask: ClassVar[str] = "***"  # what a secret is replaced with in messages
    secret_patterns: ClassVar[Sequence[re.Pattern[str]]] = ()  # secret-looking text (tokens, keys), masked too

    def _secrets(self) -> Iterable[str]:
        """The secret values this driver knows now (credentials from its settings, a current token)."""
        return ()

    def _scrub(self, text: str) -> str:
        """``text`` with every known secret, then everything that looks like one, masked."""
        for secret in self._secrets():
            text = text.replace(secret, self.mask)
        for pattern in self.secret_patterns:
            text = pattern.sub(self.mask, text)
        return text

    def _clean(self, text: str, limit: int = 300) -> str:
        """``text`` scrubbed, on one line, at most ``limit`` characters: what a message may quote."""
        return one_line(self._scrub(text), limit)

    def _error(self, operation: str, exc: Exception) -> Exception:
        """The typed error of an SDK exception raised by ``operation`` (``exc`` itself when it is not the
        SDK's: a programming error, raised as it is)."""
        return exc

    async def _run(self, operation: str, fn: Callable[[], T]) -> T:
        """Run the blocking ``fn`` in a worker thread, once; its failure becomes a typed error.

        An :class:`AuthError` is raised without the SDK's exception as its cause: what an auth library says
        may quote what it sent."""
        try:
            return await asyncio.to_thread(fn)
        except ProviderError:
            raise
        except Exception as exc:
            mapped = self._error(operation, exc)
            if mapped is exc:
                raise
            if isinstance(mapped, AuthError):
                raise mapped from None
            raise mapped from exc
