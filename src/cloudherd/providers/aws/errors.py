"""EC2's errors as cloudherd's typed errors: the error code wins over the HTTP status (EC2 sends
``InsufficientInstanceCapacity`` as a 500); botocore's own exceptions (no credentials, no connection, a bad
parameter) by their class."""

from __future__ import annotations

from cloudherd.providers import base
from cloudherd.providers.base import AuthError, InvalidRequestError, ProviderError, TransientError
from cloudherd.providers.sdk import CodeRule, typed
from cloudherd.providers.toolkit import one_line, safe_url

# a spot create refused for the market's sake (no spare capacity, our price under the market's, our account's spot
# count full) is a capacity refusal too: the engine falls back to on-demand or the next place at once
SPOT_CAPACITY_CODES = {"InsufficientCapacity", "UnfulfillableCapacity", "SpotMaxPriceTooLow",
                       "MaxSpotInstanceCountExceeded"}
CAPACITY_CODES = {"InsufficientInstanceCapacity", "InsufficientHostCapacity", "Unsupported", *SPOT_CAPACITY_CODES}
QUOTA_CODES = {"InstanceLimitExceeded", "VcpuLimitExceeded"}
THROTTLE_CODES = {"RequestLimitExceeded", "Throttling", "ThrottlingException"}
AUTH_CODES = {"AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch",
              "ExpiredToken"}
NOT_FOUND_CODES = {"InvalidInstanceID.NotFound", "InvalidAMIID.NotFound"}
TRANSIENT_CODES = {"ServiceUnavailable", "Unavailable", "InternalError", "InternalFailure", "RequestTimeout",
                   "RequestTimeoutException"}

RULES = (CodeRule(base.CapacityError, CAPACITY_CODES), CodeRule(base.QuotaError, QUOTA_CODES),
         CodeRule(base.ThrottledError, THROTTLE_CODES), CodeRule(base.NotFoundError, NOT_FOUND_CODES),
         CodeRule(base.TransientError, TRANSIENT_CODES))


def client_error(where: str, operation: str, code: str, status: int, message: str) -> ProviderError:
    """The typed error of an EC2 error code (HTTP status as the fallback)."""
    if code in AUTH_CODES:  # AWS's text can quote the access key id or the string it signed: drop it
        return AuthError(f"{where}: {code}: credentials were refused or lack permission for {operation}",
                         code=code, status=status)
    return typed(f"{where}: {code}: {one_line(message)}", status, code, RULES)


def sdk_error(where: str, operation: str, exc: Exception) -> Exception:
    """The typed error of a boto3 / botocore exception (``exc`` itself when it is neither's)."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return client_error(where, operation, code, status, str(error.get("Message", "")))
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AuthError(f"{where}: no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                         "AWS_SECRET_ACCESS_KEY, or run 'aws configure'")
    if isinstance(exc, bx.EndpointConnectionError):
        endpoint = safe_url(str(exc.kwargs.get("endpoint_url", "")))
        return TransientError(f"{where}: could not connect to the endpoint {endpoint}")
    if isinstance(exc, bx.ParamValidationError):
        return InvalidRequestError(f"{where}: {one_line(str(exc))}")
    if isinstance(exc, bx.ConnectionError | bx.HTTPClientError):  # dropped or timed out: worth another try
        return TransientError(f"{where}: {exc.__class__.__name__}: {one_line(str(exc))}")
    if isinstance(exc, bx.BotoCoreError):
        return ProviderError(f"{where}: {exc.__class__.__name__}: {one_line(str(exc))}")
    return exc
