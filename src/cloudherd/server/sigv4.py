"""AWS Signature Version 4 checks for the Auto Scaling Query API.

boto3's stock ``autoscaling`` client signs every request with SigV4, so the service answers exactly the
errors AWS answers: a client (or a person reading the error) then recognises what went wrong.  Two forms are
accepted: the ``Authorization`` header (what boto3 sends) and the presigned query string (``X-Amz-*``
parameters, what ``SigV4QueryAuth`` makes).  No messages ever hold the secret or the computed signature.

Written against the AWS SigV4 documentation and checked against botocore's signer, which the tests use; the
module itself needs nothing outside the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote_to_bytes

from cloudherd.inputs import whole

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
ISO_BASIC = "%Y%m%dT%H%M%SZ"
MAX_PRESIGN_EXPIRES = 604800  # a week: the longest a signing key (scoped to one day's date) may serve

_ISO_BASIC_RE = re.compile(r"\d{8}T\d{6}Z")
_SCOPE_PART_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a region or service as clients write them
_UNRESERVED = "-_.~"  # RFC 3986: everything else is percent-encoded
_QUERY_AUTH = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature")

Headers = dict[str, list[str]]
Params = list[tuple[bytes, bytes]]


class SignatureError(Exception):
    """A request whose signature cannot be accepted; ``code`` and ``status`` are what AWS answers."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code: str = code
        self.message: str = message
        # AWS answers 400 for a malformed signature and 403 for every refusal of a well-formed one.
        self.status: int = 400 if code == "IncompleteSignature" else 403


def _incomplete(message: str) -> SignatureError:
    return SignatureError("IncompleteSignature", message)


def _mismatch(message: str) -> SignatureError:
    return SignatureError("SignatureDoesNotMatch", message)


MISMATCH = ("The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")


@dataclass(frozen=True)
class _Claim:
    """What the request says about its own signature, before any of it is believed."""

    key_id: str
    scope_date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str  # the timestamp exactly as it goes into the string to sign (ISO 8601 basic, UTC)
    presigned: bool
    expires: int | None = None

    @property
    def timestamp(self) -> datetime:
        return datetime.strptime(self.amz_date, ISO_BASIC).replace(tzinfo=UTC)

    @property
    def scope(self) -> str:
        return f"{self.scope_date}/{self.region}/{self.service}/{self.terminator}"


def verify(method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
           secret_for: Callable[[str], str | None], *, now: datetime | None = None,
           max_skew: float = 900.0) -> tuple[str, str]:
    """Returns (access_key_id, region) of a correctly signed request, else raises SignatureError.

    ``path`` and ``query`` are raw (as sent on the request line); ``secret_for`` maps an access key id to its
    secret, or None when the key is unknown.  Cheap checks come before ``secret_for`` so that garbage never
    costs a key lookup.
    """
    hdrs = _header_map(headers)
    params = _parse_query(query)
    claim = _claim(hdrs, params)
    _check_scope(claim)
    _check_time(claim, _utc(now), max_skew)
    secret = secret_for(claim.key_id)
    if secret is None:
        raise SignatureError("InvalidClientTokenId", "The security token included in the request is invalid.")
    key = _signing_key(secret, claim)
    for payload_hash in _payload_hashes(hdrs, params, body, claim.presigned):
        canonical = _canonical_request(method, path, params, hdrs, claim, payload_hash)
        expected = hmac.new(key, _string_to_sign(claim, canonical).encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected.encode(), claim.signature.encode("utf-8", "backslashreplace")):
            return claim.key_id, claim.region
    raise _mismatch(MISMATCH)


# -- reading the request --------------------------------------------------------------------------------------

def _header_map(headers: Mapping[str, str]) -> Headers:
    """Lowercased names to every value sent under them (``items()`` of an ``email.message.Message`` repeats)."""
    found: Headers = {}
    for name, value in headers.items():
        found.setdefault(name.strip().lower(), []).append(value)
    return found


def _header(hdrs: Headers, name: str) -> str | None:
    values = hdrs.get(name)
    return values[0].strip() if values else None


def _parse_query(query: str) -> Params:
    """Raw query string to decoded (name, value) byte pairs; bytes so that re-encoding restores them exactly.

    Only percent-escapes are decoded, not ``+``: SigV4 signs RFC 3986 encoding, where ``+`` is a literal.
    """
    pairs: Params = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote_to_bytes(name), unquote_to_bytes(value)))
    return pairs


def _param(params: Params, name: str) -> str | None:
    """The single value of a presigning parameter; two of them would make the signature ambiguous."""
    values = [v for k, v in params if k == name.encode()]
    if len(values) > 1:
        raise _incomplete(f"AWS query-string parameters must not repeat '{name}'.")
    return values[0].decode("utf-8", "replace") if values else None


def _claim(hdrs: Headers, params: Params) -> _Claim:
    """Which of the two forms the request uses, read into one shape; neither form is MissingAuthenticationToken."""
    authorization = _header(hdrs, "authorization")
    presigned = _param(params, "X-Amz-Algorithm") is not None
    if authorization and presigned:
        raise _incomplete("Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the "
                          "Authorization header should be specified.")
    if presigned:
        return _query_claim(params)
    if authorization:
        return _header_claim(authorization, hdrs)
    raise SignatureError("MissingAuthenticationToken", "Request is missing Authentication Token")


def _header_claim(authorization: str, hdrs: Headers) -> _Claim:
    """``AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`` plus the request's date header."""
    scheme, _, rest = authorization.partition(" ")
    if scheme != ALGORITHM:
        raise _incomplete(f"Unsupported AWS 'algorithm': only '{ALGORITHM}' is accepted in the Authorization header.")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, _, value = item.strip().partition("=")
        fields[name.strip()] = value.strip()
    for required in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(required):
            raise _incomplete(f"Authorization header requires '{required}' parameter.")
    return _build_claim(fields["Credential"], fields["SignedHeaders"], fields["Signature"], _header_date(hdrs),
                        presigned=False, expires=None)


def _query_claim(params: Params) -> _Claim:
    """The ``X-Amz-*`` parameters of a presigned request."""
    found = {name: _param(params, name) for name in _QUERY_AUTH}
    for name, value in found.items():
        if not value:
            raise _incomplete(f"AWS query-string parameters must include '{name}'. "
                              "Re-examine the query-string parameters.")
    if found["X-Amz-Algorithm"] != ALGORITHM:
        raise _incomplete(f"Unsupported AWS 'algorithm': X-Amz-Algorithm must be '{ALGORITHM}'.")
    amz_date = str(found["X-Amz-Date"])
    _check_iso_basic(amz_date)
    return _build_claim(str(found["X-Amz-Credential"]), str(found["X-Amz-SignedHeaders"]),
                        str(found["X-Amz-Signature"]), amz_date, presigned=True, expires=_expires(params))


def _expires(params: Params) -> int | None:
    """``X-Amz-Expires``: how many seconds a presigned request stays good (optional; at most a week)."""
    raw = _param(params, "X-Amz-Expires")
    if raw is None:
        return None
    seconds = whole(raw, 9)
    if seconds is None or not 1 <= seconds <= MAX_PRESIGN_EXPIRES:
        raise _incomplete(f"X-Amz-Expires must be a whole number of seconds from 1 to {MAX_PRESIGN_EXPIRES}.")
    return seconds


def _build_claim(credential: str, signed_headers: str, signature: str, amz_date: str, *, presigned: bool,
                 expires: int | None) -> _Claim:
    """Splits the credential ``AKID/YYYYMMDD/region/service/aws4_request`` and the signed header list."""
    parts = credential.split("/")
    if len(parts) != 5 or not all(parts):
        raise _incomplete("Incomplete credential: expected "
                          f"'<AccessKeyId>/<YYYYMMDD>/<region>/<service>/{TERMINATOR}'.")
    names = tuple(name.strip().lower() for name in signed_headers.split(";"))
    if not all(names):
        raise _incomplete("SignedHeaders must be a ';'-separated list of header names.")
    if "host" not in names:
        raise _incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    return _Claim(key_id=parts[0], scope_date=parts[1], region=parts[2], service=parts[3], terminator=parts[4],
                  signed_headers=names, signature=signature.strip(), amz_date=amz_date, presigned=presigned,
                  expires=expires)


def _header_date(hdrs: Headers) -> str:
    """The signing time in ISO 8601 basic form: ``X-Amz-Date`` if sent, else the RFC 1123 ``Date`` header."""
    amz_date = _header(hdrs, "x-amz-date")
    if amz_date:
        _check_iso_basic(amz_date)
        return amz_date
    date = _header(hdrs, "date")
    if not date:
        raise _incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    try:
        parsed = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        raise _incomplete("The Date header must be an RFC 1123 date.") from None
    return _utc(parsed).strftime(ISO_BASIC)


def _check_iso_basic(value: str) -> None:
    """The signing time must be a real UTC moment in ISO 8601 basic form; it goes into the signature verbatim."""
    if _ISO_BASIC_RE.fullmatch(value):
        try:
            datetime.strptime(value, ISO_BASIC)
            return
        except ValueError:
            pass
    raise _incomplete(f"Date must be in ISO-8601 'basic format' (YYYYMMDD'T'HHMMSS'Z'). Got '{value[:40]}'.")


def _utc(moment: datetime | None) -> datetime:
    """Now, or the given moment, as an aware UTC datetime (naive ones are taken to be UTC already)."""
    if moment is None:
        return datetime.now(UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- checks that need no secret ---------------------------------------------------------------------------------

def _check_scope(claim: _Claim) -> None:
    """The credential scope must name the right day and the fixed terminator; its region and service are
    the client's: the signature, computed with the key's secret over that very scope, is the proof.

    Why not insist on ``autoscaling`` and a region name: cloudherd is not at amazonaws.com, and clients
    derive the scope from the host they talk to — boto 2 (Phantom's users) signs for ``127.0.0.1`` as
    region ``0``, service ``127``; Phantom accepted whatever scope was signed.  AWS answers a malformed
    scope with SignatureDoesNotMatch (the request is well formed, just not signed for us).
    """
    if claim.terminator != TERMINATOR:
        raise _mismatch(f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
                        f"not '{claim.terminator[:40]}'.")
    for part, text in (("service", claim.service), ("region", claim.region)):
        if not _SCOPE_PART_RE.fullmatch(text):
            raise _mismatch(f"Credential should be scoped to a valid {part}.")
    if claim.scope_date != claim.amz_date[:8]:
        raise _mismatch("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
                        f"HTTP: '{claim.scope_date[:20]}' != '{claim.amz_date[:8]}', from '{claim.amz_date}'.")


def _check_time(claim: _Claim, now: datetime, max_skew: float) -> None:
    """Refuses requests signed too long ago (replays) or too far ahead (a wrong clock).

    AWS's real behaviour, which this copies: the Query-protocol services (Auto Scaling, STS, IAM…) answer a
    stale or future signing date with 403 SignatureDoesNotMatch, "Signature expired: … is now earlier than …"
    / "Signature not yet current: … is still later than …" (only EC2 says RequestExpired there).  A presigned
    request used after its own X-Amz-Expires answers RequestExpired, as AWS documents for presigned URLs.
    """
    signed_at, skew = claim.timestamp, timedelta(seconds=max_skew)
    minutes = f"{max_skew / 60:g} min."
    if signed_at > now + skew:
        raise _mismatch(f"Signature not yet current: {claim.amz_date} is still later than "
                        f"{_iso(now + skew)} ({_iso(now)} + {minutes})")
    if claim.presigned:
        lifetime = timedelta(seconds=claim.expires) if claim.expires is not None else skew
        if now > signed_at + lifetime:
            raise SignatureError("RequestExpired", f"Request has expired: signed at {claim.amz_date} for "
                                                   f"{int(lifetime.total_seconds())} seconds; it is now {_iso(now)}.")
    elif signed_at < now - skew:
        raise _mismatch(f"Signature expired: {claim.amz_date} is now earlier than "
                        f"{_iso(now - skew)} ({_iso(now)} - {minutes})")


def _iso(moment: datetime) -> str:
    return moment.strftime(ISO_BASIC)


# -- the canonical request and the signature ---------------------------------------------------------------------

def _payload_hashes(hdrs: Headers, params: Params, body: bytes, presigned: bool) -> list[str]:
    """The payload hashes worth trying, in order.

    A claimed ``x-amz-content-sha256`` is what the signer put into its canonical request, but it is only
    believed when it is the body's real hash: the body of a Query API request *is* the action, so an
    unsigned one is never accepted — except a presigned request with no body, where ``UNSIGNED-PAYLOAD`` is
    the documented hash (botocore's non-S3 presigner hashes the empty body, so that is tried too).
    """
    actual = hashlib.sha256(body).hexdigest()
    claimed = _header(hdrs, "x-amz-content-sha256")
    if claimed is None and presigned:
        claimed = _param(params, "X-Amz-Content-Sha256")
    may_be_unsigned = presigned and not body
    if claimed is None:
        return [actual, UNSIGNED_PAYLOAD] if may_be_unsigned else [actual]
    if claimed == UNSIGNED_PAYLOAD and may_be_unsigned:
        return [claimed]
    if claimed == UNSIGNED_PAYLOAD or claimed.startswith("STREAMING-"):
        raise _mismatch(f"{claimed[:40]} is accepted only on presigned requests without a body; "
                        "sign the SHA-256 of the body instead.")
    if not hmac.compare_digest(claimed.lower().encode("utf-8", "backslashreplace"), actual.encode()):
        raise _mismatch("The provided 'x-amz-content-sha256' header does not match what was computed.")
    return [claimed]


def _canonical_request(method: str, path: str, params: Params, hdrs: Headers, claim: _Claim,
                       payload_hash: str) -> str:
    """The six lines SigV4 signs, built the way the client built them."""
    if claim.presigned:
        params = [(k, v) for k, v in params if k != b"X-Amz-Signature"]
    return "\n".join([method.upper(), _canonical_uri(path), _canonical_query(params),
                      _canonical_headers(hdrs, claim.signed_headers), ";".join(claim.signed_headers),
                      payload_hash])


def _canonical_uri(path: str) -> str:
    """Dot segments and empty segments removed, then the raw path URI-encoded once more.

    The raw path is already encoded once on the wire, so this is the "encode twice" AWS asks of every service
    but S3 — exactly what botocore's SigV4Auth does (``quote(remove_dot_segments(path), safe='/~')``).
    """
    return quote(_remove_dot_segments(path or "/"), safe="/~")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, plus collapsing ``//``, which AWS services also require."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    lead = "/" if path.startswith("/") else ""
    trail = "/" if path.endswith("/") and kept else ""
    return lead + "/".join(kept) + trail


def _canonical_query(params: Iterable[tuple[bytes, bytes]]) -> str:
    """Every parameter RFC 3986-encoded, sorted by encoded name and then value."""
    encoded = sorted((quote(k, safe=_UNRESERVED), quote(v, safe=_UNRESERVED)) for k, v in params)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_headers(hdrs: Headers, names: tuple[str, ...]) -> str:
    """``name:value`` lines (trimmed, inner whitespace runs collapsed, repeats joined by ``,``), then a blank.

    A header that is signed but absent cannot have been signed as sent, so it is refused by name.
    """
    lines = []
    for name in names:
        values = hdrs.get(name)
        if not values:
            raise _mismatch(f"The request signature covers the header '{name[:60]}', which the request lacks.")
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}\n")
    return "".join(lines)


def _string_to_sign(claim: _Claim, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return "\n".join([ALGORITHM, claim.amz_date, claim.scope, digest])


def _signing_key(secret: str, claim: _Claim) -> bytes:
    """The key derived for this day, region and service: ``kSigning`` of the SigV4 documentation."""
    key = f"AWS4{secret}".encode()
    for part in (claim.scope_date, claim.region, claim.service, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key
