"""What a request costs before the server knows who sends it: the token is checked from the headers before a
byte of the body is read, and every route's body is bounded (413 from Content-Length, and again while a
chunked body streams in).  Through a real `cloudherd serve`, over raw sockets: the tests below send the
headers of a 150 MB upload and never the upload — an answer that comes back proves the body was not
waited for."""

from __future__ import annotations

import io
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_harness import Served, serving

BIG = 150 * 1024 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("door")
    with serving(folder / "home", folder, interval=30) as running:
        yield running


def _head(served: Served, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> str:
    """The answer's head to a request whose headers (and only ``body`` of what they announce) were sent."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{served.port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return _read_answer(sock)


def _read_answer(sock: socket.socket) -> str:
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 4 + _length(answer):
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer.decode("utf-8", "replace")


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def _status(answer: str) -> int:
    return int(answer.split(" ", 2)[1])


@pytest.mark.parametrize("path", ["/v1/infrastructures", "/v1/plan", "/infrastructures/",
                                  "/v1/infrastructures/x/groups/web/scale"])
def test_no_token_is_refused_before_the_body(served: Served, path: str) -> None:
    answer = _head(served, "POST", path, {"Content-Type": "application/yaml", "Content-Length": str(BIG)})
    assert _status(answer) == 401, answer
    assert "WWW-Authenticate: Bearer" in answer or "www-authenticate: Bearer" in answer
    assert "API token" in answer


def test_a_wrong_token_is_refused_before_the_body(served: Served) -> None:
    answer = _head(served, "POST", "/v1/infrastructures",
                   {"Authorization": "Bearer chd_0000_nope", "Content-Length": str(BIG)}, b"name: x\n")
    assert _status(answer) == 401, answer
    assert "not valid" in answer


@pytest.mark.parametrize(("path", "kind"), [("/v1/infrastructures", "json"), ("/v1/infrastructures/x/exec", "json"),
                                            ("/ui/login", "json"), ("/autoscaling", "xml"), ("/", "xml")])
def test_an_announced_body_past_the_limit_is_413_at_once(served: Served, token: str, path: str, kind: str) -> None:
    answer = _head(served, "POST", path, {"Authorization": f"Bearer {token}", "Content-Length": str(BIG),
                                          "Content-Type": "application/x-www-form-urlencoded"})
    assert _status(answer) == 413, answer
    if kind == "xml":  # an AWS error document, as boto reads it
        assert "<Code>RequestEntityTooLarge</Code>" in answer
    else:
        assert '"detail":"the request body is larger than this route takes' in answer


def test_a_chunked_body_is_cut_at_the_limit(served: Served, token: str) -> None:
    """No Content-Length to refuse from: the body is counted as it comes, and the answer is sent as soon as it
    passes the limit (1 MiB for a JSON call) — long before the 150 MB this client would send."""
    head = (f"POST /v1/infrastructures/x/exec HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(head.encode())
        try:
            while sent < BIG:
                sock.sendall(chunk)
                sent += 64 * 1024
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: the answer is read below
        answer = _read_answer(sock)
    assert _status(answer) == 413, answer
    assert sent < BIG


def test_a_body_within_the_limit_still_reaches_its_route(served: Served, token: str) -> None:
    with served.client(token) as client:
        answer = client.post("/v1/plan", content=b"name: door\ngroups:\n  web: {provider: local, count: 1}\n",
                             headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 200, answer.text


def _bundle(entries: int, tail: bytes = b"") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        archive.addfile(tarfile.TarInfo("cloudherd.yml"), io.BytesIO(b""))
        for i in range(entries):
            archive.addfile(tarfile.TarInfo(f"e/{i}"), io.BytesIO(b""))
    import gzip

    return gzip.compress(raw.getvalue()[:-1024] + tail)  # the end-of-archive blocks replaced by ``tail``


def test_a_bundle_of_too_many_entries_is_refused_while_its_index_is_read(served: Served, token: str) -> None:
    """The entries after the 2001st are garbage: refused for its count, the bundle was not read to its end."""
    body = _bundle(2100, tail=b"\x07" * 4096)
    with served.client(token) as client:
        answer = client.post("/v1/plan", content=body, headers={"Content-Type": "application/gzip"})
    assert answer.status_code == 400, answer.text
    assert "more than 2000 entries" in answer.json()["detail"]


def test_the_bundle_limit_holds_for_an_unpacked_size(tmp_path: Path) -> None:
    from cloudherd.errors import UsageError
    from cloudherd.server import uploads

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("big")
        info.size = uploads.MAX_UNPACKED_BYTES + 1
        archive.addfile(info)  # a header only: its size is what the index says
    with pytest.raises(UsageError, match="unpacks to more than"), \
            tarfile.open(fileobj=io.BytesIO(raw.getvalue()), mode="r:") as archive:
        uploads._index(archive)


def test_numbers_in_paths_and_forms_are_bounded_not_read_as_whatever_they_parse_to(served: Served,
                                                                                  token: str) -> None:
    """An Occopus count of 5000 digits ("000…01") was a scale to 1; a dashboard rollback to revision "²" rolled
    back to the one before: both are refused now, and nothing changes."""
    with served.client(token) as api:
        made = api.post("/v1/infrastructures?attach=false", content="name: nums\ngroups:\n  web: {count: 0}\n")
        assert made.status_code == 201, made.text
        infra_id = made.json()["id"]
        answer = api.post(f"/infrastructures/{infra_id}/scaleto/web/{'0' * 5000}1")
        assert answer.status_code == 400 and "at most 5 ASCII digits" in answer.text
        assert [g["count"] for g in api.get(f"/v1/infrastructures/{infra_id}/groups").json()] == [0]
    import re

    import httpx

    with httpx.Client(base_url=served.url) as browser:
        page = browser.get("/ui")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        assert browser.post("/ui/login", data={"token": token, "csrf": csrf.group(1)}).status_code == 303
        form = re.search(r'name="csrf" value="([^"]+)"', browser.get(f"/ui/infrastructures/{infra_id}").text)
        assert form
        for revision in ("\u00b2", "9" * 5000, "-1"):
            answer = browser.post(f"/ui/infrastructures/{infra_id}/rollback",
                                  data={"csrf": form.group(1), "revision": revision})
            assert answer.status_code == 400 and "a revision is a number" in answer.text


def test_the_api_and_the_dashboard_show_a_groups_scaling_policies(served: Served) -> None:
    import re

    import httpx

    token = served.token()
    spec = ("name: sized\ngroups:\n  web:\n    count: 0\n    max: 2\n    scaling:\n      policies:\n"
            "        - {metric: cpu, target: 50}\n      schedules:\n"
            "        - {name: night, cron: '0 22 * * *', desired: 0}\n")
    with served.client(token) as api:
        made = api.post("/v1/infrastructures?attach=false", content=spec)
        assert made.status_code == 201, made.text
        infra_id = made.json()["id"]
        [web] = api.get(f"/v1/infrastructures/{infra_id}/groups").json()
        assert web["policies"] == ["target tracking: cpu at 50", "schedule night: cron 0 22 * * * (UTC) → desired 0"]
    with httpx.Client(base_url=served.url) as browser:
        csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/ui").text)
        assert csrf and browser.post("/ui/login", data={"token": token, "csrf": csrf.group(1)}).status_code == 303
        page = browser.get(f"/ui/infrastructures/{infra_id}").text
        assert '<div class="policy">target tracking: cpu at 50</div>' in page, page
