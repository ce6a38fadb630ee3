"""A real webhook receiver on 127.0.0.1 for the notification tests: it checks each POST with the shipped helper
(:class:`cloudherd.webhooks.Verifier`), records what it answered, and can be told to fail (500) or hang (never
answer) the next requests, be stopped, and be started again on the same port."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pg_harness import free_port

from cloudherd.webhooks import InvalidSignature, Replayed, Verifier


@dataclass
class Seen:
    """One request and what it was answered (``status`` None: hung, no answer given)."""

    body: bytes
    headers: dict[str, str]
    status: int | None
    payload: dict[str, Any] | None = None
    refusal: str | None = None


@dataclass
class Receiver:
    secret: str = ""
    port: int = field(default_factory=free_port)
    fail_next: int = 0  # the next requests answered 500 (before any check)
    hang_next: int = 0  # the next requests never answered (until the receiver stops)

    def __post_init__(self) -> None:
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.verifier = Verifier(self.secret)
        self._server: ThreadingHTTPServer | None = None
        self._released = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/cloudherd"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.handle(self, body)

            def log_message(self, *args: Any) -> None:
                pass

        self._released = threading.Event()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._released.set()  # the hung requests end (their sender gave up on them long ago)

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        """Decide and record under one lock, so that ``seen`` is in the order the requests were decided (a 500
        still being written must not fall behind a hang recorded meanwhile); the answer is filled in after."""
        headers = dict(request.headers.items())
        with self.lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                mode = "fail"
            elif self.hang_next > 0:
                self.hang_next -= 1
                mode = "hang"
            else:
                mode = "check"
            seen = Seen(body, headers, None)
            self.seen.append(seen)
        if mode == "hang":
            self._released.wait(120)
            return
        if mode == "fail":
            self._answer(request, seen, 500)
            return
        try:
            with self.lock:
                payload = self.verifier.verify(body, headers)
        except Replayed as exc:  # handled before: acknowledged, not acted on again
            self._answer(request, seen, 200, refusal=f"replayed: {exc}")
            return
        except InvalidSignature as exc:
            self._answer(request, seen, 400, refusal=str(exc))
            return
        self._answer(request, seen, 200, payload=payload)

    def _answer(self, request: BaseHTTPRequestHandler, seen: Seen, status: int, *,
                payload: dict[str, Any] | None = None, refusal: str | None = None) -> None:
        try:
            request.send_response(status)
            request.send_header("Content-Length", "0")
            request.end_headers()
            request.wfile.flush()
        except OSError:  # the sender went away first: not an answer it got
            status, refusal = 0, "the answer could not be written"
        with self.lock:
            seen.status = status or None
            seen.payload, seen.refusal = payload, refusal

    def accepted(self) -> list[dict[str, Any]]:
        """The payloads answered 2xx after a valid signature, in the order they arrived."""
        with self.lock:
            return [s.payload for s in self.seen if s.status == 200 and s.payload is not None]

    def answered_ok(self) -> dict[str, int]:
        """How many times each delivery id was answered 2xx (a replay acknowledged counts too)."""
        counts: dict[str, int] = {}
        with self.lock:
            for s in self.seen:
                if s.status is not None and 200 <= s.status < 300:
                    delivery = s.headers.get("Cloudherd-Delivery", "")
                    counts[delivery] = counts.get(delivery, 0) + 1
        return counts
