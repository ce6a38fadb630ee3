"""A real `cloudherd serve` for tests: its own process, data folder and port on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from helpers import cli, process_gone, wait_until
from pg_harness import free_port


@dataclass
class Served:
    home: Path
    config: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    args: tuple[str, ...] = ()  # more options of `cloudherd serve` (--tls-self-signed…)
    verify: Any = True  # what httpx checks the server's certificate with, over https

    @property
    def scheme(self) -> str:
        return "https" if any(a.startswith("--tls") for a in self.args) else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CLOUDHERD_HOME": str(self.home)}

    def start(self) -> Served:
        self.log = self.home.parent / f"serve-{self.port}-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cloudherd", "serve", "--config", str(self.config), "--port", str(self.port),
                 *self.args],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(self._answers, timeout=60, what=f"serve on port {self.port} (log: {self.log})")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited {self.process.returncode}: {self.log_text()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2, verify=self._verify()).status_code == 200
        except httpx.HTTPError:
            return False

    def __enter__(self) -> Served:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.terminate_nodes()

    def terminate_nodes(self) -> None:
        """End every local node the server made in its data folder: a node outlives its server (as a machine
        does), and a test's nodes must not outlive the test (their folders go with pytest's temp dirs)."""
        import asyncio

        from cloudherd.providers.local import LocalProvider

        root = self.home / "local"
        if root.is_dir():
            provider = LocalProvider("local", {"root": str(root)})
            asyncio.run(provider.terminate([i.id for i in asyncio.run(provider.list({}))]))

    def stop(self) -> int:
        """SIGTERM, as a supervisor would; returns the exit code (uvicorn re-raises the signal after its
        graceful shutdown, so a clean stop is -15 or 0: the log says whether it stopped cleanly)."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
        wait_until(lambda: process_gone(self.process.pid) if self.process else True, timeout=10, what="serve gone")
        self.process = None
        return code

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log and self.log.exists() else ""

    def cli(self, *args: str) -> Any:
        done = cli(*args, env={"CLOUDHERD_HOME": str(self.home)})
        assert done.returncode == 0, done.stderr
        return done

    def token(self, user: str | None = None) -> str:
        args = ["token", "create", "--json"] + (["--user", user] if user else [])
        return str(json.loads(self.cli(*args).stdout)["token"])

    def aws_keys(self, user: str | None = None) -> dict[str, str]:
        args = ["token", "create", "--aws", "--json"] + (["--user", user] if user else [])
        return dict(json.loads(self.cli(*args).stdout))

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=self._verify())

    def _verify(self) -> Any:
        """The made certificate, once serve has made it (until then, nothing answers anyway)."""
        made = self.home / "server" / "tls" / "cert.pem"
        if self.verify is True and "--tls-self-signed" in self.args:
            import ssl

            return ssl.create_default_context(cafile=str(made)) if made.exists() else False
        return self.verify


def write_config(folder: Path, clouds: dict[str, str], **extra: Any) -> Path:
    lines = ["providers:"] + [f"  {name}: {{type: {kind}}}" for name, kind in clouds.items()]
    lines += [f"{key}: {value}" for key, value in extra.items()]
    path = folder / "server.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def serving(home: Path, folder: Path, clouds: dict[str, str] | None = None, *, args: tuple[str, ...] = (),
            **settings: Any) -> Iterator[Served]:
    """A started `cloudherd serve` on ``home``, its configuration written in ``folder`` (``clouds``: the local
    cloud by default; ``settings``: more keys of server.yml); stopped at the end, and the local nodes it made
    ended.  The one way a ``served`` fixture starts its server."""
    with Served(home, write_config(folder, clouds or {"local": "local"}, **settings), args=args) as running:
        yield running


SPEC = """\
name: {name}
groups:
  web:
    count: 2
    min: 1
    max: 4
    scripts:
      - name: hello.sh
        content: "echo hello from $CLOUDHERD_NODE > greeting.txt"
    health:
      interval: 1s
      grace: 1s
      unhealthy_after: 1
"""


def ready_nodes(api: httpx.Client, infra_id: str) -> list[dict[str, object]]:
    nodes = api.get(f"/v1/infrastructures/{infra_id}/nodes").json()
    return [n for n in nodes if n["state"] == "ready"]


def create(api: httpx.Client, name: str, count: int = 2, spec: str = SPEC) -> str:
    answer = api.post("/v1/infrastructures", content=spec.format(name=name).replace("count: 2", f"count: {count}"),
                      headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 201, answer.text
    infra_id = str(answer.json()["id"])
    wait_until(lambda: len(ready_nodes(api, infra_id)) == count, timeout=120, what=f"{count} ready nodes of {name}")
    return infra_id


def autoscaling_client(served: Served) -> Any:
    """boto3's stock ``autoscaling`` client on ``served``'s Query API, with a fresh AWS-style key of its user."""
    import boto3

    keys = served.aws_keys()
    return boto3.client("autoscaling", endpoint_url=served.url + "/autoscaling", region_name="us-east-1",
                        aws_access_key_id=keys["access_key_id"], aws_secret_access_key=keys["secret_access_key"])


def aws_refusal(call: Any, **kwargs: Any) -> tuple[str, str]:
    """The AWS error code and message a boto3 ``call`` is refused with (it must be)."""
    import pytest
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


@contextlib.contextmanager
def dashboard_session(served: Served, token: str) -> Iterator[httpx.Client]:
    """A logged-in dashboard session: the login form's CSRF token posted with the API token."""
    import re

    with httpx.Client(base_url=served.url, timeout=30) as client:
        found = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui").text)
        assert found, "no CSRF token on the login page"
        assert client.post("/ui/login", data={"token": token, "csrf": found.group(1)}).status_code == 303
        yield client
