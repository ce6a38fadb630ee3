"""cloudherd's webhook notifications: what a receiver needs to trust one, and the kinds a webhook may choose.

Standard library only, so a receiver imports it without the rest of cloudherd's dependencies::

    from cloudherd.webhooks import Verifier, InvalidSignature

    verifier = Verifier(secret)                      # the secret `cloudherd notify add` printed once
    try:
        event = verifier.verify(body, headers)       # the JSON payload, as a dict
    except InvalidSignature as refused:              # a bad signature, a stale timestamp, a replay
        ...                                          # answer 400 (a Replayed one: 200, it was handled)

Each POST carries ``Cloudherd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` and
``Cloudherd-Delivery: <id>``; the id stays the same across the retries of one notification.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SIGNATURE_HEADER = "Cloudherd-Signature"
DELIVERY_HEADER = "Cloudherd-Delivery"
TOLERANCE = 300  # seconds a signature's timestamp may be off (either way) from the receiver's clock


class InvalidSignature(ValueError):
    """The notification is refused: unsigned, signed with another secret, stale, or malformed."""


class Replayed(InvalidSignature):
    """A delivery already verified (within the tolerance): an attacker's replay, or cloudherd's re-send of one the
    receiver took but could not acknowledge.  Either way: do not act on it again (answering 2xx is right)."""


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Cloudherd-Signature`` header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _header(headers: Mapping[str, str] | Iterable[tuple[str, str]], name: str) -> str | None:
    # a mapping, http.server's headers (an email Message: items() but no Mapping) or (name, value) pairs
    items = headers.items() if hasattr(headers, "items") else headers
    wanted = name.lower()
    for key, value in items:
        if key.lower() == wanted:
            return value
    return None


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)


def verify(secret: str, body: bytes | str, headers: Mapping[str, str] | Iterable[tuple[str, str]],
           tolerance: float = TOLERANCE, *, now: float | None = None) -> dict[str, Any]:
    """The payload of a notification whose signature is ``secret``'s and whose timestamp is within ``tolerance``
    seconds of ``now``; :class:`InvalidSignature` otherwise.  ``body``: the request's raw bytes, as received.
    It does not detect a replay within the tolerance: :class:`Verifier` does."""
    raw = _as_bytes(body)
    header = _header(headers, SIGNATURE_HEADER)
    if not header:
        raise InvalidSignature(f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            macs.append(value)
    if timestamp is None or not macs:
        raise InvalidSignature(f"{SIGNATURE_HEADER} is not t=<unix seconds>,v1=<hex>")
    expected = signature(secret, raw, timestamp).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, mac) for mac in macs):
        raise InvalidSignature("the signature does not match (another secret, or a changed body)")
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise InvalidSignature(f"the timestamp is more than {tolerance:g} seconds away from now (stale, or a "
                               "clock off)")
    try:
        payload = json.loads(raw)
    except ValueError:
        raise InvalidSignature("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidSignature("the body is not a JSON object")
    delivery = _header(headers, DELIVERY_HEADER)
    if delivery is not None and payload.get("delivery_id") != delivery:
        raise InvalidSignature(f"{DELIVERY_HEADER} is not the body's delivery_id")
    return payload


@dataclass
class Verifier:
    """:func:`verify` that also refuses a replay: it remembers the delivery ids it accepted for ``tolerance``
    seconds (older ones are refused as stale anyway).  One per receiver process; not shared between them (several
    receivers share what they have seen through their own store)."""

    secret: str
    tolerance: float = TOLERANCE

    def __post_init__(self) -> None:
        self._seen: dict[str, float] = {}

    def verify(self, body: bytes | str, headers: Mapping[str, str] | Iterable[tuple[str, str]], *,
               now: float | None = None) -> dict[str, Any]:
        moment = time.time() if now is None else now
        payload = verify(self.secret, body, headers, self.tolerance, now=moment)
        delivery = str(payload.get("delivery_id") or "")
        if not delivery:
            raise InvalidSignature("the payload has no delivery_id")
        for old, at in list(self._seen.items()):
            if moment - at > 2 * self.tolerance:
                del self._seen[old]
        if delivery in self._seen:
            raise Replayed(f"delivery {delivery} was received already")
        self._seen[delivery] = moment
        return payload

    def forget(self, delivery_id: str) -> None:
        """Accept ``delivery_id`` again: the receiver verified it but failed to handle it (and answered so)."""
        self._seen.pop(delivery_id, None)


# -- the kinds a webhook chooses -------------------------------------------------------------------------------

# friendly name -> the event kinds it stands for; a kind "health:failed" is an event of kind ``health`` whose
# message says ": failed" (a node given up on by its checks)
KINDS: dict[str, tuple[str, ...]] = {
    "node.made": ("made",),
    "node.retired": ("retired",),
    "node.failed": ("health:failed", "interruption", "hook:failed"),
    "node.health": ("health", "interruption"),
    "scale": ("scale", "scale-out", "scale-in", "scheduled", "start", "stop"),
    "rollout": ("rollout", "rollback"),
    "circuit-breaker": ("circuit-breaker",),
    "budget": ("budget",),
    "autostop": ("autostop", "autodown"),
    "market": ("market",),
    "infra.up": ("submit", "up"),
    "infra.down": ("down", "ttl"),
    "error": ("error",),
}

# every kind of event cloudherd writes: each may be chosen by its own name too
EVENT_KINDS = frozenset({
    "adopt", "artifacts", "attach", "autodown", "autostop", "budget", "circuit-breaker", "cooldown", "deploy",
    "detach", "down", "error", "fault", "gc", "health", "hook", "host-key", "interruption", "journal", "made",
    "market", "membership", "pass", "placement", "processes", "protection", "recovered", "retired",
    "rollback", "rollout", "scale", "scale-in", "scale-out", "scheduled", "sizes", "standby", "start", "stop",
    "submit", "timer", "ttl", "up", "warm-pool", "warning",
})

# the Auto Scaling API's notification types (PutNotificationConfiguration) and the events each stands for
AWS_TYPES: dict[str, tuple[str, ...]] = {
    "autoscaling:EC2_INSTANCE_LAUNCH": ("made",),
    "autoscaling:EC2_INSTANCE_LAUNCH_ERROR": ("error",),
    "autoscaling:EC2_INSTANCE_TERMINATE": ("retired",),
    "autoscaling:EC2_INSTANCE_TERMINATE_ERROR": ("warning",),
    "autoscaling:TEST_NOTIFICATION": ("test",),
}

ALL = "*"
TEST_KIND = "test"  # `cloudherd notify test`, and what PutNotificationConfiguration sends first


def check_kinds(names: Iterable[str], where: str = "--events") -> list[str]:
    """The chosen names, cleaned (split on commas, blanks dropped, duplicates once); ValueError naming the bad one
    and ``where`` it was given otherwise.  None chosen: every kind (``*``)."""
    chosen: list[str] = []
    for raw in names:
        for name in (part.strip() for part in raw.split(",")):
            if not name or name in chosen:
                continue
            if name != ALL and name not in KINDS and name not in EVENT_KINDS:
                import difflib

                near = difflib.get_close_matches(name, [*KINDS, *EVENT_KINDS], n=1)
                hint = f" (did you mean {near[0]}?)" if near else ""
                raise ValueError(f"{where}: unknown event kind {name!r}{hint}; choose among {ALL}, "
                                 f"{', '.join(KINDS)} or an event's own kind ({', '.join(sorted(EVENT_KINDS))})")
            chosen.append(name)
    return chosen or [ALL]


def _covers(pattern: str, kind: str, message: str) -> bool:
    wanted, _, says = pattern.partition(":")
    return wanted == kind and (not says or f": {says}" in message)


def matching(names: Iterable[str], kind: str, message: str) -> list[str]:
    """Which of the chosen ``names`` (friendly, an event's own kind, ``*`` or an AWS type) an event matches."""
    found = []
    for name in names:
        patterns = KINDS.get(name) or AWS_TYPES.get(name) or (name,)
        if (name == ALL and kind != TEST_KIND) or any(_covers(p, kind, message) for p in patterns):
            found.append(name)
    return found
