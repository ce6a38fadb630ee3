"""Fault injection in front of moto's server: a WSGI middleware that answers AWS-shaped errors for chosen actions.

moto's server is a WSGI app (``DomainDispatcherApplication(create_backend_app)``, what ``ThreadedMotoServer``
serves); :class:`FaultInjector` wraps it and :class:`FaultyMotoServer` serves the pair with werkzeug on
127.0.0.1, so boto3 talks real HTTP and sees exactly what EC2 would send.

The injector reads the Query API ``Action`` (form body or query string) of every request, counts calls per
action (injected or not: the attempts a client made) and keeps each call's parameters, so a test can assert
how many times an action was tried and with which ``ClientToken``.  Rules fail an action's first N calls or a
seeded random share of them, of all its calls or of those whose parameters match (``params``: the spot creates
alone).  :func:`interrupt_spot` takes spot instances back as EC2 does, through moto's in-process backend.
"""

from __future__ import annotations

import contextlib
import io
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

# code -> (HTTP status, message), as EC2 answers them ("BARE_503": a 503 with no error document at all).
FAULTS: dict[str, tuple[int, str]] = {
    "RequestLimitExceeded": (503, "Request limit exceeded."),
    "Throttling": (400, "Rate exceeded"),
    "InsufficientInstanceCapacity": (500, "We currently do not have sufficient capacity in the Availability "
                                          "Zone you requested."),
    "InstanceLimitExceeded": (400, "You have requested more instances than your current instance limit allows."),
    "VcpuLimitExceeded": (400, "You have requested more vCPU capacity than your current vCPU limit allows."),
    "SpotMaxPriceTooLow": (400, "Your Spot request price of 0.001 is lower than the minimum required Spot request "
                                "fulfillment price of 0.0031."),
    "MaxSpotInstanceCountExceeded": (400, "Max spot instance count exceeded"),
    "AuthFailure": (401, "AWS was not able to validate the provided access credentials"),
    "InternalError": (500, "An internal error has occurred"),
    "ServiceUnavailable": (503, "The service is unavailable. Please try again shortly."),
    "BARE_503": (503, ""),
}
BARE_503 = "BARE_503"


@dataclass
class Rule:
    """Fail ``action`` with ``code``: its first ``first`` calls, else each call with probability ``rate``; only the
    calls whose parameters hold every ``params`` value (``{"InstanceMarketOptions.MarketType": "spot"}``)."""

    action: str
    code: str
    first: int | None = None
    rate: float = 0.0
    params: Mapping[str, str] = field(default_factory=dict)
    seen: int = 0  # matching calls so far
    fired: int = 0  # of which failed

    def matches(self, action: str, params: Mapping[str, list[str]]) -> bool:
        return action == self.action and all(value in params.get(key, []) for key, value in self.params.items())


def error_body(code: str, message: str, request_id: str) -> bytes:
    """EC2's XML error document."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message></Error></Errors><RequestID>{request_id}</RequestID>"
            "</Response>").encode()


class FaultInjector:
    """WSGI middleware: counts Query API calls per action and fails the ones a rule picks."""

    def __init__(self, app: WsgiApp, seed: int = 0) -> None:
        self.app = app
        self.calls: Counter[str] = Counter()  # every call per action, failed ones included
        self.injected: Counter[str] = Counter()
        self.params: list[tuple[str, dict[str, list[str]]]] = []  # (action, parameters) in arrival order
        self._rules: list[Rule] = []
        self._random = random.Random(seed)
        self._seed = seed
        self._lock = threading.Lock()

    def fail(self, action: str, code: str, *, first: int | None = None, rate: float = 0.0,
             params: Mapping[str, str] | None = None) -> Rule:
        """Add a rule; with neither ``first`` nor ``rate`` every (matching) call fails."""
        if code not in FAULTS:
            raise ValueError(f"unknown fault {code!r} (known: {', '.join(FAULTS)})")
        if first is None and not rate:
            rate = 1.0
        rule = Rule(action, code, first, rate, dict(params or {}))
        with self._lock:
            self._rules.append(rule)
        return rule

    def drop(self, rule: Rule) -> None:
        """Remove one rule (the counters stay)."""
        with self._lock:
            self._rules.remove(rule)

    def reset(self, seed: int | None = None) -> None:
        """Drop the rules and counters (and reseed)."""
        with self._lock:
            self._rules.clear()
            self.calls.clear()
            self.injected.clear()
            self.params.clear()
            self._random = random.Random(self._seed if seed is None else seed)

    def calls_of(self, action: str) -> list[dict[str, list[str]]]:
        with self._lock:
            return [p for a, p in self.params if a == action]

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        params = _query_params(environ)
        action = (params.get("Action") or [""])[0]
        if not action:  # not the Query API (moto's own /moto-api, other protocols): pass through
            return self.app(environ, start_response)
        with self._lock:
            self.calls[action] += 1
            self.params.append((action, params))
            code = self._pick(action, params)
            if code:
                self.injected[action] += 1
        if code is None:
            return self.app(environ, start_response)
        status, message = FAULTS[code]
        request_id = str(uuid.uuid4())
        if code == BARE_503:
            body = b""
            headers = [("Content-Type", "text/plain"), ("Content-Length", "0")]
        else:
            body = error_body(code, message, request_id)
            headers = [("Content-Type", "text/xml;charset=UTF-8"), ("Content-Length", str(len(body)))]
        reasons = {400: "Bad Request", 401: "Unauthorized", 500: "Internal Server Error", 503: "Service Unavailable"}
        start_response(f"{status} {reasons.get(status, 'Error')}", [*headers, ("x-amzn-RequestId", request_id)])
        return [body]

    def _pick(self, action: str, params: Mapping[str, list[str]]) -> str | None:
        for rule in self._rules:
            if not rule.matches(action, params):
                continue
            rule.seen += 1
            hit = rule.seen <= rule.first if rule.first is not None else self._random.random() < rule.rate
            if hit:
                rule.fired += 1
                return rule.code
        return None


def _query_params(environ: Environ) -> dict[str, list[str]]:
    """The Query API parameters: the query string plus a form-encoded body (the body is put back for moto)."""
    params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded"):
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > 0:
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            for key, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
                params.setdefault(key, []).extend(values)
    return params


class FaultyMotoServer:
    """moto's server app behind a :class:`FaultInjector`, served by werkzeug in a thread on 127.0.0.1."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int = 0) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

        class QuietHandler(MotoRequestHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                pass

        from werkzeug.serving import make_server

        self.faults = FaultInjector(DomainDispatcherApplication(create_backend_app), seed=seed)
        self._server = make_server(host, port, self.faults, threaded=True, request_handler=QuietHandler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultyMotoServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-faults", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)


SPOT_TERMINATION = "Server.SpotInstanceTermination"


def interrupt_spot(instance_ids: Sequence[str], region: str = "us-east-1") -> None:
    """Take spot instances back as EC2 does (moto has no API for it): moto's own terminate (its NICs and volumes
    torn down as on any terminate), then the state reason EC2 gives a spot interruption.  An instance that is not
    a spot one is refused: EC2 interrupts spot instances only."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.instances import StateReason

    backend = ec2_backends[DEFAULT_ACCOUNT_ID][region]
    instances = [backend.get_instance(i) for i in instance_ids]
    odd = [i.id for i in instances if i.lifecycle != "spot"]
    if odd:
        raise ValueError(f"not spot instances: {', '.join(odd)}")
    for instance in instances:
        instance.terminate()
        instance.state_reason = StateReason(f"{SPOT_TERMINATION}: Spot instance termination", SPOT_TERMINATION)


AWS_TEST_CONFIG = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent/aws-config",
                   "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials"}


def aws_environment(url: str) -> dict[str, str]:
    """The environment that points boto3 (in this process or a child) at moto on ``url``, and at no user's
    profile, credentials or configuration."""
    return {"AWS_ENDPOINT_URL": url, **AWS_TEST_CONFIG}


@contextlib.contextmanager
def moto_aws(seed: int = 0) -> Iterator[FaultyMotoServer]:
    """moto's EC2 over real HTTP on 127.0.0.1 behind the fault injector (no faults unless a test adds some), with
    this process's AWS environment pointing at it while inside: the one way the tests start moto."""
    import pytest

    server = FaultyMotoServer(seed=seed).start()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in aws_environment(server.url).items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
            patch.delenv(name, raising=False)
        try:
            yield server
        finally:
            server.stop()
