"""Libcloud's errors as cloudherd's typed errors: by libcloud's exception classes, then by HTTP status and the
cloud's words (quota, capacity), see the package notes."""

from __future__ import annotations

import re
from collections.abc import Callable

from cloudherd.providers.base import (
    AuthError,
    CapacityError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    QuotaError,
    ThrottledError,
    TransientError,
)
from cloudherd.providers.toolkit import error_from_status, first_line

_QUOTA_RE = re.compile(r"quota|limit exceeded|exceeds? (?:the )?(?:allowed|maximum)", re.IGNORECASE)
_CAPACITY_RE = re.compile(r"no valid host|insufficient (?:\w+ )?capacity|out of capacity|not enough capacity",
                          re.IGNORECASE)


def sdk_error(where: str, exc: Exception, clean: Callable[[str], str]) -> ProviderError:
    """The typed error of a libcloud (or connection) exception; ``clean`` masks secrets in what is quoted."""
    from libcloud.common.exceptions import BaseHTTPError, RateLimitReachedError
    from libcloud.common.types import InvalidCredsError, LibcloudError, MalformedResponseError
    from libcloud.common.types import ProviderError as LibcloudProviderError
    from libcloud.compute.types import KeyPairDoesNotExistError

    if isinstance(exc, InvalidCredsError):
        return AuthError(f"{where}: credentials were refused (check key/secret and the auth settings)",
                         code="401", status=401)
    if isinstance(exc, RateLimitReachedError):
        after = getattr(exc, "retry_after", 0)
        return ThrottledError(f"{where}: rate limited" + (f", retry after {after:g}s" if after else ""),
                              code="429", status=429)
    if isinstance(exc, KeyPairDoesNotExistError):
        return NotFoundError(f"{where}: key pair {clean(str(getattr(exc, 'name', '')))} does not exist")
    if isinstance(exc, MalformedResponseError):  # a proxy's error page, a truncated answer: try again
        return TransientError(f"{where}: the cloud sent a malformed response ({clean(str(exc.value))})")
    if isinstance(exc, BaseHTTPError | LibcloudProviderError):
        if isinstance(exc, BaseHTTPError):
            code, detail = int(exc.code or 0), str(exc.message)
        else:
            code, detail = int(getattr(exc, "http_code", 0) or 0), str(exc.value)
        return http_error(where, code, clean(detail))
    if isinstance(exc, NotImplementedError):
        return InvalidRequestError(f"{where}: not supported by this driver")
    if isinstance(exc, LibcloudError):
        return ProviderError(f"{where}: {clean(str(exc.value))}")
    if is_connection_error(exc):
        return TransientError(f"{where}: could not reach the cloud: {exc.__class__.__name__}: "
                              f"{clean(first_line(exc))}")
    if isinstance(exc, TypeError | ValueError | KeyError):
        return InvalidRequestError(f"{where}: {exc.__class__.__name__}: {clean(first_line(exc))}")
    return ProviderError(f"{where}: {exc.__class__.__name__}: {clean(first_line(exc))}")


def http_error(where: str, status: int, detail: str) -> ProviderError:
    text = f"{where}: HTTP {status}: {detail}" if status else f"{where}: {detail}"
    code = str(status) if status else None  # libcloud keeps no cloud error code; the status is the code
    if status in (401, 407):
        return AuthError(f"{where}: HTTP {status}: credentials were refused", code=code, status=status)
    if _QUOTA_RE.search(detail):
        return QuotaError(text, code=code, status=status)
    if status in (413, 429):
        return ThrottledError(text, code=code, status=status)
    if _CAPACITY_RE.search(detail):
        return CapacityError(text, code=code, status=status)
    if status == 403:
        return AuthError(f"{where}: HTTP 403: the credentials lack permission ({detail})", code=code, status=status)
    if status == 503 and "retry" in detail.lower():
        return ThrottledError(text, code=code, status=status)
    if status == 0:  # an error without a status is not known to be worth another try
        return ProviderError(text)
    return error_from_status(text, status, code)


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError | OSError):
        return True
    try:
        import requests
    except ImportError:  # pragma: no cover - libcloud depends on requests
        return False
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)
