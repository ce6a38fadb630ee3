#!/usr/bin/env python3
"""The adversarial probe of issue #26: a real ``cloudherd serve`` on 127.0.0.1, attacked from outside and
run as an unlucky operator would run it, one named case per input, each with the pass rule the issue's "→"
asks of a correct server.

    .venv/bin/python bench/probe.py                         # every case (~10 min on 2 busy cores)
    .venv/bin/python bench/probe.py --only sandbox --json /tmp/probe.json

Each scenario (a group of cases sharing a setup) has its own deadline and its own failures: one case that
fails, raises or hangs never stops the others.  Cases that could hurt the servers of the other cases (a
manager that dies, a scale that is stored, a kill -9, a database outage, a slow probe) get a server of
their own.  Everything lives in one ``mktemp -d`` folder: every ``serve`` has its own data folder
(``CLOUDHERD_HOME``), ``HOME`` and ``CLOUDHERD_DB``, and a distinctive ``PROBE_SECRET`` in its environment.
At the end (also on Ctrl-C, SIGTERM or an error) each serve this script started is stopped by its pid,
the local nodes left in its data folder are terminated by the local provider (which stops only what it
started), and the PostgreSQL of the database case is stopped by its own pg_ctl.

The tally is ``N cases, P passed, F failed``, then one line per failure: the case and what was seen.
Exit code 0 only when every case passed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

MB = 1024 * 1024
BIG = 150 * MB
TAG = secrets.token_hex(4)
SECRET = f"probe-secret-{TAG}-do-not-show"  # PROBE_SECRET in every serve's environment
PG_BIN = Path("/usr/lib/postgresql/15/bin")


# --------------------------------------------------------------------------------------------------------
# results


class Fail(Exception):
    """A case's rule was broken: the message is what was seen."""


def expect(condition: Any, seen: str) -> None:
    if not condition:
        raise Fail(seen)


def short(text: Any, n: int = 240) -> str:
    text = str(text).replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= n else text[:n] + f"…(+{len(text) - n})"


def said(answer: httpx.Response, n: int = 200) -> str:
    return f"{answer.status_code} {short(answer.text, n)}"


@dataclass
class Result:
    name: str
    ok: bool | None = None  # None: not reached
    seen: str = ""
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    name: str
    checks: list[str]
    deadline: float
    run: Callable[[Ctx], None]


SCENARIOS: list[Scenario] = []


def scenario(name: str, checks: list[str], deadline: float) -> Callable[[Callable[[Ctx], None]], Callable[[Ctx], None]]:
    def register(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
        assert len(set(checks)) == len(checks), name
        SCENARIOS.append(Scenario(name, checks, deadline, fn))
        return fn
    return register


class Ctx:
    """What a scenario's body gets: its deadline, its result slots, the probe (servers, scratch)."""

    def __init__(self, probe: Probe, sc: Scenario, wanted: Callable[[str], bool]) -> None:
        self.probe, self.sc, self.wanted = probe, sc, wanted
        self.end = time.monotonic() + sc.deadline
        self.results: dict[str, Result] = {name: Result(name) for name in sc.checks}
        self.servers: list[Serve] = []  # started by this scenario: stopped when it ends (or overruns)
        self.skipped: str | None = None  # said when a scenario cannot run here (its cases are not counted)

    def left(self) -> float:
        return self.end - time.monotonic()

    @contextlib.contextmanager
    def case(self, name: str) -> Iterator[Result]:
        """One case: a Fail (or any error) inside is that case's failure, never the scenario's."""
        result = self.results[name]
        started = time.monotonic()
        try:
            yield result
        except Fail as exc:
            result.ok, result.seen = False, str(exc)
        except Exception as exc:  # a probe-side error: still this case's failure, said as such
            result.ok, result.seen = False, f"probe error: {type(exc).__name__}: {short(exc, 300)}"
            if os.environ.get("PROBE_DEBUG"):
                traceback.print_exc()
        else:
            if result.ok is None:
                result.ok = True
        finally:
            result.seconds = round(time.monotonic() - started, 2)
            self.probe.report(result, self.wanted(name))

    def wait(self, what: str, predicate: Callable[[], Any], timeout: float, every: float = 0.3) -> Any:
        """``predicate()``'s first truthy value; Fail after ``timeout`` s (or the scenario's deadline)."""
        end = time.monotonic() + max(0.0, min(timeout, self.left()))
        last: Any = None
        while True:
            try:
                last = predicate()
            except (httpx.HTTPError, OSError) as exc:
                last = exc
            else:
                if last:
                    return last
            if time.monotonic() >= end:
                raise Fail(f"{what}: not within {timeout:.0f}s (last: {short(last, 200)})")
            time.sleep(every)

    def serve(self, label: str, **kwargs: Any) -> Serve:
        server = Serve(self.probe, label, **kwargs)
        self.servers.append(server)
        self.probe.servers.append(server)
        return server.start()


# --------------------------------------------------------------------------------------------------------
# a real `cloudherd serve`


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """``python -m cloudherd serve --config server.yml --port P`` in its own data folder, stopped by its pid."""

    def __init__(self, probe: Probe, label: str, args: tuple[str, ...] = (), db: str | None = None,
                 interval: float = 1, config: str = "") -> None:
        self.probe, self.label, self.args = probe, label, args
        self.folder = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=probe.scratch))
        self.home = self.folder / "data"
        self.fake_home = self.folder / f"home-probehome-{TAG}"  # the serve's HOME: distinctive, so a leak shows
        self.fake_home.mkdir()
        db_folder = self.folder / f"db-probedb-{TAG}"
        db_folder.mkdir()
        self.db = db or f"sqlite:///{db_folder}/state.db"
        self.config = self.folder / "server.yml"
        self.config.write_text(f"providers: {{local: {{type: local}}}}\ninterval: {interval}\n{config}")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDHERD_")}
        self.env.update(CLOUDHERD_HOME=str(self.home), HOME=str(self.fake_home), CLOUDHERD_DB=self.db,
                        PROBE_SECRET=SECRET)
        self.process: subprocess.Popen[bytes] | None = None
        self.clients: list[Any] = []  # closed before a stop: an idle keep-alive holds a TLS serve's stop 30 s
        self.port = 0
        self.log = self.folder / "serve.log"

    @property
    def tls(self) -> bool:
        return any(a.startswith("--tls") for a in self.args)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def cert(self) -> Path:
        return self.home / "server" / "tls" / "cert.pem"

    @property
    def verify(self) -> Any:
        if self.tls:
            return ssl.create_default_context(cafile=str(self.cert)) if self.cert.exists() else False
        return True

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 90) -> Serve:
        self.port = free_port()
        with self.log.open("ab") as out:
            out.write(f"\n--- start on port {self.port} ---\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cloudherd", "serve", "--config", str(self.config), "--port", str(self.port),
                 *self.args], env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.folder, start_new_session=True)  # a Ctrl-C reaches the probe, which stops it by pid
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited {self.process.returncode}: {short(self.log_tail(), 600)}")
            with contextlib.suppress(httpx.HTTPError, OSError):
                if httpx.get(f"{self.url}/healthz", timeout=2, verify=self.verify).status_code in (200, 503):
                    return self
            time.sleep(0.3)
        raise RuntimeError(f"serve did not answer within {timeout:.0f}s: {short(self.log_tail(), 600)}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM by pid, then SIGKILL after 30 s."""
        if self.process is None:
            return
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.close()
        self.clients.clear()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def clean_nodes(self) -> None:
        """Terminate the local nodes left in this data folder (only processes its local provider started)."""
        root = self.home / "local"
        if not root.is_dir():
            return
        from cloudherd.providers.local import LocalProvider

        provider = LocalProvider("local", {"root": str(root)})

        async def run() -> None:
            left = await provider.list({})
            if left:
                await provider.terminate([i.id for i in left])

        with contextlib.suppress(Exception):
            asyncio.run(asyncio.wait_for(run(), 60))

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "cloudherd", *args], env=self.env, capture_output=True,
                              text=True, timeout=120, cwd=self.folder)
        if done.returncode != 0:
            raise RuntimeError(f"cloudherd {' '.join(args)}: {short(done.stderr, 300)}")
        return done

    def token(self, user: str | None = None) -> tuple[str, str]:
        """A new API token and its id (for ``token revoke``)."""
        made = json.loads(self.cli("token", "create", "--json", *(["--user", user] if user else [])).stdout)
        return str(made["token"]), str(made["id"])

    def aws_keys(self, user: str | None = None) -> dict[str, str]:
        return dict(json.loads(self.cli("token", "create", "--aws", "--json",
                                        *(["--user", user] if user else [])).stdout))

    def api(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.keep(httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=self.verify))

    def keep(self, client: Any) -> Any:
        self.clients.append(client)
        return client

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def sshd_pid(self, node: str) -> int:
        for meta in (self.home / "local").glob("*/node.json"):
            if json.loads(meta.read_text()).get("name") == node:
                return int((meta.parent / "sshd.pid").read_text().split()[0])
        raise Fail(f"no local node folder for {node}")

    def boto(self, keys: dict[str, str], path: str = "/autoscaling") -> Any:
        import boto3
        from botocore.config import Config

        return self.keep(boto3.client("autoscaling", endpoint_url=self.url + path, region_name="us-east-1",
                            aws_access_key_id=keys["access_key_id"], aws_secret_access_key=keys["secret_access_key"],
                            verify=str(self.cert) if self.tls else True,
                            config=Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60)))


# --------------------------------------------------------------------------------------------------------
# the probe: scratch folder, shared main server, servers to stop


class Probe:
    def __init__(self, only: str | None) -> None:
        self.only = only
        self.scratch = Path(tempfile.mkdtemp(prefix="cloudherd-probe-"))
        self.marks = self.scratch / "marks"
        self.marks.mkdir()
        self.servers: list[Serve] = []
        self.results: list[Result] = []
        self._main: Serve | None = None
        self._main_token: str | None = None
        self._lock = threading.Lock()
        self.cleanups: list[Callable[[], None]] = []

    def report(self, result: Result, shown: bool) -> None:
        if not shown:
            return
        with self._lock:
            self.results.append(result)
            info = " ".join(f"{k}={v}" for k, v in result.info.items())
            mark = "PASS" if result.ok else "FAIL"
            line = f"{mark} {result.name} ({result.seconds:.1f}s)" + (f" [{info}]" if info else "")
            if not result.ok:
                line += f"\n     seen: {result.seen}"
            print(line, flush=True)

    def main(self) -> tuple[Serve, str]:
        """The shared server (started on first use, again if it died) and a token of its first user."""
        with self._lock:
            if self._main is None or not self._main.alive():
                if self._main is not None:
                    print(f"  (the shared serve had exited: {short(self._main.log_tail(300), 300)}; restarting)")
                    self._main.stop()
                self._main = Serve(self, "main")
                self.servers.append(self._main)
                self._main.start()
                self._main_token = self._main.token()[0]
            assert self._main_token is not None
            return self._main, self._main_token

    def stop_all(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()
        for server in self.servers:
            server.clean_nodes()
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()


# --------------------------------------------------------------------------------------------------------
# helpers: specs, bundles, raw HTTP, SigV4


def spec(name: str, group: dict[str, Any] | None = None, **top: Any) -> str:
    """A spec as JSON text (JSON is YAML: every face reads it), one group ``web``."""
    return json.dumps({"name": name, **top, "groups": {"web": group if group is not None else {"count": 0}}})


YAML = {"Content-Type": "application/yaml"}
GZIP = {"Content-Type": "application/gzip"}
FACES = ("plan", "create", "occopus")
ROUTE = {"plan": "/v1/plan", "create": "/v1/infrastructures", "occopus": "/infrastructures/"}


def made_id(face: str, answer: httpx.Response) -> str | None:
    """The id of what a POST made, if it made something."""
    if face == "create" and answer.status_code == 201:
        return str(answer.json().get("id"))
    if face == "occopus" and answer.status_code == 200:
        with contextlib.suppress(Exception):
            return str(answer.json()["infraid"])
    return None


def drop(api: httpx.Client, infra_id: str | None) -> None:
    """Tear down something a case made by mistake (a server that accepted what it should have refused)."""
    if infra_id:
        with contextlib.suppress(Exception):
            api.delete(f"/v1/infrastructures/{infra_id}")


def bundle(entries: list[tuple[str, str, bytes | str]]) -> bytes:
    """A tar.gz of (name, kind, data): kind 'file' (data its bytes), 'sym' / 'hard' (data the link target)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                payload = data.encode() if isinstance(data, str) else data
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = str(data)
                archive.addfile(info)
    return raw.getvalue()


def _ustar(name: bytes) -> bytes:
    header = bytearray(512)
    header[0:len(name)] = name
    header[100:108] = b"0000644\0"
    header[108:116] = b"0000000\0"
    header[116:124] = b"0000000\0"
    header[124:136] = b"00000000000\0"
    header[136:148] = b"00000000000\0"
    header[148:156] = b" " * 8
    header[156:157] = b"0"
    header[257:263] = b"ustar\0"
    header[263:265] = b"00"
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def many_entries_bundle(count: int) -> bytes:
    """A tar.gz of cloudherd.yml and ``count`` empty files, made header by header (fast, low memory)."""
    out = io.BytesIO()
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip framing
    spec_text = b"name: many\ngroups:\n  web: {count: 0}\n"
    first = bytearray(_ustar(b"cloudherd.yml"))
    first[124:136] = b"%011o\0" % len(spec_text)
    first[148:156] = b" " * 8
    first[148:156] = b"%06o\0 " % sum(first)
    out.write(packer.compress(bytes(first) + spec_text + b"\0" * (512 - len(spec_text))))
    chunk: list[bytes] = []
    for i in range(count):
        chunk.append(_ustar(b"e/%d" % i))
        if len(chunk) == 4096:
            out.write(packer.compress(b"".join(chunk)))
            chunk = []
    out.write(packer.compress(b"".join(chunk) + b"\0" * 1024))
    out.write(packer.flush())
    return out.getvalue()


def _read_answer(sock: socket.socket, wait: float) -> tuple[bytes, bool]:
    answer = b""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        readable, _, _ = select.select([sock], [], [], max(0.0, end - time.monotonic()))
        if not readable:
            break
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, OSError):
            break
        if not chunk:
            break
        answer += chunk
        if b"\r\n\r\n" in answer and len(answer) >= answer.index(b"\r\n\r\n") + 4 + _length(answer):
            break
    return answer, bool(answer)


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            with contextlib.suppress(ValueError):
                return int(line.split(b":")[1])
    return 0


def status_of(answer: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return int(match.group(1)) if match else None


def post_big(port: int, path: str, headers: dict[str, str], size: int = BIG, early: float = 5.0,
             chunked: bool = False) -> dict[str, Any]:
    """A POST announcing ``size`` bytes: headers first; the body only when no answer came within ``early``
    seconds (what a server that reads before it answers costs).  Returns status, whether the answer came
    before the body, and how many body bytes were sent."""
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    sent = 0
    block = b" " * (256 * 1024)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer, came = (b"", False) if chunked else _read_answer(sock, early)
        if not came:
            try:
                while sent < size:
                    if chunked:
                        sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
                    else:
                        sock.sendall(block)
                    sent += len(block)
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable:  # the server answered (or hung up) while we were still sending
                        break
                if chunked and sent >= size:
                    sock.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer, _ = _read_answer(sock, 30)
    return {"status": status_of(answer), "before_body": came, "sent_mb": round(sent / MB, 1),
            "answer": answer[:300].decode("latin-1")}


class RawStream(threading.Thread):
    """A GET of an event stream over a raw socket: records when it started and when the server ended it."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream",
                 "Connection: close"] + [f"{k}: {v}" for k, v in headers.items()]
        self.port, self.head = port, "\r\n".join(lines) + "\r\n\r\n"
        self.data = b""
        self.first_at: float | None = None
        self.ended_at: float | None = None
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
                sock.sendall(self.head.encode())
                while not self.stop.is_set():
                    readable, _, _ = select.select([sock], [], [], 0.5)
                    if not readable:
                        continue
                    chunk = sock.recv(65536)
                    if not chunk:
                        self.ended_at = time.monotonic()
                        return
                    self.data += chunk
                    if self.first_at is None and b"\r\n\r\n" in self.data:
                        body = self.data.split(b"\r\n\r\n", 1)[1]
                        if b"event:" in body or b"id:" in body or b"data:" in body:
                            self.first_at = time.monotonic()
                    if self.data.endswith(b"\r\n0\r\n\r\n"):  # the last chunk: the stream is over
                        self.ended_at = time.monotonic()
                        return
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.ended_at = time.monotonic()

    @property
    def status(self) -> int | None:
        return status_of(self.data)

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def signed_post(url: str, body: bytes, keys: dict[str, str]) -> httpx.Response:
    """A Query API call with a hand-made form body, signed with SigV4 as boto would sign it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=url, data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(keys["access_key_id"], keys["secret_access_key"]), "autoscaling",
              "us-east-1").add_auth(request)
    return httpx.post(url, content=body, headers=dict(request.headers.items()), timeout=30)


def aws_error(call: Callable[..., Any], **kwargs: Any) -> tuple[str, int] | None:
    """The (code, status) of the ClientError a Query API call raised; None when it succeeded.  A parse
    failure (what boto raises on a body it cannot read) is a Fail naming it."""
    from botocore.exceptions import ClientError

    try:
        call(**kwargs)
    except ClientError as exc:
        return str(exc.response.get("Error", {}).get("Code")), int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    except Exception as exc:
        raise Fail(f"not an AWS error answer: {type(exc).__name__}: {short(exc, 200)}") from None
    return None


def ui_login(server: Serve, token: str) -> httpx.Client:
    """A browser logged in through the dashboard's own form."""
    browser = server.keep(httpx.Client(base_url=server.url, timeout=30, verify=server.verify))
    page = browser.get("/ui")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    expect(found, f"GET /ui has no csrf field: {said(page)}")
    assert found is not None
    answer = browser.post("/ui/login", data={"token": token, "csrf": found.group(1)},
                          headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"})
    expect(answer.status_code == 303 and "cloudherd_session" in browser.cookies,
           f"login through the own form: {said(answer)}")
    return browser


def page_csrf(browser: httpx.Client, path: str) -> str:
    page = browser.get(path)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    expect(found, f"GET {path} has no csrf field: {said(page)}")
    assert found is not None
    return found.group(1)


def ready(api: httpx.Client, ref: str) -> list[str]:
    answer = api.get(f"/v1/infrastructures/{ref}/nodes")
    return sorted(n["name"] for n in answer.json() if n["state"] == "ready") if answer.status_code == 200 else []


def settled(api: httpx.Client, ref: str) -> bool:
    """Something happened on the made infrastructure's nodes: a script ran, or a node is ready or failed."""
    nodes = api.get(f"/v1/infrastructures/{ref}/nodes").json()
    logs = api.get(f"/v1/infrastructures/{ref}/logs").json()
    return bool(any(a.get("exit_code") is not None for a in logs) or
                any(n["state"] in ("ready", "failed") for n in nodes))


def everything_about(api: httpx.Client, ref: str) -> str:
    """Every answer about one infrastructure, as one text (to look for what must never be in it)."""
    parts = []
    for path in ("", "/groups", "/nodes?all=true", "/logs", "/revisions"):
        with contextlib.suppress(httpx.HTTPError):
            parts.append(api.get(f"/v1/infrastructures/{ref}{path}").text)
    with contextlib.suppress(httpx.HTTPError):
        parts.append(api.get(f"/v1/infrastructures/{ref}/events", headers={"Accept": "application/json"}).text)
    with contextlib.suppress(httpx.HTTPError), api.stream("GET", f"/v1/infrastructures/{ref}/events",
                                                          params={"follow": "false"},
                                                          headers={"Accept": "text/event-stream"}) as stream:
        parts.append("\n".join(stream.iter_lines()))
    return "\n".join(parts)


def found_in(text: str, needles: dict[str, str]) -> list[str]:
    return [label for label, needle in needles.items() if needle and needle in text]


# --------------------------------------------------------------------------------------------------------
# 1. templates run in Jinja's sandbox, on every face

ESCAPES = {
    "cycler-globals": "{{ cycler.__init__.__globals__.os.system('touch MARK') }}",
    "joiner-globals": "{{ joiner.__init__.__globals__.os.system('touch MARK') }}",
    "namespace-globals": "{{ namespace.__init__.__globals__.os.system('touch MARK') }}",
    "lipsum-globals": "{{ lipsum.__globals__['os'].popen('touch MARK').read() }}",
    "lipsum-builtins-import": "{{ lipsum.__globals__.__builtins__.__import__('os').system('touch MARK') }}",
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "subclasses-catch-warnings": "{% for c in ().__class__.__base__.__subclasses__() %}{% if c.__name__ == "
                                 "'catch_warnings' %}{{ c()._module.__builtins__['__import__']('os')"
                                 ".system('touch MARK') }}{% endif %}{% endfor %}",
    "attr-filter-chain": "{{ (cycler|attr('__init__')|attr('__globals__'))['os'].system('touch MARK') }}",
    "attr-filter-escaped": "{{ (lipsum|attr('\\x5f\\x5fglobals\\x5f\\x5f'))['os'].popen('touch MARK').read() }}",
    "attr-getitem-chain": "{{ lipsum|attr('__globals__')|attr('__getitem__')('os')|attr('system')('touch MARK') }}",
    "template-reference": "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.system('touch MARK') }}",
    "self-init-globals": "{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch MARK') }}",
    "format-string": "{{ '{0.__class__.__mro__}'.format(cycler) }}",
    "format-map": "{{ '{0.__init__.__globals__}'.format_map([cycler]) }}",
    "mutation": "{% set seen = [] %}{{ seen.append(1) }}{{ seen }}",
    "dict-mro": "{{ dict.mro()[-1].__subclasses__() }}",
}
USERDATA_ESCAPES = ("cycler-globals", "lipsum-globals", "attr-filter-chain")
SANDBOX_CHECKS = [f"sandbox/{face}/{name}" for name in ESCAPES for face in FACES] + \
                 [f"sandbox/asg-userdata/{name}" for name in USERDATA_ESCAPES] + ["sandbox/nothing-ever-ran"]


@scenario("sandbox", SANDBOX_CHECKS, deadline=300)
def sandbox(ctx: Ctx) -> None:
    server, token = ctx.probe.main()
    api = server.api(token)
    marks = ctx.probe.marks / "sandbox"
    marks.mkdir()
    for n, (name, payload) in enumerate(ESCAPES.items()):
        for face in FACES:
            with ctx.case(f"sandbox/{face}/{name}") as result:
                mark = marks / f"{face}-{name}"
                content = "echo hi\n" + payload.replace("MARK", str(mark)) + "\n"
                body = spec(f"sbx-{face}-{n}", {"count": 1, "scripts": [{"name": "s.sh", "content": content}]})
                answer = api.post(ROUTE[face], content=body, headers=YAML)
                result.info["status"] = answer.status_code
                made = made_id(face, answer)
                if made:  # accepted: the node's script run is where it would escape
                    with contextlib.suppress(Fail):
                        ctx.wait("the node's run", lambda mark=mark, made=made: mark.exists() or settled(api, made), 40)
                    drop(api, made)
                expect(not mark.exists(), f"ESCAPED: {mark.name} was created on the server; answer {said(answer)}")
                expect(400 <= answer.status_code < 500, f"answered {said(answer)}")
    keys = server.aws_keys()
    asg = server.boto(keys)
    for n, name in enumerate(USERDATA_ESCAPES):
        with ctx.case(f"sandbox/asg-userdata/{name}") as result:
            mark = marks / f"userdata-{name}"
            payload = "#!/bin/sh\necho hi\n" + ESCAPES[name].replace("MARK", str(mark)) + "\n"
            lc = f"ud{n}@local"
            refused = aws_error(asg.create_launch_configuration, LaunchConfigurationName=lc, ImageId="debian-12",
                                InstanceType="small", UserData=payload)
            if refused is None:
                refused = aws_error(asg.create_auto_scaling_group, AutoScalingGroupName=f"ud{n}",
                                    LaunchConfigurationName=lc, MinSize=0, MaxSize=1, DesiredCapacity=1,
                                    AvailabilityZones=["local"])
                if refused is None:  # made: its node's first boot is where it would escape
                    def boot(n: int = n, mark: Path = mark) -> Any:
                        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"ud{n}"])
                        found = group["AutoScalingGroups"][0]["Instances"] if group["AutoScalingGroups"] else []
                        return mark.exists() or any(i["LifecycleState"] == "InService" for i in found)
                    with contextlib.suppress(Fail):
                        ctx.wait("the instance's boot", boot, 40)
                    with contextlib.suppress(Exception):
                        asg.delete_auto_scaling_group(AutoScalingGroupName=f"ud{n}", ForceDelete=True)
            result.info["refused"] = refused
            expect(not mark.exists(), f"ESCAPED: {mark.name} was created on the server (refused: {refused})")
            expect(refused is None or 400 <= refused[1] < 500, f"answered {refused}")
    with ctx.case("sandbox/nothing-ever-ran"):
        time.sleep(1)
        escaped = sorted(p.name for p in marks.iterdir())
        expect(not escaped, f"markers made on the server: {escaped}")


# --------------------------------------------------------------------------------------------------------
# 2. a posted spec uses the server's clouds only (5. and declares no shares)

PROVIDER_SPECS: dict[str, Callable[[Serve], str]] = {
    "own-provider-isolation-none": lambda s: spec("own1", {"provider": "mine", "count": 1},
                                                  providers={"mine": {"type": "local", "isolation": "none"}}),
    "own-provider-shadows-offered": lambda s: spec("own2", {"count": 1},
                                                   providers={"local": {"type": "local", "isolation": "none"}}),
    "own-provider-declared-unused": lambda s: spec("own3", {"count": 1}, providers={"mine": {"type": "local"}}),
    "group-on-unoffered-aws": lambda s: spec("own4", {"provider": "aws", "count": 1}),
    "group-on-unoffered-gce": lambda s: spec("own5", {"provider": "gce", "count": 1}),
    "placement-on-unoffered": lambda s: spec("own6", {"count": 1, "placement": [{"provider": "aws"}]}),
    "placement-mixed": lambda s: spec("own7", {"count": 2, "placement": [{"provider": "local", "max": 1},
                                                                       {"provider": "gce"}]}),
}
SHARE_SPECS: dict[str, Callable[[Serve], str]] = {
    "root-on-offered-name": lambda s: spec("sh1", {"count": 1},
                                           providers={"local": {"type": "local", "shared": ["/:/hostroot"]}}),
    "root-on-own-name": lambda s: spec("sh2", {"provider": "mine", "count": 1},
                                       providers={"mine": {"type": "local", "shared": ["/:/hostroot"]}}),
    "data-folder": lambda s: spec("sh3", {"count": 1},
                                  providers={"local": {"type": "local", "shared": [f"{s.home}:/d"]}}),
    "root-home": lambda s: spec("sh4", {"count": 1}, providers={"local": {"type": "local", "shared": ["/root"]}}),
}
CLOUD_CHECKS = [f"providers/{face}/{name}" for name in PROVIDER_SPECS for face in FACES] + \
               [f"shares/{face}/{name}" for name in SHARE_SPECS for face in FACES] + ["providers/control-offered-cloud"]


@scenario("clouds", CLOUD_CHECKS, deadline=150)
def clouds(ctx: Ctx) -> None:
    server, token = ctx.probe.main()
    api = server.api(token)
    for prefix, table in (("providers", PROVIDER_SPECS), ("shares", SHARE_SPECS)):
        for name, make in table.items():
            for face in FACES:
                with ctx.case(f"{prefix}/{face}/{name}") as result:
                    answer = api.post(ROUTE[face], content=make(server), headers=YAML)
                    result.info["status"] = answer.status_code
                    drop(api, made_id(face, answer))
                    expect(answer.status_code == 400, f"answered {said(answer)}")
    with ctx.case("providers/control-offered-cloud"):  # the refusals above are not a blanket refusal
        answer = api.post("/v1/plan", content=spec("ctl", {"provider": "local", "count": 1}), headers=YAML)
        expect(answer.status_code == 200, f"a plan on the offered cloud: {said(answer)}")


# --------------------------------------------------------------------------------------------------------
# 3. files by path: everything a network spec names resolves inside what was sent

def _path_specs(s: Serve) -> dict[str, str]:
    key = s.home / "keys" / "id_ed25519"
    return {
        "teardown-dotdot-key": spec("pa1", {"count": 1, "teardown": "../../../keys/id_ed25519"}),
        "teardown-absolute-key": spec("pa2", {"count": 1, "teardown": str(key)}),
        "script-etc-passwd": spec("pa3", {"count": 1, "scripts": ["/etc/passwd"]}),
        "script-dotdot-key": spec("pa4", {"count": 1, "scripts": ["../../../keys/id_ed25519"]}),
        "script-folder-dotdot-keys": spec("pa5", {"count": 1, "scripts": ["../../../keys/"]}),
        "user-data-secrets-key": spec("pa6", {"count": 1, "user_data": "../../../keys/secrets.key"}),
        "script-tilde": spec("pa7", {"count": 1, "scripts": ["~/.ssh/id_rsa"]}),
        "ssh-key-of-server": spec("pa8", {"count": 1}, ssh={"key": str(key)}),
        "health-command-file": spec("pa9", {"count": 1, "scripts": ["/proc/self/environ"]}),
    }


def _bundles(s: Serve) -> dict[str, tuple[bytes, str]]:
    """Hostile bundles, and the file an escaping unpack would write (relative to the scratch folder)."""
    key = str(s.home / "keys" / "id_ed25519")
    marks = s.probe.marks
    doc = "name: pb{}\ngroups:\n  web:\n    count: 1\n    {}\n"
    return {
        "symlink-absolute-key": (bundle([("cloudherd.yml", "file", doc.format(1, "scripts: [s.sh]")),
                                         ("s.sh", "sym", key)]), ""),
        "symlink-relative-key": (bundle([("cloudherd.yml", "file", doc.format(2, "scripts: [s.sh]")),
                                         ("s.sh", "sym", "../../../keys/id_ed25519")]), ""),
        "symlink-dir-root": (bundle([("cloudherd.yml", "file", doc.format(3, f"scripts: [d{key}]")),
                                     ("d", "sym", "/")]), ""),
        "symlink-teardown-passwd": (bundle([("cloudherd.yml", "file", doc.format(4, "teardown: t.sh")),
                                            ("t.sh", "sym", "/etc/passwd")]), ""),
        "hardlink-passwd": (bundle([("cloudherd.yml", "file", doc.format(5, "scripts: [h.sh]")),
                                    ("h.sh", "hard", "/etc/passwd")]), ""),
        "hardlink-key": (bundle([("cloudherd.yml", "file", doc.format(6, "scripts: [h.sh]")),
                                 ("h.sh", "hard", key)]), ""),
        "dotdot-entry": (bundle([("cloudherd.yml", "file", doc.format(7, "scripts: [a.sh]")),
                                 ("a.sh", "file", "echo a\n"),
                                 ("../../../../probe-dotdot-escape.sh", "file", "echo x\n")]),
                         "probe-dotdot-escape.sh"),
        "inner-dotdot-entry": (bundle([("cloudherd.yml", "file", doc.format(8, "scripts: [a.sh]")),
                                       ("a.sh", "file", "echo a\n"),
                                       ("a/../../../../../probe-inner-escape.sh", "file", "x\n")]),
                               "probe-inner-escape.sh"),
        "absolute-entry": (bundle([("cloudherd.yml", "file", doc.format(9, "scripts: [a.sh]")),
                                   ("a.sh", "file", "echo a\n"),
                                   (str(marks / "probe-absolute-escape.sh"), "file", "x\n")]),
                           "marks/probe-absolute-escape.sh"),
        "write-through-symlink": (bundle([("cloudherd.yml", "file", doc.format(10, "scripts: [a.sh]")),
                                          ("a.sh", "file", "echo a\n"), ("d", "sym", str(marks)),
                                          ("d/probe-through-link.sh", "file", "x\n")]),
                                  "marks/probe-through-link.sh"),
    }


PATH_NAMES = ["teardown-dotdot-key", "teardown-absolute-key", "script-etc-passwd", "script-dotdot-key",
              "script-folder-dotdot-keys", "user-data-secrets-key", "script-tilde", "ssh-key-of-server",
              "health-command-file"]
BUNDLE_NAMES = ["symlink-absolute-key", "symlink-relative-key", "symlink-dir-root", "symlink-teardown-passwd",
                "hardlink-passwd", "hardlink-key", "dotdot-entry", "inner-dotdot-entry", "absolute-entry",
                "write-through-symlink"]
PATH_CHECKS = [f"paths/{face}/{name}" for name in PATH_NAMES for face in FACES] + \
              [f"paths/bundle-{face}/{name}" for name in BUNDLE_NAMES for face in ("plan", "create")] + \
              ["paths/logs-never-show-keys"]


def _secret_needles(s: Serve) -> dict[str, str]:
    needles = {"'PRIVATE KEY'": "PRIVATE KEY", "/etc/passwd's root line": "root:x:0:0"}
    for name in ("id_ed25519", "secrets.key"):
        path = s.home / "keys" / name
        if path.exists():
            for i, line in enumerate(path.read_text().splitlines()):
                if len(line) >= 16 and not line.startswith("-----"):
                    needles[f"{name} line {i}"] = line.strip()
    return needles


@scenario("paths", PATH_CHECKS, deadline=200)
def paths(ctx: Ctx) -> None:
    server, token = ctx.probe.main()
    api = server.api(token)
    needles = _secret_needles(server)
    made: list[str] = []
    specs = _path_specs(server)
    for name in PATH_NAMES:
        for face in FACES:
            with ctx.case(f"paths/{face}/{name}") as result:
                answer = api.post(ROUTE[face], content=specs[name], headers=YAML)
                result.info["status"] = answer.status_code
                if (infra := made_id(face, answer)):
                    made.append(infra)
                leaked = found_in(answer.text, needles)
                expect(not leaked, f"the answer shows {leaked}: {said(answer)}")
                expect(400 <= answer.status_code < 500, f"answered {said(answer)}")
    for name, (body, escape) in _bundles(server).items():
        for face in ("plan", "create"):
            with ctx.case(f"paths/bundle-{face}/{name}") as result:
                answer = api.post(ROUTE[face], content=body, headers=GZIP)
                result.info["status"] = answer.status_code
                if (infra := made_id(face, answer)):
                    made.append(infra)
                leaked = found_in(answer.text, needles)
                escaped = [str(p) for p in ctx.probe.scratch.rglob(Path(escape).name)] if escape else []
                for path in escaped:
                    with contextlib.suppress(OSError):
                        Path(path).unlink()
                expect(not escaped, f"the unpack wrote outside its folder: {escaped}")
                expect(not leaked, f"the answer shows {leaked}: {said(answer)}")
                expect(answer.status_code == 400, f"answered {said(answer)}")
    with ctx.case("paths/logs-never-show-keys") as result:
        with contextlib.suppress(Fail):  # a server that accepted some: give their scripts a moment to run
            ctx.wait("the made ones' runs", lambda: all(settled(api, infra) for infra in made), 45, every=1)
        result.info["made_by_mistake"] = len(made)
        listed = [i["id"] for i in api.get("/v1/infrastructures").json()]
        shown = {infra: found_in(everything_about(api, infra), needles) for infra in set(made) | set(listed)}
        for infra in made:
            drop(api, infra)
        bad = {k: v for k, v in shown.items() if v}
        expect(not bad, f"logs/events/answers show key material: {bad}")


# --------------------------------------------------------------------------------------------------------
# 4. the server's environment stays the server's

ENV_VARIANTS: dict[str, dict[str, Any]] = {
    "dollar-secret": {"image": "${PROBE_SECRET}"},
    "dollar-home": {"image": "${HOME}"},
    "dollar-db-url": {"image": "${CLOUDHERD_DB}"},
    "dollar-in-tag": {"tags": {"t": "${PROBE_SECRET}"}},
    "dollar-default": {"tags": {"t": "${PROBE_SECRET:-fallback}"}},
    "dollar-in-script": {"scripts": [{"name": "s.sh", "content": "echo ${PROBE_SECRET} ${HOME} ${CLOUDHERD_DB}"}]},
    "dollar-in-env": {"env": {"X": "${PROBE_SECRET}"}, "scripts": [{"name": "s.sh", "content": "echo $X"}]},
    "tmpl-env-attr": {"scripts": [{"name": "s.sh", "content": "echo {{ env.PROBE_SECRET }}"}]},
    "tmpl-env-as-key": {"scripts": [{"name": "s.sh", "content": "echo {{ {}[env.PROBE_SECRET] }}"}]},
    "tmpl-env-item-home": {"scripts": [{"name": "s.sh", "content": "echo {{ env['HOME'] }}"}]},
    "tmpl-env-get": {"scripts": [{"name": "s.sh", "content": "echo {{ env.get('PROBE_SECRET', 'unset') }} "
                                  "{{ env.get('HOME', 'unset') }} {{ env.get('CLOUDHERD_DB', 'unset') }}"}]},
    "tmpl-env-dump": {"scripts": [{"name": "s.sh", "content": "echo '{{ env | tojson }} {{ env.items() | list }}'"}]},
    "tmpl-env-in-int-error": {"scripts": [{"name": "s.sh", "content": "echo {{ env.PROBE_SECRET | int + {} }}"}]},
    "tmpl-env-in-undefined": {"scripts": [{"name": "s.sh", "content": "echo {{ nothing[env.CLOUDHERD_DB] }}"}]},
    "tmpl-env-health-url": {"health": {"ssh": False, "urls": ["http://127.0.0.1:1/{{ env.PROBE_SECRET }}"],
                                       "interval": "1s", "grace": "0s"}},
    "tmpl-os-environ": {"scripts": [{"name": "s.sh", "content": "echo {{ cycler.__init__.__globals__.os.environ }}"}]},
}
ENV_TOP = {"variables-dollar": ({"v": "${PROBE_SECRET}"},
                                {"scripts": [{"name": "s.sh", "content": "echo {{ variables.v }}"}]}),
           "name-dollar": (None, {})}
ENV_CHECKS = [f"env/{face}/{name}" for name in [*ENV_VARIANTS, *ENV_TOP] for face in FACES] + \
             ["env/made-ones-show-nothing", "env/server-log-clean"]


@scenario("env", ENV_CHECKS, deadline=240)
def environment(ctx: Ctx) -> None:
    server, token = ctx.probe.main()
    api = server.api(token)
    needles = {"PROBE_SECRET": SECRET, "HOME": f"probehome-{TAG}", "CLOUDHERD_DB": f"probedb-{TAG}"}
    made: list[str] = []
    bodies: dict[str, Callable[[int, str], str]] = {
        name: (lambda i, face, g=group: spec(f"env-{face}-{i}", {"count": 1, **g}))
        for name, group in ENV_VARIANTS.items()}
    bodies["variables-dollar"] = lambda i, face: spec(f"env-{face}-{i}", {"count": 1, **ENV_TOP["variables-dollar"][1]},
                                                      variables=ENV_TOP["variables-dollar"][0])
    bodies["name-dollar"] = lambda i, face: json.dumps({"name": "e-${PROBE_SECRET}", "groups": {"web": {"count": 0}}})
    for i, (name, body) in enumerate(bodies.items()):
        for face in FACES:
            with ctx.case(f"env/{face}/{name}") as result:
                answer = api.post(ROUTE[face], content=body(i, face), headers=YAML)
                result.info["status"] = answer.status_code
                if (infra := made_id(face, answer)):
                    made.append(infra)
                leaked = found_in(answer.text, needles)
                expect(not leaked, f"the answer shows the server's {leaked}: {said(answer)}")
                expect(answer.status_code < 500, f"answered {said(answer)}")
    with ctx.case("env/made-ones-show-nothing") as result:
        result.info["made"] = len(made)
        with contextlib.suppress(Fail):  # their scripts run (or their nodes fail): one wait for all of them
            ctx.wait("the made ones' runs", lambda: all(settled(api, infra) for infra in made), 45, every=1)
        time.sleep(2)  # a pass or two of the manager's (its health checks, its events)
        shown = {infra: found_in(everything_about(api, infra), needles) for infra in made}
        for infra in made:
            drop(api, infra)
        bad = {k: v for k, v in shown.items() if v}
        expect(not bad, f"logs/events/answers of made infrastructures show the server's {bad}")
    with ctx.case("env/server-log-clean"):
        expect(SECRET not in server.log_tail(10**7), "the serve's own log prints PROBE_SECRET's value")


# --------------------------------------------------------------------------------------------------------
# 6. bodies before auth, bounded bodies, a bundle of 400 000 entries

BODY_CHECKS = ["body/no-token-v1-infrastructures", "body/no-token-v1-plan", "body/no-token-ui-login",
               "body/no-token-autoscaling", "body/no-token-root", "body/no-token-v1-under-the-limit",
               "body/bad-token-v1-infrastructures",
               "body/chunked-with-token-exec", "body/chunked-with-token-plan", "body/rss-growth",
               "body/bundle-400k-entries"]


@scenario("body", BODY_CHECKS, deadline=200)
def bodies(ctx: Ctx) -> None:
    server = ctx.serve("body", interval=5)
    token, _ = server.token()
    time.sleep(1)
    rss0 = server.rss_mb()
    plain = {"/v1/infrastructures": "application/yaml", "/v1/plan": "application/yaml",
             "/ui/login": "application/x-www-form-urlencoded", "/autoscaling": "application/x-www-form-urlencoded",
             "/": "application/x-www-form-urlencoded"}
    names = {"/v1/infrastructures": "body/no-token-v1-infrastructures", "/v1/plan": "body/no-token-v1-plan",
             "/ui/login": "body/no-token-ui-login", "/autoscaling": "body/no-token-autoscaling",
             "/": "body/no-token-root"}
    for path, kind in plain.items():
        with ctx.case(names[path]) as result:
            tries = [post_big(server.port, path, {"Content-Type": kind}) for _ in range(2)]
            result.info.update(status=[t["status"] for t in tries], body_sent_mb=max(t["sent_mb"] for t in tries))
            for t in tries:
                expect(t["before_body"], f"no answer before the body was sent (sent {t['sent_mb']} MB, then "
                                         f"{t['status']}: {short(t['answer'], 120)})")
                expect(t["status"] in (401, 403, 413), f"answered {t['status']}: {short(t['answer'], 160)}")
    with ctx.case("body/no-token-v1-under-the-limit") as result:  # 1 MB: refused for want of a token, not for size
        t = post_big(server.port, "/v1/infrastructures", {"Content-Type": "application/yaml"}, size=MB)
        result.info.update(status=t["status"], body_sent_mb=t["sent_mb"])
        expect(t["before_body"] and t["status"] == 401, f"{t}")
    with ctx.case("body/bad-token-v1-infrastructures") as result:
        t = post_big(server.port, "/v1/infrastructures", {"Content-Type": "application/yaml",
                                                          "Authorization": "Bearer chd_0000_nope"})
        result.info.update(status=t["status"], body_sent_mb=t["sent_mb"])
        expect(t["before_body"] and t["status"] == 401, f"{t}")
    for name, path, kind in (("body/chunked-with-token-exec", "/v1/infrastructures/x/exec", "application/json"),
                             ("body/chunked-with-token-plan", "/v1/plan", "application/yaml")):
        with ctx.case(name) as result:
            t = post_big(server.port, path, {"Content-Type": kind, "Authorization": f"Bearer {token}"}, chunked=True)
            result.info.update(status=t["status"], sent_mb=t["sent_mb"])
            expect(t["status"] == 413, f"answered {t['status']}: {short(t['answer'], 160)}")
            expect(t["sent_mb"] < BIG / MB, f"the whole {BIG // MB} MB was taken before the answer")
    with ctx.case("body/rss-growth") as result:
        time.sleep(1)
        growth = server.rss_mb() - rss0
        result.info.update(rss_before_mb=round(rss0), growth_mb=round(growth, 1))
        expect(growth < 50, f"serve's RSS grew {growth:.0f} MB (from {rss0:.0f} MB) over those requests")
    with ctx.case("body/bundle-400k-entries") as result:
        body = many_entries_bundle(400_000)
        before = server.rss_mb()
        started = time.monotonic()
        answer = server.api(token).post("/v1/plan", content=body, headers=GZIP, timeout=120)
        took = time.monotonic() - started
        growth = server.rss_mb() - before
        result.info.update(bundle_mb=round(len(body) / MB, 1), status=answer.status_code, seconds=round(took, 2),
                           rss_growth_mb=round(growth, 1))
        expect(400 <= answer.status_code < 500, f"answered {said(answer)}")
        expect(took < 5, f"refused after {took:.1f}s (upload included): not while reading the index")
        expect(growth < 50, f"serve's RSS grew {growth:.0f} MB")


# --------------------------------------------------------------------------------------------------------
# 7. streams end with their token

STREAM_CHECKS = ["streams/v1-events-denied-after-revoke", "streams/v1-revoked-token-401",
                 "streams/ui-infrastructure-live-denied-after-revoke", "streams/ui-list-live-denied-after-revoke",
                 "streams/50-v1-readers-cost-like-50-dashboard-pages"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@scenario("streams", STREAM_CHECKS, deadline=150)
def streams(ctx: Ctx) -> None:
    server, _ = ctx.probe.main()
    pump_token, _ = server.token()
    pump = server.api(pump_token)
    made = pump.post("/v1/infrastructures", content=spec("streamed", {"count": 0, "min": 0}), headers=YAML)
    if made.status_code != 201:
        raise Fail(f"setup: {said(made)}")
    infra = made.json()["id"]
    going = threading.Event()

    def keep_events_coming() -> None:  # attach / detach of the same user, over and over: events keep coming
        for verb in itertools.cycle(("detach", "attach")):
            if going.is_set():
                return
            with contextlib.suppress(httpx.HTTPError):
                pump.post(f"/v1/infrastructures/{infra}/{verb}")
            time.sleep(0.3)

    threading.Thread(target=keep_events_coming, daemon=True).start()
    try:
        v1_token, v1_id = server.token()
        ui_token, ui_id = server.token()
        list_token, list_id = server.token()
        def session(token: str) -> dict[str, str]:
            return {"Cookie": f"cloudherd_session={ui_login(server, token).cookies['cloudherd_session']}"}

        readers = {
            "v1": (RawStream(server.port, f"/v1/infrastructures/{infra}/events",
                             {"Authorization": f"Bearer {v1_token}"}), v1_id),
            "ui": (RawStream(server.port, f"/ui/infrastructures/{infra}/live", session(ui_token)), ui_id),
            "list": (RawStream(server.port, "/ui/live", session(list_token)), list_id),
        }
        names = {"v1": "streams/v1-events-denied-after-revoke",
                 "ui": "streams/ui-infrastructure-live-denied-after-revoke",
                 "list": "streams/ui-list-live-denied-after-revoke"}
        for reader, _ in readers.values():
            reader.start()
        for key, (reader, token_id) in readers.items():
            with ctx.case(names[key]) as result:
                ctx.wait(f"the {key} stream's first event", lambda r=reader: r.first_at or r.ended_at, 20)
                with contextlib.suppress(Fail):  # busy: a few changes seen before the revoke
                    ctx.wait("changes flowing", lambda r=reader: r.text().count("\ndata:") >= 4 or r.ended_at, 10)
                result.info["changes_before_revoke"] = reader.text().count("\ndata:")
                expect(reader.ended_at is None, f"the stream ended before the revoke: {short(reader.text(), 300)}")
                server.cli("token", "revoke", token_id)
                revoked = time.monotonic()
                with contextlib.suppress(Fail):
                    ctx.wait("the stream's end", lambda r=reader: r.ended_at, 20, every=0.1)
                reader.stop.set()
                tail = short(reader.text()[-200:], 200)
                if reader.ended_at is None:
                    raise Fail(f"still streaming 20s after the revoke (tail: {tail})")
                took = reader.ended_at - revoked
                result.info["seconds_to_end"] = round(took, 1)
                expect(took <= 15, f"ended {took:.1f}s after the revoke")
                expect("event: denied" in reader.text(), f"ended without 'event: denied' (tail: {tail})")
        with ctx.case("streams/v1-revoked-token-401"):
            answer = server.api(v1_token).get("/v1/infrastructures")
            expect(answer.status_code == 401, f"the revoked token: {said(answer)}")
        with ctx.case("streams/50-v1-readers-cost-like-50-dashboard-pages") as result:
            # a quiet fleet (detached: no passes, no events) and no pump: what the readers' own waiting costs
            going.set()
            quiet = pump.post("/v1/infrastructures?attach=false", content=spec("quiet", {"count": 0}), headers=YAML)
            expect(quiet.status_code == 201, f"setup: {said(quiet)}")
            watched = quiet.json()["id"]
            reader_token, _ = server.token()
            cookie = session(reader_token)

            def cost(make: Callable[[], RawStream] | None, seconds: float = 8) -> float:
                """serve's CPU seconds over ``seconds`` with 50 such readers open (none: the baseline)."""
                readers = [make() for _ in range(50)] if make else []
                for r in readers:
                    r.start()
                if readers:
                    ctx.wait("50 readers streaming", lambda: all(r.first_at for r in readers), 30)
                before = cpu_seconds(server.pid)
                time.sleep(seconds)
                used = cpu_seconds(server.pid) - before
                for r in readers:
                    r.stop.set()
                time.sleep(1)
                return used

            base = cost(None)
            ui = cost(lambda: RawStream(server.port, f"/ui/infrastructures/{watched}/live", cookie))
            v1 = cost(lambda: RawStream(server.port, f"/v1/infrastructures/{watched}/events",
                                        {"Authorization": f"Bearer {reader_token}"}))
            drop(pump, watched)
            result.info.update(cpu_s_baseline=round(base, 2), cpu_s_50_ui=round(ui, 2), cpu_s_50_v1=round(v1, 2))
            expect(v1 - base <= 3 * max(ui - base, 0) + 0.5,
                   f"8 s of 50 /v1 readers of a quiet fleet cost {v1 - base:.2f} CPU-s above the baseline, "
                   f"50 dashboard pages {ui - base:.2f}")
    finally:
        going.set()
        drop(pump, infra)


# --------------------------------------------------------------------------------------------------------
# 8. login CSRF

CSRF_VARIANTS: dict[str, tuple[dict[str, str], str]] = {
    "origin-evil": ({"Origin": "http://evil.example"}, "form"),
    "origin-null": ({"Origin": "null"}, "form"),
    "fetch-cross-site": ({"Sec-Fetch-Site": "cross-site"}, "form"),
    "fetch-same-site-other-origin": ({"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"}, "form"),
    "no-csrf-field": ({}, "no-field"),
    "forged-csrf-field": ({}, "forged"),
    "no-login-cookie": ({}, "no-cookie"),
}
CSRF_CHECKS = [f"login-csrf/{name}" for name in CSRF_VARIANTS] + ["login-csrf/control-own-form-logs-in"]


@scenario("login-csrf", CSRF_CHECKS, deadline=90)
def login_csrf(ctx: Ctx) -> None:
    server, token = ctx.probe.main()
    for name, (headers, how) in CSRF_VARIANTS.items():
        with ctx.case(f"login-csrf/{name}") as result, \
                httpx.Client(base_url=server.url, timeout=30, verify=server.verify) as browser:
            page = browser.get("/ui")
            found = re.search(r'name="csrf" value="([^"]+)"', page.text)
            csrf = found.group(1) if found else ""
            form = {"token": token, "csrf": csrf}
            if how == "no-field":
                form.pop("csrf")
            elif how == "forged":
                form["csrf"] = "x" * max(32, len(csrf))
            elif how == "no-cookie":
                browser.cookies.clear()
            answer = browser.post("/ui/login", data=form, headers=headers)
            result.info["status"] = answer.status_code
            session = "cloudherd_session" in browser.cookies or "cloudherd_session=" in \
                ";".join(answer.headers.get_list("set-cookie"))
            expect(not session, f"a session cookie was set: {said(answer, 100)}")
            expect(answer.status_code == 403, f"answered {said(answer, 120)}")
    with ctx.case("login-csrf/control-own-form-logs-in"):
        ui_login(server, token).close()


# --------------------------------------------------------------------------------------------------------
# 9. TLS, and answers that never show server paths

TLS_CHECKS = ["tls/https-with-the-made-cert", "tls/untrusted-and-plain-refused", "tls/cookies-secure",
              "tls/no-server-paths-in-answers", "tls/boto3-over-https",
              "tls/no-server-paths-in-query-api-errors"]


@scenario("tls", TLS_CHECKS, deadline=180)
def tls(ctx: Ctx) -> None:
    server = ctx.serve("tls", args=("--tls-self-signed",))
    token, _ = server.token()
    with ctx.case("tls/https-with-the-made-cert") as result:
        expect(server.cert.exists(), f"no {server.cert}")
        answer = httpx.get(f"{server.url}/healthz", verify=server.verify, timeout=10)
        result.info["fingerprint_printed"] = "SHA-256" in server.log_tail()
        expect(answer.status_code == 200, f"healthz over https: {said(answer)}")
    with ctx.case("tls/untrusted-and-plain-refused"):
        try:
            httpx.get(f"{server.url}/healthz", timeout=10)
            raise Fail("a client that does not trust the certificate got an answer")
        except httpx.ConnectError:
            pass
        try:
            plain = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=10)
            raise Fail(f"plain http on the https port answered {said(plain)}")
        except httpx.HTTPError:
            pass
    with ctx.case("tls/cookies-secure"), \
            server.keep(httpx.Client(base_url=server.url, verify=server.verify, timeout=30)) as browser:
        page = browser.get("/ui")
        first = ";".join(page.headers.get_list("set-cookie")).lower()
        expect("secure" in first, f"the login form's cookie is not Secure: {first}")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        expect(csrf, "no csrf field")
        assert csrf is not None
        answer = browser.post("/ui/login", data={"token": token, "csrf": csrf.group(1)})
        session = [c for c in answer.headers.get_list("set-cookie") if c.startswith("cloudherd_session=")]
        expect(answer.status_code == 303 and session, f"login: {said(answer)}")
        expect("secure" in session[0].lower() and "httponly" in session[0].lower(),
               f"the session cookie: {session[0]}")
    with ctx.case("tls/no-server-paths-in-answers") as result:
        api = server.api(token)
        needles = {"data folder": str(server.home), "probe folder": str(server.folder), "uploads/": "uploads/",
                   "/uploads": "/uploads"}
        doc = "name: pathless\ngroups:\n  web:\n    count: 1\n    scripts: [scripts/show.sh]\n    teardown: bye.sh\n"
        good = bundle([("cloudherd.yml", "file", doc), ("scripts/show.sh", "file", "echo shown\n"),
                       ("bye.sh", "file", "echo bye\n")])
        answers = [api.post("/v1/plan", content=good, headers=GZIP),
                   api.post("/v1/plan", content=spec("inl", {"count": 1, "scripts": [{"name": "a.sh",
                                                                                      "content": "echo a"}]}),
                            headers=YAML),
                   api.post("/v1/plan", content="name: Bad Name!\ngroups: {web: {count: 1}}\n", headers=YAML),
                   api.post("/v1/plan", content=spec("miss", {"scripts": ["nothing-here.sh"]}), headers=YAML),
                   api.post("/v1/plan", content=spec("tpl", {"scripts": [{"name": "b.sh", "content": "{{ nope }}"}]}),
                            headers=YAML),
                   api.post("/v1/plan", content=bundle([("cloudherd.yml", "file", "name: x\ngroups:\n  web:\n"
                                                         "    scripts: [s.sh]\n"), ("s.sh", "sym", "/etc/passwd")]),
                            headers=GZIP),
                   api.post("/infrastructures/", content=spec("occ", {"scripts": ["missing.sh"]}), headers=YAML)]
        created = api.post("/v1/infrastructures", content=good, headers=GZIP)
        answers.append(created)
        text = "\n".join(a.text for a in answers)
        if created.status_code == 201:
            infra = created.json()["id"]
            ctx.wait("the script's run", lambda: settled(api, infra), 60)
            text += everything_about(api, infra)
            drop(api, infra)
        else:
            raise Fail(f"create of a good bundle: {said(created)}")
        shown = found_in(text, needles)
        if shown:
            where = min(text.find(needles[shown[0]]), len(text))
            raise Fail(f"answers show {shown}: …{short(text[max(0, where - 120):where + 80], 220)}")
    with ctx.case("tls/boto3-over-https"):
        asg = server.boto(server.aws_keys())
        expect(asg.describe_auto_scaling_groups()["AutoScalingGroups"] == [], "describe over https")
    with ctx.case("tls/no-server-paths-in-query-api-errors") as result:
        from botocore.exceptions import ClientError

        needles = {"data folder": str(server.home), "probe folder": str(server.folder)}
        messages = []
        for n, user_data in enumerate(("#!/bin/sh\necho {{ nope }}\n", "#!/bin/sh\necho {{ cycler.__init__ }}\n")):
            asg.create_launch_configuration(LaunchConfigurationName=f"p{n}@local", ImageId="debian-12",
                                            InstanceType="small", UserData=user_data)
            try:
                asg.create_auto_scaling_group(AutoScalingGroupName=f"p{n}", LaunchConfigurationName=f"p{n}@local",
                                              MinSize=0, MaxSize=1, DesiredCapacity=0, AvailabilityZones=["local"])
                messages.append("(accepted)")
            except ClientError as exc:
                messages.append(str(exc.response.get("Error", {}).get("Message")))
        result.info["messages"] = len(messages)
        shown = found_in("\n".join(messages), needles)
        expect(not shown, f"an AWS error message shows the server's {shown}: {short(messages[0], 200)}")


# --------------------------------------------------------------------------------------------------------
# 10. a script that exits 1 costs its fleet, never the manager

EXIT_CHECKS = ["exit1/server-keeps-answering", "exit1/healthz-200", "exit1/next-fleet-made",
               "exit1/manager-rounds-go-on", "exit1/after-a-restart-too"]


@scenario("exit1", EXIT_CHECKS, deadline=180)
def exit_one(ctx: Ctx) -> None:
    server = ctx.serve("exit1")
    token, _ = server.token()
    api = server.api(token)
    bad = api.post("/v1/infrastructures", headers=YAML,
                   content=spec("bad", {"count": 1, "scripts": [{"name": "run.sh", "content": "echo broken; exit 1"}]}))
    bad2 = api.post("/v1/infrastructures", headers=YAML,
                    content=spec("bad-boot", {"count": 1, "user_data": "#!/bin/sh\nexit 1\n"}))
    if bad.status_code != 201:
        raise Fail(f"setup: {said(bad)}")
    bad_id = bad.json()["id"]

    def failed_some() -> bool:
        events = api.get(f"/v1/infrastructures/{bad_id}/events", headers={"Accept": "application/json"}).json()
        nodes = api.get(f"/v1/infrastructures/{bad_id}/nodes?all=true").json()
        return sum(e["kind"] == "error" for e in events) >= 2 or any(n["state"] == "failed" for n in nodes)

    with contextlib.suppress(Fail):
        ctx.wait("the bad fleet's failure", failed_some, 30)
    time.sleep(3)
    with ctx.case("exit1/server-keeps-answering") as result:
        answer = api.get("/v1/infrastructures")
        result.info["bad_boot"] = bad2.status_code
        expect(failed_some(), "the bad fleet's script never failed (no error event, no failed node): nothing was shown")
        expect(answer.status_code == 200, f"GET /v1/infrastructures: {said(answer)}")
    with ctx.case("exit1/healthz-200"):
        health = httpx.get(f"{server.url}/healthz", timeout=10)
        expect(health.status_code == 200, f"/healthz: {said(health)}")
    with ctx.case("exit1/next-fleet-made") as result:
        good = api.post("/v1/infrastructures", headers=YAML,
                        content=spec("good", {"count": 1, "scripts": [{"name": "run.sh", "content": "echo fine"}]}))
        expect(good.status_code == 201, f"create: {said(good)}")
        started = time.monotonic()
        ctx.wait("the good fleet's node ready", lambda: ready(api, "good") == ["good-web-1"], 90)
        result.info["seconds"] = round(time.monotonic() - started, 1)
    with ctx.case("exit1/manager-rounds-go-on") as result:
        first = httpx.get(f"{server.url}/healthz", timeout=10).json()
        rounds = (first.get("manager") or {}).get("rounds")
        expect(isinstance(rounds, int), f"/healthz says nothing of the manager's rounds: {short(first)}")
        assert isinstance(rounds, int)
        ctx.wait("the manager's next rounds",
                 lambda: httpx.get(f"{server.url}/healthz", timeout=10).json()["manager"]["rounds"] >= rounds + 2, 20)
        expect(server.alive(), "serve exited")
        expect("Traceback" not in server.log_tail(10**6), f"the serve log has a traceback: "
                                                           f"{short(server.log_tail(400), 400)}")
    with ctx.case("exit1/after-a-restart-too") as result:  # the same bad fleet, met again by a new manager
        server.stop()
        server.start()
        api = server.api(token)
        time.sleep(4)
        health = httpx.get(f"{server.url}/healthz", timeout=10)
        expect(health.status_code == 200, f"/healthz after the restart: {said(health)}")
        more = api.post("/v1/infrastructures", headers=YAML,
                        content=spec("after", {"count": 1, "scripts": [{"name": "run.sh", "content": "echo fine"}]}))
        expect(more.status_code == 201, f"create: {said(more)}")
        started = time.monotonic()
        ctx.wait("a fleet made after the restart", lambda: ready(api, "after") == ["after-web-1"], 90)
        result.info["seconds"] = round(time.monotonic() - started, 1)
        health = httpx.get(f"{server.url}/healthz", timeout=10)
        expect(health.status_code == 200, f"/healthz: {said(health)}")


# --------------------------------------------------------------------------------------------------------
# 11. a slow health URL costs its own fleet


class Trickle:
    """An HTTP server on 127.0.0.1 that answers one byte a second and never ends its headers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.done = threading.Event()
        self.open = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.trickle, args=(conn,), daemon=True).start()

    def trickle(self, conn: socket.socket) -> None:
        with self.lock:
            self.open += 1
        answer = itertools.chain(b"HTTP/1.1 200 OK\r\nX-Slowly: ", itertools.repeat(ord("a")))
        try:
            with conn:
                while not self.done.is_set():
                    readable, _, _ = select.select([conn], [], [], 1.0)
                    if readable and not conn.recv(4096):
                        return
                    conn.sendall(bytes([next(answer)]))
        except OSError:
            pass
        finally:
            with self.lock:
                self.open -= 1

    def close(self) -> None:
        self.done.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


SLOW_CHECKS = ["slow-health/probe-has-a-deadline", "slow-health/other-fleet-healed"]


@scenario("slow-health", SLOW_CHECKS, deadline=200)
def slow_health(ctx: Ctx) -> None:
    trickle = Trickle()
    ctx.probe.cleanups.append(trickle.close)
    try:
        server = ctx.serve("slow")
        token, _ = server.token()
        api = server.api(token)
        slow = {"ssh": False, "urls": [trickle.url], "interval": "1s", "grace": "0s", "unhealthy_after": 1000}
        for name, group in (("slow", {"count": 1, "health": {**slow, "timeout": "60s"}}),
                            ("short", {"count": 1, "health": {**slow, "timeout": "3s"}}),
                            ("quick", {"count": 1, "scripts": [{"name": "s.sh", "content": "echo up"}],
                                       "health": {"interval": "1s", "grace": "0s", "timeout": "2s",
                                                  "unhealthy_after": 2}})):
            made = api.post("/v1/infrastructures", content=spec(name, group), headers=YAML)
            if made.status_code != 201:
                raise Fail(f"setup {name}: {said(made)}")
        for name in ("slow", "short", "quick"):
            ctx.wait(f"{name} ready", lambda name=name: ready(api, name) == [f"{name}-web-1"], 90)
        ctx.wait("a probe hanging on the trickling URL", lambda: trickle.open > 0, 30)
        with ctx.case("slow-health/probe-has-a-deadline") as result:
            started = time.monotonic()

            def checked() -> Any:
                node = api.get("/v1/infrastructures/short/nodes/short-web-1").json()
                last = node.get("last_check") or ""
                return last and not last.startswith("ok") and last
            last = ctx.wait("the 3s probe's verdict on short-web-1", checked, 40)
            result.info.update(last_check=short(last, 80), seconds=round(time.monotonic() - started, 1))
        with ctx.case("slow-health/other-fleet-healed") as result:
            hanging = trickle.open
            os.kill(server.sshd_pid("quick-web-1"), signal.SIGKILL)
            killed = time.monotonic()
            with contextlib.suppress(Fail):
                ctx.wait("quick-web-1 replaced",
                         lambda: (r := ready(api, "quick")) and "quick-web-1" not in r and r, 60, every=0.2)
            took = time.monotonic() - killed
            now = ready(api, "quick")
            result.info.update(heal_seconds=round(took, 1), ready=now, slow_probes_open=f"{hanging}→{trickle.open}")
            expect(hanging, "no slow probe was hanging when the node was killed: nothing was shown")
            expect(now and "quick-web-1" not in now, f"not healed within {took:.0f}s (ready: {now})")
            expect(took <= 25, f"healed only after {took:.1f}s (the slow fleet's probe times out after 60s)")
    finally:
        trickle.close()


# --------------------------------------------------------------------------------------------------------
# 12. PostgreSQL restarts


class Postgres:
    """A throw-away cluster in the scratch folder, run as the ``postgres`` user when we are root."""

    def __init__(self, scratch: Path) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="pg-", dir=scratch))
        self.folder.chmod(0o755)
        scratch.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data, self.port = self.folder / "data", free_port()

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [*(["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []), *argv]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    def init(self) -> Postgres:
        made = self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                         "--no-sync", "-E", "UTF8")
        if made.returncode != 0:
            raise RuntimeError(f"initdb: {short(made.stderr, 300)}")
        self.start()
        return self

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.folder} "
                   "-c fsync=off -c max_connections=100")
        done = self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                         str(self.folder / "log"), "-w", "start")
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start: {short(done.stderr, 300)}")

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE probe")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/probe"


DB_CHECKS = ["db/v1-503-retry-after", "db/occopus-503", "db/query-api-503", "db/ui-not-500", "db/healthz-503",
             "db/kept-connection-answers", "db/answers-again", "db/healthz-200-again", "db/log-without-tracebacks",
             "db/killed-node-replaced"]


@scenario("db", DB_CHECKS, deadline=240)
def database(ctx: Ctx) -> None:
    if not (PG_BIN / "initdb").exists():
        ctx.skipped = f"no {PG_BIN / 'initdb'}: the database cases are not run"
        return
    pg = Postgres(ctx.probe.scratch).init()
    ctx.probe.cleanups.append(pg.stop)
    try:
        server = ctx.serve("db", db=pg.url())
        token, _ = server.token()
        keys = server.aws_keys()
        api = server.api(token)
        browser = ui_login(server, token)
        made = api.post("/v1/infrastructures", headers=YAML, content=spec("kept", {
            "count": 1, "health": {"interval": "0.5s", "grace": "0s", "timeout": "2s", "unhealthy_after": 2}}))
        if made.status_code != 201:
            raise Fail(f"setup: {said(made)}")
        ctx.wait("kept-web-1 ready", lambda: ready(api, "kept") == ["kept-web-1"], 90)
        pg.stop()
        down_at = time.monotonic()

        def fresh(path: str) -> httpx.Response:  # a connection of its own: no keep-alive race in what is seen
            return httpx.get(server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)

        try:
            time.sleep(1)
            with ctx.case("db/v1-503-retry-after") as result:
                answer = fresh("/v1/infrastructures")
                result.info["status"] = answer.status_code
                expect(answer.status_code == 503, f"answered {said(answer)}")
                expect(answer.headers.get("Retry-After", "").isdigit(),
                       f"Retry-After: {answer.headers.get('Retry-After')!r}")
            with ctx.case("db/occopus-503") as result:
                answer = fresh("/infrastructures/")
                result.info["status"] = answer.status_code
                expect(answer.status_code == 503, f"answered {said(answer)}")
            with ctx.case("db/query-api-503") as result:
                error = aws_error(server.boto(keys).describe_auto_scaling_groups)
                result.info["error"] = error
                expect(error is not None and error[1] == 503, f"answered {error}")
            with ctx.case("db/ui-not-500") as result:
                answer = browser.get("/ui")
                result.info["status"] = answer.status_code
                expect(answer.status_code == 503, f"answered {said(answer, 120)}")
            with ctx.case("db/healthz-503"):
                health = httpx.get(f"{server.url}/healthz", timeout=10)
                expect(health.status_code == 503, f"/healthz: {said(health)}")
            with ctx.case("db/kept-connection-answers") as result:  # what a keep-alive client (boto, httpx) sees
                seen = []
                with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                                  timeout=30) as kept:
                    for path in ("/v1/infrastructures", "/infrastructures/", "/v1/infrastructures/kept",
                                 "/infrastructures/", "/v1/infrastructures", "/v1/infrastructures/kept/nodes"):
                        try:
                            seen.append(str(kept.get(path).status_code))
                        except httpx.HTTPError as exc:
                            seen.append(type(exc).__name__)
                result.info["seen"] = seen
                expect(all(code == "503" for code in seen), f"six requests on one connection: {seen}")
            time.sleep(max(0.0, 5 - (time.monotonic() - down_at)))
        finally:
            pg.start()
        with ctx.case("db/answers-again") as result:
            back = time.monotonic()
            ctx.wait("answers once the database is back", lambda: api.get("/v1/infrastructures").status_code == 200, 60)
            result.info["seconds"] = round(time.monotonic() - back, 1)
        with ctx.case("db/healthz-200-again") as result:
            ctx.wait("/healthz 200", lambda: httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200, 90)
        with ctx.case("db/log-without-tracebacks") as result:
            log = server.log_tail(10**7)
            result.info["tracebacks"] = log.count("Traceback")
            expect("Traceback" not in log, f"the serve log has {log.count('Traceback')} tracebacks "
                                           f"({log.count('Exception in ASGI application')} 'Exception in ASGI "
                                           "application') for an outage it answered 503 to")
        with ctx.case("db/killed-node-replaced") as result:
            expect(server.alive(), f"serve exited: {short(server.log_tail(300), 300)}")
            os.kill(server.sshd_pid("kept-web-1"), signal.SIGKILL)
            killed = time.monotonic()
            ctx.wait("kept-web-1 replaced", lambda: (r := ready(api, "kept")) and "kept-web-1" not in r, 90)
            result.info["heal_seconds"] = round(time.monotonic() - killed, 1)
    finally:
        for server in ctx.servers:
            server.stop()
            server.clean_nodes()
        pg.stop()


# --------------------------------------------------------------------------------------------------------
# 13. kill -9 of serve right after an accepted request

KILL_CHECKS = ["kill9/create-then-kill", "kill9/retried-post-not-409-forever", "kill9/create-attach-false-then-kill",
               "kill9/scale-plus-2-then-kill", "kill9/create-attach-false-no-kill"]


def fleet(api: httpx.Client, ref: str) -> str:
    """One line on an infrastructure: its state and its nodes' (for what a case saw)."""
    try:
        infra = api.get(f"/v1/infrastructures/{ref}").json()
        nodes = api.get(f"/v1/infrastructures/{ref}/nodes?all=true").json()
        events = api.get(f"/v1/infrastructures/{ref}/events", headers={"Accept": "application/json"}).json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"{ref}: {exc}"
    told = [f"{e['kind']}: {short(e['message'], 90)}" for e in events if e["kind"] not in ("pass", "sizes")][-3:]
    return (f"{ref} {infra.get('state')} attached={infra.get('attached')}, nodes "
            f"{[(n['name'], n['state']) for n in nodes]}, last events {told}")


@scenario("kill9", KILL_CHECKS, deadline=240)
def kill_nine(ctx: Ctx) -> None:
    server = ctx.serve("kill9")
    token, _ = server.token()
    one = {"count": 1, "scripts": [{"name": "s.sh", "content": "echo made"}]}
    api = server.api(token)
    made = api.post("/v1/infrastructures", content=spec("grows", {**one, "max": 5}), headers=YAML)
    if made.status_code != 201:
        raise Fail(f"setup: {said(made)}")
    ctx.wait("grows ready", lambda: ready(api, "grows") == ["grows-web-1"], 90)
    # the control: ?attach=false with no kill right after it (given 20 s before the kills begin)
    plain = api.post("/v1/infrastructures?attach=false", content=spec("detached", one), headers=YAML)
    posted = time.monotonic()
    control: dict[str, float] = {}
    with contextlib.suppress(Fail):
        ctx.wait("the control made", lambda: len(ready(api, "detached")) == 1, 20)
        control["seconds"] = round(time.monotonic() - posted, 1)
    answers: dict[str, str] = {}
    # each request answered, then serve killed at once (SIGKILL), and started again on the same data folder
    for label, path, body in (("attached", "/v1/infrastructures", spec("killed", one)),
                              ("detached", "/v1/infrastructures?attach=false", spec("killed-detached", one)),
                              ("scale", "/v1/infrastructures/grows/groups/web/scale", json.dumps({"change": "+2"}))):
        answer = server.api(token).post(path, content=body,
                                        headers={"Content-Type": "application/json" if label == "scale" else
                                                 "application/yaml"})
        server.kill9()
        answers[label] = said(answer, 120)
        server.start()
    restarted = time.monotonic()
    api = server.api(token)
    # a node whose deploy the kill cut may be replaced (…-web-2): what counts is the ready count
    goals = {"killed": lambda: len(ready(api, "killed")) == 1,
             "killed-detached": lambda: len(ready(api, "killed-detached")) == 1,
             "grows": lambda: len(ready(api, "grows")) == 3,
             "detached": lambda: len(ready(api, "detached")) == 1}
    reached: dict[str, float] = {}

    def all_reached() -> bool:  # one wait for the four (each has 120 s from the restart)
        for name, goal in goals.items():
            if name not in reached and goal():
                reached[name] = round(time.monotonic() - restarted, 1)
        return len(reached) == len(goals)

    with contextlib.suppress(Fail):
        ctx.wait("every accepted request carried out", all_reached, 120, every=0.5)

    def carried(name: str, result: Result) -> None:
        if name in reached:
            result.info["seconds_after_restart"] = reached[name]
        else:
            raise Fail(f"not made within 120s of the restart: {fleet(api, name)}")

    with ctx.case("kill9/create-then-kill") as result:
        expect(answers["attached"].startswith("201"), f"the POST: {answers['attached']}")
        carried("killed", result)
    with ctx.case("kill9/retried-post-not-409-forever") as result:
        # the same spec again: 409 is right only while (or once) the first one is made; else it must be 201
        answer = api.post("/v1/infrastructures", content=spec("killed", one), headers=YAML)
        result.info["status"] = answer.status_code
        expect(answer.status_code in (201, 409), f"answered {said(answer)}")
        expect(answer.status_code == 201 or "killed" in reached, f"409 while nothing is made: {fleet(api, 'killed')}")
    with ctx.case("kill9/create-attach-false-then-kill") as result:
        expect(answers["detached"].startswith("201"), f"the POST: {answers['detached']}")
        carried("killed-detached", result)
    with ctx.case("kill9/scale-plus-2-then-kill") as result:
        expect(answers["scale"].startswith("202"), f"the scale: {answers['scale']}")
        carried("grows", result)
    with ctx.case("kill9/create-attach-false-no-kill") as result:  # the same without a kill right after it
        expect(plain.status_code == 201, f"the POST: {said(plain)}")
        if control:
            result.info["seconds_before_the_kills"] = control["seconds"]
        else:
            carried("detached", result)


# --------------------------------------------------------------------------------------------------------
# 15. bounds (a server of its own: a size that is stored would be made)

BOUND_CHECKS = ["bounds/native-scale-eq-999999999999", "bounds/native-scale-plus-999999999999",
                "bounds/native-scale-eq-20000", "bounds/native-scale-eq-6", "bounds/occopus-scaleto-999999999999",
                "bounds/occopus-scaleto-6", "bounds/create-max-over-ceiling", "bounds/plan-count-over-ceiling",
                "bounds/asg-update-maxsize-1e12", "bounds/asg-create-maxsize-1e12", "bounds/asg-set-desired-1e12",
                "bounds/asg-update-maxsize-20000", "bounds/asg-update-maxsize-6", "bounds/nothing-stored-manager-alive"]


@scenario("bounds", BOUND_CHECKS, deadline=150)
def bounds(ctx: Ctx) -> None:
    server = ctx.serve("bounds", config="max_group_size: 5\n")  # a buggy answer makes 6 nodes at most
    token, _ = server.token()
    api = server.api(token)
    made = api.post("/v1/infrastructures", content=spec("unbounded", {"count": 0}), headers=YAML)
    if made.status_code != 201:
        raise Fail(f"setup: {said(made)}")
    infra = made.json()["id"]

    def undo() -> None:  # a size that was stored: back to 0 before the manager makes it (again while busy)
        with contextlib.suppress(Exception):
            for _ in range(20):
                if api.post(f"/v1/infrastructures/{infra}/groups/web/scale", json={"change": "=0"}).status_code < 300:
                    break
                time.sleep(0.25)

    # refused: 400, or 422 (the body's schema caps the text's length: a refusal with its reason as well)
    for name, change in (("bounds/native-scale-eq-999999999999", "=999999999999"),
                         ("bounds/native-scale-plus-999999999999", "+999999999999"),
                         ("bounds/native-scale-eq-20000", "=20000"), ("bounds/native-scale-eq-6", "=6")):
        with ctx.case(name) as result:
            answer = api.post(f"/v1/infrastructures/{infra}/groups/web/scale", json={"change": change})
            result.info["status"] = answer.status_code
            if answer.status_code < 300:
                undo()
            expect(answer.status_code in (400, 422), f"answered {said(answer)}")
    for name, count in (("bounds/occopus-scaleto-999999999999", "999999999999"), ("bounds/occopus-scaleto-6", "6")):
        with ctx.case(name) as result:
            answer = api.post(f"/infrastructures/{infra}/scaleto/web/{count}")
            result.info["status"] = answer.status_code
            if answer.status_code < 300:
                undo()
            expect(answer.status_code in (400, 422), f"answered {said(answer)}")
    with ctx.case("bounds/create-max-over-ceiling") as result:  # count 0: nothing is made if it is taken
        answer = api.post("/v1/infrastructures?attach=false", content=spec("wide", {"count": 0, "max": 6}),
                          headers=YAML)
        result.info["status"] = answer.status_code
        drop(api, made_id("create", answer))
        expect(answer.status_code == 400, f"a group of max 6 (max_group_size: 5): {said(answer)}")
    with ctx.case("bounds/plan-count-over-ceiling") as result:
        answer = api.post("/v1/plan", content=spec("huge", {"count": 6}), headers=YAML)
        result.info["status"] = answer.status_code
        expect(answer.status_code == 400, f"a plan of 6 nodes (max_group_size: 5): {said(answer)}")
    asg = server.boto(server.aws_keys())
    asg.create_launch_configuration(LaunchConfigurationName="b@local", ImageId="debian-12", InstanceType="small")
    asg.create_auto_scaling_group(AutoScalingGroupName="b", LaunchConfigurationName="b@local", MinSize=0, MaxSize=1,
                                  DesiredCapacity=0, AvailabilityZones=["local"])

    def aws_case(name: str, call: Callable[..., Any], **kwargs: Any) -> None:
        with ctx.case(name) as result:
            error = aws_error(call, **kwargs)
            result.info["error"] = error
            if error is None:
                with contextlib.suppress(Exception):
                    asg.update_auto_scaling_group(AutoScalingGroupName="b", MinSize=0, MaxSize=1, DesiredCapacity=0)
            expect(error is not None and error[0] == "ValidationError" and error[1] == 400, f"answered {error}")

    aws_case("bounds/asg-update-maxsize-1e12", asg.update_auto_scaling_group, AutoScalingGroupName="b",
             MaxSize=10**12)
    aws_case("bounds/asg-create-maxsize-1e12", asg.create_auto_scaling_group, AutoScalingGroupName="b2",
             LaunchConfigurationName="b@local", MinSize=0, MaxSize=10**12, DesiredCapacity=0,
             AvailabilityZones=["local"])
    aws_case("bounds/asg-set-desired-1e12", asg.set_desired_capacity, AutoScalingGroupName="b",
             DesiredCapacity=10**12)
    aws_case("bounds/asg-update-maxsize-20000", asg.update_auto_scaling_group, AutoScalingGroupName="b",
             MaxSize=20000)
    aws_case("bounds/asg-update-maxsize-6", asg.update_auto_scaling_group, AutoScalingGroupName="b", MaxSize=6)
    with ctx.case("bounds/nothing-stored-manager-alive") as result:
        time.sleep(3)  # a few of the manager's passes over what was (or was not) stored
        groups = api.get(f"/v1/infrastructures/{infra}/groups").json()
        described = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["b"])["AutoScalingGroups"][0]
        health = httpx.get(f"{server.url}/healthz", timeout=10)
        result.info.update(native=[(g.get("name"), g.get("desired", g.get("count"))) for g in groups],
                           asg=(described["MinSize"], described["MaxSize"], described["DesiredCapacity"]))
        expect(described["MaxSize"] <= 5 and described["DesiredCapacity"] == 0, f"stored: {result.info['asg']}")
        expect(all(g.get("desired", g.get("count")) == 0 for g in groups), f"stored: {result.info['native']}")
        expect(health.status_code == 200, f"/healthz {said(health)}")
        expect(server.alive(), "serve exited")


# --------------------------------------------------------------------------------------------------------
# 16. refused Auto Scaling calls write nothing; 17. what XML cannot carry is refused at input

REFUSED_CHECKS = ["asg-refused/update-min-above-max", "asg-refused/update-desired-out-of-range",
                  "asg-refused/tags-clouds-unoffered", "asg-refused/tags-clouds-garbage",
                  "asg-refused/tags-batch-with-one-bad", "asg-refused/good-update-after"]


@scenario("asg-refused", REFUSED_CHECKS, deadline=90)
def asg_refused(ctx: Ctx) -> None:
    server, _ = ctx.probe.main()
    asg = server.boto(server.aws_keys())
    asg.create_launch_configuration(LaunchConfigurationName="r16@local", ImageId="debian-12", InstanceType="small")
    asg.create_auto_scaling_group(AutoScalingGroupName="r16", LaunchConfigurationName="r16@local", MinSize=0,
                                  MaxSize=2, DesiredCapacity=0, AvailabilityZones=["local"],
                                  Tags=[{"Key": "keep", "Value": "old", "PropagateAtLaunch": False,
                                         "ResourceId": "r16", "ResourceType": "auto-scaling-group"}])

    def shape() -> tuple[int, int, int]:
        g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["r16"])["AutoScalingGroups"][0]
        return g["MinSize"], g["MaxSize"], g["DesiredCapacity"]

    def tags() -> dict[str, str]:
        found = asg.describe_tags(Filters=[{"Name": "auto-scaling-group", "Values": ["r16"]}])["Tags"]
        return {t["Key"]: t["Value"] for t in found}

    def tag(key: str, value: str) -> dict[str, Any]:
        return {"Key": key, "Value": value, "PropagateAtLaunch": False, "ResourceId": "r16",
                "ResourceType": "auto-scaling-group"}

    try:
        before_tags = tags()
        for name, kwargs in (("asg-refused/update-min-above-max", {"MinSize": 5, "MaxSize": 3}),
                             ("asg-refused/update-desired-out-of-range", {"DesiredCapacity": 9})):
            with ctx.case(name) as result:
                error = aws_error(asg.update_auto_scaling_group, AutoScalingGroupName="r16", **kwargs)
                result.info["error"] = error
                expect(error and error[0] == "ValidationError", f"answered {error}")
                expect(shape() == (0, 2, 0), f"Describe after the refusal: (min, max, desired) = {shape()}")
        for name, batch in (("asg-refused/tags-clouds-unoffered", [tag("clouds", "nowhere:3")]),
                            ("asg-refused/tags-clouds-garbage", [tag("clouds", "garbage!")]),
                            ("asg-refused/tags-batch-with-one-bad", [tag("fresh", "v"), tag("x" * 200, "v")])):
            with ctx.case(name) as result:
                error = aws_error(asg.create_or_update_tags, Tags=batch)
                result.info["error"] = error
                expect(error and error[0] == "ValidationError", f"answered {error}")
                expect(tags() == before_tags, f"tags after the refusal: {tags()} (before: {before_tags})")
                expect(shape() == (0, 2, 0), f"Describe after the refusal: {shape()}")
        with ctx.case("asg-refused/good-update-after"):
            asg.update_auto_scaling_group(AutoScalingGroupName="r16", MaxSize=3)
            expect(shape() == (0, 3, 0), f"after a good update: {shape()}")
            asg.create_or_update_tags(Tags=[tag("keep", "new")])
            expect(tags().get("keep") == "new", f"after a good tag update: {tags()}")
    finally:
        with contextlib.suppress(Exception):
            asg.delete_auto_scaling_group(AutoScalingGroupName="r16", ForceDelete=True)


XML_VARIANTS = {
    "group-name-uffff": ("group", "g\uffff"),
    "group-name-ufffe": ("group", "g\ufffe"),
    "group-name-x01": ("group", "g\x01"),
    "lc-name-x01": ("lc", "lc\x01@local"),
    "lc-name-uffff": ("lc", "lc\uffff@local"),
    "tag-value-x01": ("tag-value", "a\x01b"),
    "tag-value-x00": ("tag-value", "a\x00b"),
    "tag-key-x1f": ("tag-key", "k\x1f"),
    "tag-value-uffff": ("tag-value", "v\uffff"),
    "create-with-tag-x01": ("create-tag", "a\x01b"),
}
XML_CHECKS = [f"xml/{name}" for name in XML_VARIANTS] + ["xml/describes-still-parse"]


@scenario("xml", XML_CHECKS, deadline=90)
def xml_input(ctx: Ctx) -> None:
    server, _ = ctx.probe.main()
    user = f"xml{TAG}"
    server.cli("user", "add", user)
    asg = server.boto(server.aws_keys(user))
    asg.create_launch_configuration(LaunchConfigurationName="x@local", ImageId="debian-12", InstanceType="small")
    asg.create_auto_scaling_group(AutoScalingGroupName="x", LaunchConfigurationName="x@local", MinSize=0, MaxSize=1,
                                  DesiredCapacity=0, AvailabilityZones=["local"])

    def describes() -> str | None:
        """None when every Describe of this user parses; else what failed."""
        for call in (asg.describe_auto_scaling_groups, asg.describe_tags, asg.describe_launch_configurations,
                     asg.describe_auto_scaling_instances):
            try:
                call()
            except Exception as exc:
                return f"{call.__name__}: {type(exc).__name__}: {short(exc, 160)}"
        return None

    def tag(key: str, value: str, group: str = "x") -> dict[str, Any]:
        return {"Key": key, "Value": value, "PropagateAtLaunch": False, "ResourceId": group,
                "ResourceType": "auto-scaling-group"}

    for n, (name, (kind, text)) in enumerate(XML_VARIANTS.items()):
        with ctx.case(f"xml/{name}") as result:
            if kind == "group":
                error = aws_error(asg.create_auto_scaling_group, AutoScalingGroupName=text,
                                  LaunchConfigurationName="x@local", MinSize=0, MaxSize=1, DesiredCapacity=0,
                                  AvailabilityZones=["local"])
            elif kind == "lc":
                error = aws_error(asg.create_launch_configuration, LaunchConfigurationName=text, ImageId="debian-12",
                                  InstanceType="small")
            elif kind == "tag-value":
                error = aws_error(asg.create_or_update_tags, Tags=[tag("k", text)])
            elif kind == "tag-key":
                error = aws_error(asg.create_or_update_tags, Tags=[tag(text, "v")])
            else:
                error = aws_error(asg.create_auto_scaling_group, AutoScalingGroupName=f"xt{n}",
                                  LaunchConfigurationName="x@local", MinSize=0, MaxSize=1, DesiredCapacity=0,
                                  AvailabilityZones=["local"], Tags=[tag("k", text, f"xt{n}")])
            result.info["error"] = error
            broken = describes()
            expect(broken is None, f"accepted ({error}), and now {broken}")
            expect(error and error[0] == "ValidationError" and error[1] == 400, f"answered {error}")
    with ctx.case("xml/describes-still-parse"):
        broken = describes()
        expect(broken is None, broken or "")


# --------------------------------------------------------------------------------------------------------
# 18. odd numbers and odd text: 4xx, never a 500

NO500_CHECKS = ["no500/query-tags-member-index-5000-digits", "no500/query-tags-member-index-superscript",
                "no500/query-names-member-index-superscript", "no500/query-names-member-index-5000-digits",
                "no500/query-desired-capacity-superscript", "no500/query-maxsize-5000-digits",
                "no500/query-invalid-utf8", "no500/query-lone-surrogate-utf8",
                "no500/last-event-id-superscript", "no500/last-event-id-superscript-utf8",
                "no500/last-event-id-5000-digits", "no500/events-after-99999999999999999999",
                "no500/events-after-superscript", "no500/ui-rollback-revision-superscript",
                "no500/ui-rollback-revision-5000-digits", "no500/ui-scale-change-superscript",
                "no500/json-scale-lone-surrogate", "no500/json-scale-victims-lone-surrogate",
                "no500/json-exec-lone-surrogate", "no500/json-invalid-utf8", "no500/json-scale-superscript",
                "no500/json-rollback-revision-superscript", "no500/yaml-spec-lone-surrogate",
                "no500/yaml-script-lone-surrogate", "no500/occopus-scaleto-superscript",
                "no500/occopus-scaleto-5000-digits", "no500/nodes-name-weird"]


@scenario("no500", NO500_CHECKS, deadline=120)
def no_500(ctx: Ctx) -> None:
    server, token = ctx.probe.main()
    api = server.api(token)
    made = api.post("/v1/infrastructures", content=spec("odd", {"count": 0, "min": 0}), headers=YAML)
    if made.status_code != 201:
        raise Fail(f"setup: {said(made)}")
    infra = made.json()["id"]
    keys = server.aws_keys()
    query = f"{server.url}/autoscaling"
    digits = "0" * 4999 + "1"

    def form(action: str, **params: str) -> bytes:
        return urllib.parse.urlencode({"Action": action, "Version": "2011-01-01", **params}).encode()

    def tags_form(index: str) -> bytes:
        return form("CreateOrUpdateTags", **{f"Tags.member.{index}.Key": "k", f"Tags.member.{index}.Value": "v",
                                             f"Tags.member.{index}.ResourceId": "odd",
                                             f"Tags.member.{index}.ResourceType": "auto-scaling-group",
                                             f"Tags.member.{index}.PropagateAtLaunch": "false"})

    def not_500(name: str, send: Callable[[], httpx.Response]) -> None:
        """Refused with a reason: a 4xx (a dashboard form: a 303 back to the page saying it did nothing);
        never a 500, and never taken as some other valid value (a silent 200)."""
        with ctx.case(name) as result:
            answer = send()
            result.info["status"] = answer.status_code
            expect(answer.status_code < 500, f"answered {said(answer)}")
            if answer.status_code == 303:
                message = urllib.parse.unquote(answer.headers.get("location", ""))
                result.info["message"] = short(message.partition("message=")[2], 80)
                expect(not re.search(r"rolling back|→", message), f"acted on it: 303 to {short(message, 160)}")
            else:
                expect(400 <= answer.status_code < 500, f"taken: {said(answer)}")

    not_500("no500/query-tags-member-index-5000-digits", lambda: signed_post(query, tags_form(digits), keys))
    not_500("no500/query-tags-member-index-superscript", lambda: signed_post(query, tags_form("²"), keys))
    not_500("no500/query-names-member-index-superscript", lambda: signed_post(
        query, form("DescribeAutoScalingGroups", **{"AutoScalingGroupNames.member.²": "odd"}), keys))
    not_500("no500/query-names-member-index-5000-digits", lambda: signed_post(
        query, form("DescribeAutoScalingGroups", **{f"AutoScalingGroupNames.member.{digits}": "odd"}), keys))
    not_500("no500/query-desired-capacity-superscript", lambda: signed_post(
        query, form("SetDesiredCapacity", AutoScalingGroupName="odd", DesiredCapacity="²"), keys))
    not_500("no500/query-maxsize-5000-digits", lambda: signed_post(
        query, form("UpdateAutoScalingGroup", AutoScalingGroupName="odd", MaxSize="9" * 5000), keys))
    not_500("no500/query-invalid-utf8", lambda: signed_post(
        query, b"Action=DescribeAutoScalingGroups&Version=2011-01-01&AutoScalingGroupNames.member.1=%FF%FE", keys))
    not_500("no500/query-lone-surrogate-utf8", lambda: signed_post(
        query, b"Action=DescribeAutoScalingGroups&Version=2011-01-01&AutoScalingGroupNames.member.1=%ED%A0%80", keys))
    events = f"/v1/infrastructures/{infra}/events"
    sse = {"Accept": "text/event-stream"}
    not_500("no500/last-event-id-superscript", lambda: api.get(
        events, params={"follow": "false"}, headers={**sse, "Last-Event-ID": b"\xb2"}))  # type: ignore[dict-item,arg-type]
    not_500("no500/last-event-id-superscript-utf8", lambda: api.get(
        events, params={"follow": "false"}, headers={**sse, "Last-Event-ID": b"\xc2\xb2"}))  # type: ignore[dict-item,arg-type]
    not_500("no500/last-event-id-5000-digits", lambda: api.get(
        events, params={"follow": "false"}, headers={**sse, "Last-Event-ID": "9" * 5000}))
    not_500("no500/events-after-99999999999999999999", lambda: api.get(
        events, params={"after": "99999999999999999999"}, headers={"Accept": "application/json"}))
    not_500("no500/events-after-superscript", lambda: api.get(
        events, params={"after": "²"}, headers={"Accept": "application/json"}))
    browser = ui_login(server, token)
    page = f"/ui/infrastructures/{infra}"
    csrf = page_csrf(browser, page)
    not_500("no500/ui-rollback-revision-superscript", lambda: browser.post(
        f"{page}/rollback", data={"csrf": csrf, "revision": "²"}))
    not_500("no500/ui-rollback-revision-5000-digits", lambda: browser.post(
        f"{page}/rollback", data={"csrf": csrf, "revision": "9" * 5000}))
    not_500("no500/ui-scale-change-superscript", lambda: browser.post(
        f"{page}/scale", data={"csrf": csrf, "group": "web", "change": "=²"}))
    scale = f"/v1/infrastructures/{infra}/groups/web/scale"
    as_json = {"Content-Type": "application/json"}
    not_500("no500/json-scale-lone-surrogate", lambda: api.post(scale, content=b'{"change": "\\ud800"}',
                                                                 headers=as_json))
    not_500("no500/json-scale-victims-lone-surrogate", lambda: api.post(
        scale, content=b'{"change": "+0", "victims": ["\\udfff"]}', headers=as_json))
    not_500("no500/json-exec-lone-surrogate", lambda: api.post(
        f"/v1/infrastructures/{infra}/exec", content=b'{"command": "echo \\ud800"}', headers=as_json))
    not_500("no500/json-invalid-utf8", lambda: api.post(scale, content=b'{"change": "\xff\xfe"}', headers=as_json))
    not_500("no500/json-scale-superscript", lambda: api.post(scale, json={"change": "=²"}))
    not_500("no500/json-rollback-revision-superscript", lambda: api.post(
        f"/v1/infrastructures/{infra}/rollback", content='{"revision": "²"}'.encode(), headers=as_json))
    not_500("no500/yaml-spec-lone-surrogate", lambda: api.post(
        "/v1/plan", content=b'name: "\\ud800"\ngroups: {web: {count: 0}}\n', headers=YAML))
    not_500("no500/yaml-script-lone-surrogate", lambda: api.post(
        "/v1/plan", content=b'name: sur\ngroups:\n  web:\n    scripts: [{name: a.sh, content: "echo \\ud800"}]\n',
        headers=YAML))
    not_500("no500/occopus-scaleto-superscript", lambda: api.post(f"/infrastructures/{infra}/scaleto/web/²"))
    not_500("no500/occopus-scaleto-5000-digits", lambda: api.post(f"/infrastructures/{infra}/scaleto/web/{digits}"))
    not_500("no500/nodes-name-weird", lambda: api.get(f"/v1/infrastructures/{infra}/nodes/%ED%A0%80"))
    drop(api, infra)


# --------------------------------------------------------------------------------------------------------
# after all that: the shared server is alive, healthy, and logged no unhandled error

AFTER_CHECKS = ["aftermath/shared-serve-alive-and-healthy", "aftermath/shared-serve-log-without-tracebacks"]


@scenario("aftermath", AFTER_CHECKS, deadline=60)
def aftermath(ctx: Ctx) -> None:
    main = ctx.probe._main
    if main is None:  # nothing ran on the shared server (an --only of others)
        ctx.skipped = "no case used the shared serve"
        return
    with ctx.case("aftermath/shared-serve-alive-and-healthy"):
        expect(main.alive(), f"the shared serve exited: {short(main.log_tail(300), 300)}")
        health = httpx.get(f"{main.url}/healthz", timeout=10)
        expect(health.status_code == 200, f"/healthz: {said(health)}")
    with ctx.case("aftermath/shared-serve-log-without-tracebacks") as result:
        log = main.log_tail(10**8)
        result.info["tracebacks"] = log.count("Traceback")
        first = log.find("Traceback")
        expect(first < 0, f"{log.count('Exception in ASGI application')} 'Exception in ASGI application', "
                          f"{log.count('Traceback')} tracebacks; the first: {short(log[first:first + 600], 600)}")


# --------------------------------------------------------------------------------------------------------
# running it


def run_scenario(probe: Probe, sc: Scenario, wanted: Callable[[str], bool]) -> None:
    ctx = Ctx(probe, sc, wanted)
    failure: list[str] = []

    def body() -> None:
        try:
            sc.run(ctx)
        except Fail as exc:
            failure.append(str(exc))
        except Exception as exc:
            failure.append(f"probe error: {type(exc).__name__}: {short(exc, 300)}")
            if os.environ.get("PROBE_DEBUG"):
                traceback.print_exc()

    print(f"== {sc.name} (deadline {sc.deadline:.0f}s)", flush=True)
    started = time.monotonic()
    worker = threading.Thread(target=body, name=sc.name, daemon=True)
    worker.start()
    worker.join(sc.deadline + 30)
    if worker.is_alive():
        failure.append(f"the scenario overran its deadline of {sc.deadline:.0f}s")
    for server in ctx.servers:  # its own servers: stopped by pid, their nodes terminated
        stopping = time.monotonic()
        with contextlib.suppress(Exception):
            server.stop()
        server.clean_nodes()
        if os.environ.get("PROBE_DEBUG"):
            print(f"   (stopped {server.label} in {time.monotonic() - stopping:.1f}s)", flush=True)
    if ctx.skipped:
        print(f"   skipped: {ctx.skipped}", flush=True)
    for result in ctx.results.values():
        if result.ok is None and not ctx.skipped:
            result.ok = False
            result.seen = f"not reached: {failure[0] if failure else 'the scenario ended early'}"
            probe.report(result, wanted(result.name))
    print(f"   ({time.monotonic() - started:.0f}s)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", metavar="SUBSTRING", help="run the cases whose name contains this")
    parser.add_argument("--json", metavar="FILE", help="write the results here")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args()
    if args.list:
        for sc in SCENARIOS:
            print("\n".join(sc.checks))
        return 0

    only = args.only
    chosen = [sc for sc in SCENARIOS if not only or only in sc.name or any(only in c for c in sc.checks)]
    if chosen and chosen[-1].name != "aftermath":  # always: it looks at the shared serve, if one was used
        chosen.append(next(sc for sc in SCENARIOS if sc.name == "aftermath"))
    if not chosen:
        print(f"no case matches {only!r} (see --list)")
        return 2

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    probe = Probe(args.only)
    print(f"probe of issue #26 · scratch {probe.scratch} · PROBE_SECRET={SECRET}", flush=True)
    started = time.monotonic()
    interrupted = False
    try:
        for sc in chosen:
            run_scenario(probe, sc, lambda name, sc=sc: not only or only in sc.name or only in name
                         or sc.name == "aftermath")
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping the servers", flush=True)
    finally:
        probe.stop_all()
    took = time.monotonic() - started
    results = probe.results
    passed = sum(1 for r in results if r.ok)
    failed = [r for r in results if not r.ok]
    print()
    print(f"{len(results)} cases, {passed} passed, {len(failed)} failed  ({took / 60:.1f} min"
          f"{', interrupted' if interrupted else ''})")
    for r in failed:
        print(f"FAIL {r.name}: {r.seen}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "cases": len(results), "passed": passed, "failed": len(failed), "seconds": round(took, 1),
            "interrupted": interrupted,
            "results": [{"name": r.name, "ok": r.ok, "seen": r.seen, "seconds": r.seconds, "info": r.info}
                        for r in results]}, indent=2, default=str))
    if not os.environ.get("PROBE_KEEP"):
        shutil.rmtree(probe.scratch, ignore_errors=True)
    else:
        print(f"scratch kept: {probe.scratch}")
    return 0 if not failed and not interrupted and results else 1


if __name__ == "__main__":
    sys.exit(main())
