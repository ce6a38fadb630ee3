"""Debian's real `prometheus` scraping a real `cloudherd serve` while its fleet heals and scales: once with a token
of the server (Prometheus' ``authorization: {credentials: …}``) on the API's /metrics, once on the server file's
``metrics_listen`` (no token); its HTTP API answers the series and values expected.  And `cloudherd manage
--metrics-listen` serves the same names without a server.

Skipped where prometheus is not installed (`make prometheus`), failed instead under CI=true."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from helpers import cli, process_gone, require, wait_until, write_spec
from pg_harness import free_port
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from server_harness import Served, create, ready_nodes, serving

PROMETHEUS = shutil.which("prometheus") or next((p for p in ("/usr/bin/prometheus",) if os.access(p, os.X_OK)), None)
WEB = "web"
NAME = "watched"


@dataclass
class Prometheus:
    """A `prometheus` process of the test's own: its config, its storage and its port in the test's folder."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """The instant vector ``expr`` answers now (labels, value), as Prometheus' HTTP API gives it."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        return [(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]

    def value(self, expr: str) -> float | None:
        """The one value ``expr`` answers (None while it answers none)."""
        found = self.query(expr)
        assert len(found) <= 1, (expr, found)
        return found[0][1] if found else None

    def holds(self, expr: str) -> bool:
        """``expr`` (a comparison, filtering) answers at least one series now."""
        return bool(self.query(expr))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def require_prometheus() -> str:
    require(None if PROMETHEUS else "Debian's prometheus is not installed (make prometheus)",
            "the Prometheus scrape tests")
    assert PROMETHEUS is not None
    return PROMETHEUS


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def served(home: Path, tmp_path: Path, metrics_port: int) -> Iterator[Served]:
    require_prometheus()
    with serving(home, tmp_path, interval=1, metrics_listen=f"127.0.0.1:{metrics_port}") as running:
        yield running


@contextlib.contextmanager
def prometheus_scraping(folder: Path, jobs: dict[str, dict[str, object]]) -> Iterator[Prometheus]:
    """`prometheus` scraping ``jobs`` (job name -> its scrape config) every second; stopped by its pid at the end."""
    binary = require_prometheus()
    folder.mkdir(parents=True, exist_ok=True)
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": name, **job} for name, job in jobs.items()]}
    (folder / "prometheus.yml").write_text(json.dumps(config, indent=1))  # JSON is YAML
    port = free_port()
    log = folder / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    running = Prometheus(process, f"http://127.0.0.1:{port}", log)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited {process.returncode}: {running.log_text()}")
        try:
            return httpx.get(f"{running.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=60, interval=0.1, what=f"prometheus ready (log: {log})")
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        wait_until(lambda: process_gone(process.pid), timeout=10, what="prometheus gone")


def test_prometheus_scrapes_serve_while_its_fleet_heals_and_scales(served: Served, tmp_path: Path,
                                                                   metrics_port: int) -> None:
    token = served.token()
    # the route itself: no token, no metrics; a token, the text format
    assert httpx.get(f"{served.url}/metrics").status_code == 401
    assert served.client("chd_not_a_token").get("/metrics").status_code == 401
    answer = served.client(token).get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "cloudherd_build_info" in {f.name for f in text_string_to_metric_families(answer.text)}

    api = served.client(token)
    infra_id = create(api, NAME, count=2)
    target = f"127.0.0.1:{served.port}"
    jobs: dict[str, dict[str, object]] = {
        "serve": {"metrics_path": "/metrics", "authorization": {"type": "Bearer", "credentials": token},
                  "static_configs": [{"targets": [target]}]},
        "listen": {"static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]},
    }
    with prometheus_scraping(tmp_path / "prometheus", jobs) as prometheus:
        wait_until(lambda: prometheus.value('up{job="serve"}') == 1 and prometheus.value('up{job="listen"}') == 1,
                   timeout=60, interval=0.2, what=f"both targets up (log: {prometheus.log_text()})")
        ready_now = f'cloudherd_nodes{{job="serve",infrastructure="{NAME}",group="{WEB}",state="ready"}}'
        wait_until(lambda: prometheus.value(ready_now) == 2, timeout=60, interval=0.2,
                   what="Prometheus to see the 2 ready nodes")

        # a node fails: the manager inside serve replaces it
        victim = sorted(n["name"] for n in ready_nodes(api, infra_id))[0]
        crashed = cli("local", "fault", str(victim), "crash", env={"CLOUDHERD_HOME": str(served.home)})
        assert crashed.returncode == 0, crashed.stderr
        wait_until(lambda: victim not in {n["name"] for n in ready_nodes(api, infra_id)}
                   and len(ready_nodes(api, infra_id)) == 2, timeout=120, interval=0.2,
                   what=f"{victim} replaced by the manager")

        # the group grows by one, through the manager's next pass
        scaled = api.post(f"/v1/infrastructures/{infra_id}/groups/{WEB}/scale", json={"change": "+1"})
        assert scaled.status_code == 202, scaled.text
        wait_until(lambda: len(ready_nodes(api, infra_id)) == 3, timeout=120, interval=0.2, what="3 ready nodes")

        # what Prometheus answers, each from what it scraped (the gauges from the state, the counters from serve)
        for job in ("serve", "listen"):
            wait_until(lambda job=job: prometheus.value(ready_now.replace('job="serve"', f'job="{job}"')) == 3,
                       timeout=60, interval=0.2, what=f"Prometheus to see 3 ready nodes on the {job} job")
        checks = {
            "serve's build": 'cloudherd_build_info{job="serve"} == 1',
            # at least one create call for the first nodes, one for the heal, one for the scale-out
            "the creates counted": 'cloudherd_provider_calls_total{job="serve",provider="local",operation="create",'
                                   'outcome="ok"} >= 3',
            "the create calls timed": 'cloudherd_provider_call_seconds_count{job="serve",provider="local",'
                                      'operation="create"} >= 3',
            "a live lease (serve's manager)": 'cloudherd_leases_held{job="serve"} >= 1',
            "what the fleet costs now (local: free)": f'cloudherd_hourly_cost{{job="serve",infrastructure="{NAME}",'
                                                      f'provider="local"}} == 0',
            "the release applied": 'cloudherd_rollouts{job="serve",state="applied"} >= 1',
            "the passes timed": 'cloudherd_pass_duration_seconds_count{job="serve"} > 0',
            "the heal counted": 'cloudherd_nodes_created_total{job="serve",reason="heal"} >= 1',
            "the scale-out counted": 'cloudherd_nodes_created_total{job="serve",reason="scale"} >= 1',
        }
        deadline = time.monotonic() + 60
        pending = dict(checks)
        while pending and time.monotonic() < deadline:
            pending = {what: expr for what, expr in pending.items() if not prometheus.holds(expr)}
            if pending:
                time.sleep(0.2)
        assert not pending, f"Prometheus never answered: {pending}"
        # every series Prometheus holds of cloudherd's: no label names a node (each node ever made is listed)
        series = httpx.get(f"{prometheus.url}/api/v1/series", params={"match[]": '{__name__=~"cloudherd_.*"}'},
                           timeout=10).json()["data"]
        made = {n["name"] for n in api.get(f"/v1/infrastructures/{infra_id}/nodes").json()} | {victim}
        assert len(made) >= 4 and series
        assert not [s for s in series if made & set(s.values())]


def test_manage_serves_metrics_on_its_own_listen_address(home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "m", f"name: managed\ngroups:\n  {WEB}:\n    count: 1\n")
    upped = cli("up", str(spec))
    assert upped.returncode == 0, upped.stderr
    port = free_port()
    log = tmp_path / "manage.log"
    with log.open("wb") as out:
        manager = subprocess.Popen([sys.executable, "-m", "cloudherd", "manage", "managed", "--interval", "1",
                                    "--metrics-listen", f"127.0.0.1:{port}"],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def families() -> dict[str, Metric] | None:
            if manager.poll() is not None:
                raise AssertionError(f"manage exited {manager.returncode}: {log.read_text()}")
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)  # no token: its own address
            except httpx.HTTPError:
                return None
            found = {f.name: f for f in text_string_to_metric_families(answer.text)}
            return found if "cloudherd_nodes" in found else None

        found = wait_until(families, timeout=60, interval=0.1, what=f"manage's /metrics (log: {log})")
        nodes = {(s.labels["infrastructure"], s.labels["group"], s.labels["state"]): s.value
                 for s in found["cloudherd_nodes"].samples}
        assert nodes == {("managed", WEB, "ready"): 1}
        assert {"cloudherd_build_info", "cloudherd_leases_held", "cloudherd_pass_duration_seconds"} <= set(found)
    finally:
        manager.terminate()  # SIGTERM: the pass in progress ends, the listener with it
        assert manager.wait(timeout=60) == 0, log.read_text()
    refused = cli("manage", "managed", "--once", "--metrics-listen", "nowhere")
    assert refused.returncode != 0 and "HOST:PORT" in refused.stderr and "Traceback" not in refused.stderr
    assert cli("down", "managed").returncode == 0


def test_a_metrics_listen_mistake_is_one_line_and_no_server(home: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        for value, words in (("nowhere", "metrics_listen: a metrics listen address is HOST:PORT"),
                             (f"127.0.0.1:{busy}", f"metrics listen address 127.0.0.1:{busy}:")):
            (tmp_path / "server.yml").write_text(f"providers:\n  local: {{type: local}}\nmetrics_listen: {value}\n")
            done = cli("serve", "--config", str(tmp_path / "server.yml"), "--port", str(free_port()))
            assert done.returncode != 0 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
            assert "answers anyone" not in done.stderr  # a loopback address (or none): nothing to warn of
        # every address of the host, on the port taken on loopback: told it would be open, then refused the port
        (tmp_path / "server.yml").write_text(f"providers:\n  local: {{type: local}}\nmetrics_listen: 0.0.0.0:{busy}\n")
        done = cli("serve", "--config", str(tmp_path / "server.yml"), "--port", str(free_port()))
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        assert f"/metrics on 0.0.0.0:{busy} answers anyone who reaches it (no token there)" in done.stderr
        assert f"metrics listen address 0.0.0.0:{busy}:" in done.stderr
