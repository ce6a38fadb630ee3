"""GCE's errors as cloudherd's typed errors: by the error codes or reasons GCE sends (or a message quotes),
the HTTP status as the fallback; google-auth's and the HTTP layer's exceptions by their class.  Messages never
quote credentials (:data:`SECRET_PATTERNS`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from cloudherd.providers import base
from cloudherd.providers.base import AuthError, InvalidRequestError, ProviderError, TransientError
from cloudherd.providers.sdk import CodeRule, typed
from cloudherd.providers.toolkit import one_line

# error codes and reasons, compared lowercased without underscores: ZONE_RESOURCE_POOL_EXHAUSTED and
# zoneResourcePoolExhausted are the same word
CAPACITY_CODES = {"zoneresourcepoolexhausted", "zoneresourcepoolexhaustedwithdetails", "resourcepoolexhausted",
                  "regionresourcepoolexhausted"}
QUOTA_CODES = {"quotaexceeded"}
THROTTLE_CODES = {"ratelimitexceeded", "userratelimitexceeded"}
NOT_FOUND_CODES = {"resourcenotfound", "notfound"}
AUTH_CODES = {"permissionserror", "forbidden", "autherror", "insufficientpermissions"}
SECRET_PATTERNS = (re.compile(r"ya29\.[\w.-]+"), re.compile(r"(?i)bearer\s+\S+"),
                   re.compile(r"-----BEGIN [A-Z ]+-----.*?(-----END [A-Z ]+-----|$)", re.S),
                   re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+"))

RULES = (
    CodeRule(base.CapacityError, CAPACITY_CODES, hint=": try another zone or size, or later"),
    CodeRule(base.QuotaError, QUOTA_CODES, hint=": ask for a higher quota or use another region"),
    CodeRule(base.ThrottledError, THROTTLE_CODES, {429}, hint=": too many calls, retry later"),
    CodeRule(base.AuthError, AUTH_CODES, {401, 403},
             hint=": the credentials lack permission: check the account's roles (e.g. roles/compute.instanceAdmin.v1)"),
    CodeRule(base.NotFoundError, NOT_FOUND_CODES),
)


class OperationTimeoutError(ProviderError):
    """A GCE operation was not done within the configured time (it may still finish)."""


def typed_error(text: str, codes: Sequence[str], status: int, code: str | None = None) -> ProviderError:
    """The error type of GCE error codes or reasons (``QUOTA_EXCEEDED``, ``rateLimitExceeded``, or a message
    quoting such a code), the HTTP status as the fallback."""
    words = {_word(c) for c in codes} | {_word(w) for c in codes for w in re.findall(r"\b[A-Z][A-Z_]{5,}\b", c)}
    return typed(text, status, code, RULES, words)


def _word(code: str) -> str:
    """ZONE_RESOURCE_POOL_EXHAUSTED and zoneResourcePoolExhausted are one word: zoneresourcepoolexhausted."""
    return re.sub(r"[^a-z]", "", code.lower())


def sdk_error(where: str, exc: Exception, scrub: Callable[[str], str], host: str, request_timeout: float) -> Exception:
    """A provider error of the SDK's, google-auth's or the HTTP layer's exception (``exc`` itself when it is none
    of theirs); ``scrub`` masks secrets, ``host`` is the API endpoint (without credentials)."""
    import requests
    from google.api_core import exceptions as gx
    from google.auth import exceptions as ax

    if isinstance(exc, gx.GoogleAPICallError):
        status = int(exc.code or 0)
        reasons = [str(e.get("reason", "")) for e in exc.errors if isinstance(e, dict)]
        messages = [str(e.get("message", "")) for e in exc.errors if isinstance(e, dict) and e.get("message")]
        message = messages[0] if messages else str(exc.message).split(": ", 1)[-1]
        label = reasons[0] if reasons and reasons[0] else str(status)
        if status == 401:
            return AuthError(f"{where}: credentials were refused (401): check 'credentials' or "
                             "GOOGLE_APPLICATION_CREDENTIALS, or run 'gcloud auth application-default login'",
                             code=label, status=status)
        text = f"{where}: {label}: {one_line(scrub(message))}"
        return typed_error(text, [*reasons, message], status, label)
    if isinstance(exc, ax.RefreshError | ax.DefaultCredentialsError):
        return AuthError(f"{where}: could not get an access token with the configured Google credentials: check "
                         "'credentials' or GOOGLE_APPLICATION_CREDENTIALS, or run "
                         "'gcloud auth application-default login'")
    if isinstance(exc, ax.GoogleAuthError):
        return AuthError(f"{where}: Google credentials failed ({exc.__class__.__name__})")
    if isinstance(exc, requests.exceptions.Timeout):
        return TransientError(f"{where}: no answer from {host} within {request_timeout:g} s")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return TransientError(f"{where}: could not connect to {host}")
    if isinstance(exc, ValueError | TypeError):
        return InvalidRequestError(f"{where}: {one_line(scrub(str(exc)))}")
    return exc
