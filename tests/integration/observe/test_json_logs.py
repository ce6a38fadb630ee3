"""`--log-format json` as a log shipper reads it: `manage` writes each pass and each event of the pass as one JSON
object a line (time, level, kind, infrastructure, node, ids, the pass's trace id when traces are exported);
`serve` writes its start, cloudherd's records and uvicorn's requests the same way; the text format stays the
default."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import cli, write_spec
from server_harness import create, serving

from cloudherd.api import SyncClient

SPEC = """name: logged
groups:
  web:
    count: 2
"""


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "no output"
    return [json.loads(line) for line in lines]  # every line is one object


def test_manage_writes_each_pass_and_event_as_a_json_line(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "p", SPEC))
    crashed = min(herd.status(infra_id).live, key=lambda n: n.name)
    assert cli("local", "fault", crashed.name, "crash").returncode == 0
    # traces asked for, sent nowhere that answers: the ids are still made and logged (the export fails quietly)
    done = cli("manage", "logged", "--once", "--log-format", "json",
               env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_BSP_EXPORT_TIMEOUT": "100"})
    assert done.returncode == 0, done.stderr
    rows = json_lines(done.stdout)
    assert all({"time", "level", "logger", "message"} <= set(row) for row in rows)
    kinds = [row.get("kind") for row in rows]
    assert {"health", "retired", "made", "pass"} <= set(kinds), kinds
    [passed] = [row for row in rows if row.get("kind") == "pass" and row["logger"] == "cloudherd.manage"]
    assert passed["infrastructure"] == "logged" and passed["level"] == "info"
    events = [row for row in rows if row["logger"] == "cloudherd.events"]
    assert {row["infrastructure"] for row in events} == {infra_id}
    [retired] = [row for row in events if row["kind"] == "retired"]
    assert retired["node"] == crashed.id and retired["message"].startswith(f"{crashed.name} retired")
    assert len({row["trace_id"] for row in events}) == 1  # the pass's one trace
    assert all(row["origin"].startswith("manager pass (fence ") for row in events)
    text = cli("manage", "logged", "--once")  # the default stays text
    assert text.returncode == 0 and not text.stdout.lstrip().startswith("{")
    assert cli("down", "logged").returncode == 0


def test_serve_writes_its_records_and_requests_as_json_lines(home: Path, tmp_path: Path) -> None:
    with serving(home, tmp_path, args=("--log-format", "json")) as served:
        token = served.token()
        with served.client(token) as api:
            create(api, "jsonserved", count=1)
            assert api.get("/v1/infrastructures").status_code == 200
        assert served.log is not None
        written = served.log
    log = written.read_text()  # stopped: to the last line
    rows = json_lines(log)
    assert rows[0]["logger"] == "cloudherd.server" and rows[0]["message"].startswith("cloudherd serve on http://")
    assert any(row["logger"] == "uvicorn.access" and "GET /v1/infrastructures" in row["message"] for row in rows)
    assert any(row["logger"] == "cloudherd.events" and row.get("kind") == "made" for row in rows)
    assert any(row["logger"] == "cloudherd.server" and row["message"].startswith("cloudherd serve: stopped")
               for row in rows)  # to its last lines
    assert token not in log
