"""A PostgreSQL restart is an outage to ride out, not a crash: `serve` answers 503 with Retry-After while the
database is away (JSON on its own routes, AWS XML on the Query API), /healthz says so, and once it is back
the server's manager — and a `manage --all` beside it — carry on and heal.  Its own PostgreSQL, stopped and
started by the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import require_postgres, wait_until
from server_harness import Served, write_config

SPEC = """\
name: {name}
groups:
  web:
    count: 1
    health: {{interval: 0.2s, grace: 0s, timeout: 2s, unhealthy_after: 2}}
"""


@pytest.fixture
def own_postgres() -> Iterator[Any]:
    from pg_harness import start_postgres

    require_postgres()  # its own server: it is stopped and started, which the session's must never be
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


def _sshd_pid(home: Path, node: str) -> int:
    from helpers import node_folders

    return int((node_folders(home)[node] / "sshd.pid").read_text().split()[0])


def _ready(api: httpx.Client, infra_id: str) -> set[str]:
    answer = api.get(f"/v1/infrastructures/{infra_id}/nodes")
    return {n["name"] for n in answer.json() if n["state"] == "ready"} if answer.status_code == 200 else set()


def _query_api(served: Served, keys: dict[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("autoscaling", endpoint_url=served.url, region_name="us-east-1",
                        aws_access_key_id=keys["access_key_id"], aws_secret_access_key=keys["secret_access_key"],
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def test_serve_and_manage_ride_out_a_database_restart(own_postgres: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    monkeypatch.setenv("CLOUDHERD_DB", own_postgres.fresh_database())
    home = tmp_path / "home"
    with Served(home, write_config(tmp_path, {"local": "local"}, interval=0.5)) as served:
        api = served.client(served.token())
        autoscaling = _query_api(served, served.aws_keys())
        infra_id = api.post("/v1/infrastructures", content=SPEC.format(name="served")).json()["id"]
        wait_until(lambda: _ready(api, infra_id) == {"served-web-1"}, timeout=120, what="the served node")
        manage = subprocess.Popen([sys.executable, "-m", "cloudherd", "manage", "--all", "--interval", "0.5"],
                                  env={**os.environ, "CLOUDHERD_HOME": str(home)}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        try:
            own_postgres.pause()
            # one kept-alive connection: each answer a 503, none a dropped connection (uvicorn drops it when an
            # error reaches it after the answer was sent)
            answers = [api.get("/v1/infrastructures") for _ in range(4)]
            assert [a.status_code for a in answers] == [503] * 4, answers[0].text
            answer = answers[-1]
            assert answer.headers["Retry-After"].isdigit() and "database" in answer.json()["detail"]
            assert httpx.get(f"{served.url}/healthz").status_code == 503
            with pytest.raises(ClientError) as refused:
                autoscaling.describe_auto_scaling_groups()
            assert refused.value.response["Error"]["Code"] == "ServiceUnavailable"
            assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            own_postgres.resume()
            wait_until(lambda: api.get("/v1/infrastructures").status_code == 200, timeout=60,
                       what="answers again once the database is back")
            assert manage.poll() is None, manage.stderr.read() if manage.stderr else ""
            os.kill(_sshd_pid(home, "served-web-1"), signal.SIGKILL)
            wait_until(lambda: _ready(api, infra_id) == {"served-web-2"}, timeout=180,
                       what="the crashed node replaced after the outage")
            wait_until(lambda: httpx.get(f"{served.url}/healthz").status_code == 200, timeout=120,
                       what="/healthz ok again")
            assert manage.poll() is None
        finally:
            manage.send_signal(signal.SIGTERM)
            _, err = manage.communicate(timeout=90)
        assert "Traceback" not in err and "internal error" not in err, err
        assert served.log is not None
        whole_log = served.log.read_text(errors="replace")
        assert "Traceback" not in whole_log and "Exception in ASGI" not in whole_log, whole_log[-3000:]
