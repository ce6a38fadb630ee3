"""`kill -9` of `serve` while it takes a request: whatever it had written by then, the request is carried to
its end — the restarted server makes the infrastructure, and the client's retry of the same POST is
answered (201, or 409 once the first one is being made), never refused forever."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import pytest
from helpers import wait_until
from server_harness import Served, write_config

SPEC = "name: {name}\ngroups:\n  web:\n    count: 1\n"


def _post_and_kill(served: Served, token: str, body: bytes, path: str) -> None:
    """Send the whole request, then SIGKILL the server at once: it dies somewhere inside handling it."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/yaml\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    assert served.process is not None
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        os.kill(served.process.pid, signal.SIGKILL)
    served.process.wait(timeout=30)
    served.process = None


def _ready(api: httpx.Client, name: str) -> bool:
    found = [i for i in api.get("/v1/infrastructures").json() if i["name"] == name]
    return bool(found) and found[0]["ready_nodes"] == 1


@pytest.mark.parametrize("attach", ["true", "false"])
def test_a_post_cut_by_kill_9_is_carried_to_its_end(tmp_path: Path, attach: str) -> None:
    served = Served(tmp_path / "home", write_config(tmp_path, {"local": "local"}, interval=0.5)).start()
    try:
        token = served.token()
        body = SPEC.format(name=f"cut-{attach}").encode()
        _post_and_kill(served, token, body, f"/v1/infrastructures?attach={attach}")
        served.start()
        api = served.client(token)
        retried = api.post(f"/v1/infrastructures?attach={attach}", content=body)
        assert retried.status_code in (201, 409), retried.text
        wait_until(lambda: _ready(api, f"cut-{attach}"), timeout=120, what="the infrastructure made after the kill")
        [row] = [i for i in api.get("/v1/infrastructures").json() if i["name"] == f"cut-{attach}"]
        assert row["attached"] is (attach == "true")
    finally:
        served.stop()
        served.terminate_nodes()
