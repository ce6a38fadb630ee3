"""Traces of real operations on real local nodes: an `up` is one trace whose root span is the up, with the cloud
calls and the SSH steps inside it, and the up's events carry its trace id; a manager's pass is a trace of its
own.  Over the wire: `cloudherd up` with OTEL_EXPORTER_OTLP_ENDPOINT set sends its spans by OTLP/HTTP to a
receiver of the test's own, and `cloudherd events` names the same trace."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from helpers import cli, write_spec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cloudherd.api import SyncClient
from cloudherd.engine.manager import Manager
from cloudherd.observe import tracing
from cloudherd.state.repo import Store

SPEC = """name: traced
groups:
  web:
    count: 2
    scripts:
      - {name: hello.sh, content: "echo hello"}
"""


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)
        provider.shutdown()


def test_an_up_is_one_trace_with_its_cloud_calls_and_ssh_steps_and_a_pass_another(
        home: Path, tmp_path: Path, spans: InMemorySpanExporter) -> None:
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "p", SPEC))
    finished = spans.get_finished_spans()
    [root] = [s for s in finished if s.parent is None]
    assert root.name == "up" and root.attributes["cloudherd.infrastructure"] == "traced"
    trace_id = root.context.trace_id
    assert {s.context.trace_id for s in finished} == {trace_id}  # one trace for the whole up
    names = [s.name for s in finished]
    assert "provider.create" in names and "ssh.connect" in names
    assert names.count("ssh.script") >= 2  # hello.sh on each node
    ids = {s.context.span_id for s in finished}
    assert all(s.parent.span_id in ids for s in finished if s.parent is not None)  # no orphan
    events = herd.events(infra_id)
    assert events and {e.trace_id for e in events} == {format(trace_id, "032x")}

    spans.clear()
    store = Store()

    async def one_pass() -> None:
        await Manager(store, ids=[infra_id]).pass_over(store.infrastructure(infra_id))

    asyncio.run(one_pass())
    [passed] = [s for s in spans.get_finished_spans() if s.parent is None]
    assert passed.name == "pass" and passed.context.trace_id != trace_id
    assert passed.attributes["cloudherd.origin"].startswith("manager pass (fence ")
    spans.clear()
    assert herd.down(infra_id)
    [down] = [s for s in spans.get_finished_spans() if s.parent is None]
    assert down.name == "down" and "provider.terminate" in {s.name for s in spans.get_finished_spans()}


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[ExportTraceServiceRequest]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            self.received.append(request)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_spans_reach_an_otlp_receiver_over_http(home: Path, tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
               "OTEL_SERVICE_NAME": "herd-under-test"}
        done = cli("up", str(write_spec(tmp_path / "p", SPEC)), env=env)
        assert done.returncode == 0, done.stderr
        assert "Warning" not in done.stderr and "warning" not in done.stderr
    finally:
        server.shutdown()
        thread.join()
    wire = [(resource, span) for request in _Receiver.received for resource in request.resource_spans
            for scope in resource.scope_spans for span in scope.spans]
    services = {a.value.string_value for resource, _ in wire for a in resource.resource.attributes
                if a.key == "service.name"}
    assert services == {"herd-under-test"}
    roots = [span for _, span in wire if not span.parent_span_id]
    assert [span.name for span in roots] == ["up"]
    assert {"provider.create", "ssh.script"} <= {span.name for _, span in wire}
    events = cli("events", "traced", "--json")
    assert events.returncode == 0, events.stderr
    rows = [json.loads(line) for line in events.stdout.splitlines()]  # one event a line
    assert rows and {e["trace_id"] for e in rows} == {roots[0].trace_id.hex()}
    assert cli("down", "traced").returncode == 0
