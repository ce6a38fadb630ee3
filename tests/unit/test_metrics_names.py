"""cloudherd's Prometheus metrics as a scraper reads them: the names the README lists, labels with bounded values
(never a node's name or id), the state's gauges read from a real store, and every attempt of a real provider's
calls counted and traced."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from helpers import recorded_infrastructure, spec_of
from prometheus_client.parser import text_string_to_metric_families

from cloudherd.api.metrics_view import is_loopback, listen_address, open_warning, state_gauges
from cloudherd.errors import UsageError
from cloudherd.lifecycle import InfraState
from cloudherd.observe import metrics, tracing
from cloudherd.providers import make_provider
from cloudherd.providers.base import (
    AuthError,
    CapacityError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    QuotaError,
    ThrottledError,
    TransientError,
)
from cloudherd.providers.prices import price_book
from cloudherd.state.repo import Store

# the README's table, as a scraper sees each series (a counter's samples end in _total, a histogram's in
# _bucket, _count and _sum)
COUNTERS = {"cloudherd_nodes_created_total", "cloudherd_nodes_terminated_total", "cloudherd_pass_errors_total",
            "cloudherd_provider_calls_total", "cloudherd_scaling_decisions_total"}
HISTOGRAMS = {"cloudherd_node_ready_seconds", "cloudherd_heal_seconds", "cloudherd_pass_duration_seconds",
              "cloudherd_provider_call_seconds"}
GAUGES = {"cloudherd_nodes", "cloudherd_rollouts", "cloudherd_hourly_cost", "cloudherd_leases_held",
          "cloudherd_build_info"}
LABELS = {"cloudherd_nodes_created_total": {"reason"}, "cloudherd_nodes_terminated_total": {"reason"},
          "cloudherd_provider_calls_total": {"provider", "operation", "outcome"},
          "cloudherd_provider_call_seconds": {"provider", "operation"},
          "cloudherd_scaling_decisions_total": {"policy", "direction"}, "cloudherd_rollouts": {"state"},
          "cloudherd_nodes": {"infrastructure", "group", "state"},
          "cloudherd_hourly_cost": {"infrastructure", "provider"}, "cloudherd_build_info": {"version", "python"}}

PRICED = """\
name: priced
providers:
  cloud: {type: aws, region: us-east-1}
groups:
  web:
    provider: cloud
    image: ami-12345678
    size: t3.small
    count: 2
  db:
    provider: cloud
    image: ami-12345678
    size: t3.small
    count: 1
"""


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def a_fleet(store: Store, tmp_path: Path) -> dict[str, Any]:
    """An infrastructure on a priced cloud as the state holds it: nodes in several states (and some gone), two
    releases, a live lease and a lapsed one; another infrastructure destroyed.  Nothing runs."""
    infra = recorded_infrastructure(store, spec_of(tmp_path / "priced", PRICED))
    for group in ("web", "db"):
        store.add_group(infra.id, name=group, provider="cloud", provider_type="aws", image="ami-12345678",
                        size="t3.small", count=2 if group == "web" else 1, position=0)
    nodes = store.add_nodes(infra.id, [
        {"group_name": "web", "name": "priced-web-1", "index": 1, "provider": "cloud", "provider_id": "i-1",
         "state": "ready"},
        {"group_name": "web", "name": "priced-web-2", "index": 2, "provider": "cloud", "provider_id": "i-2",
         "state": "ready", "market": "on-demand"},
        {"group_name": "web", "name": "priced-web-3", "index": 3, "provider": "cloud", "provider_id": "i-3",
         "state": "terminated"},
        {"group_name": "web", "name": "priced-web-4", "index": 4, "provider": "cloud", "provider_id": None,
         "state": "pending"},
        {"group_name": "db", "name": "priced-db-1", "index": 1, "provider": "cloud", "provider_id": "i-4",
         "state": "unhealthy"},
    ])
    first = store.add_revision(infra.id, digest="a" * 64, spec_text=PRICED, spec_path="x", bundle={},
                               author="tester", origin="up")
    store.end_revision(first.id, "applied")
    store.add_revision(infra.id, digest="b" * 64, spec_text=PRICED, spec_path="x", bundle={},
                       author="tester", origin="up")  # applying: a rollout in progress
    gone = recorded_infrastructure(store, spec_of(tmp_path / "gone", PRICED.replace("name: priced", "name: gone")),
                                   state=InfraState.DESTROYED)
    store.add_nodes(gone.id, [{"group_name": "web", "name": "gone-web-1", "index": 1, "provider": "cloud",
                               "provider_id": "i-9", "state": "ready"}])
    store.take_lease(f"infra:{infra.id}", "holder", "up", {}, 60)
    store.take_lease("infra:lapsed", "holder", "up", {}, -1)
    return {"infra": infra, "nodes": nodes}


def test_the_state_gauges_read_nodes_releases_costs_and_leases(memory_store: Store, tmp_path: Path) -> None:
    a_fleet(memory_store, tmp_path)
    gauges = state_gauges(memory_store)
    assert gauges.nodes == {("priced", "web", "ready"): 2, ("priced", "web", "pending"): 1,
                            ("priced", "db", "unhealthy"): 1}  # the terminated and the destroyed are history
    assert gauges.rollouts == {"applying": 1, "applied": 0, "paused": 0, "failed": 0, "aborted": 0}
    price = price_book("aws").price("us-east-1", "t3.small")  # type: ignore[union-attr]
    assert price is not None and price.hourly > 0
    # three machines run (an unhealthy one is billed too); the pending row has no machine
    assert gauges.hourly_cost == {("priced", "cloud"): pytest.approx(3 * price.hourly)}
    assert gauges.leases_held == 1


def test_the_exposition_parses_with_the_names_listed_and_no_node_in_a_label(memory_store: Store,
                                                                             tmp_path: Path) -> None:
    fleet = a_fleet(memory_store, tmp_path)
    metrics.node_created("heal")
    metrics.node_terminated("unhealthy")
    metrics.node_ready(3.5)
    metrics.healed(7.0)
    metrics.pass_done(0.2, error=True)
    metrics.provider_call("aws", "create", "throttled", 0.3)
    metrics.scaling_decision("cpu-high", "out")
    text = metrics.exposition(lambda: state_gauges(memory_store)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = [s for f in families.values() for s in f.samples]
    names = {s.name for s in samples}
    assert names >= COUNTERS | GAUGES
    for histogram in HISTOGRAMS:
        assert {f"{histogram}_bucket", f"{histogram}_count", f"{histogram}_sum"} <= names
    assert {n for n in names if n.startswith("cloudherd_")} == names  # nothing of anyone else's
    assert not any(n.endswith("_created") for n in names)  # prometheus_client's creation stamps are left out
    for sample in samples:
        base = sample.name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        assert set(sample.labels) - {"le"} == LABELS.get(base, set()), sample
    node_words = {n.name for n in fleet["nodes"]} | {n.id for n in fleet["nodes"]} | {"i-1", "i-2", "i-4"}
    assert not [s for s in samples if node_words & set(s.labels.values())]
    assert families["cloudherd_nodes"].type == "gauge" and families["cloudherd_node_ready_seconds"].type == "histogram"
    assert families["cloudherd_nodes_created"].type == "counter"  # the parser names a counter without its _total
    shown = {(s.labels["group"], s.labels["state"]): s.value for s in families["cloudherd_nodes"].samples}
    assert shown[("web", "ready")] == 2 and shown[("db", "unhealthy")] == 1
    assert value("cloudherd_nodes_created_total", reason="heal") >= 1
    assert value("cloudherd_pass_errors_total") >= 1 and value("cloudherd_pass_duration_seconds_count") >= 1


def test_label_values_stay_in_their_sets() -> None:
    before = value("cloudherd_nodes_created_total", reason="other")
    metrics.node_created("a-node-name-42")  # a caller's mistake is counted as other, never as a new series
    assert value("cloudherd_nodes_created_total", reason="other") == before + 1
    assert value("cloudherd_nodes_created_total", reason="a-node-name-42") == 0
    metrics.node_terminated("whatever")
    long = value("cloudherd_scaling_decisions_total", policy="p" * metrics.LABEL_MAX, direction="other")
    metrics.scaling_decision("p" * 500, "sideways")
    assert value("cloudherd_scaling_decisions_total", policy="p" * metrics.LABEL_MAX, direction="other") == long + 1
    metrics.provider_call("gce", "list", "Some free text", 0.1)
    assert value("cloudherd_provider_calls_total", provider="gce", operation="list", outcome="error") >= 1
    kinds = {ThrottledError: "throttled", TransientError: "transient", CapacityError: "capacity",
             QuotaError: "quota", AuthError: "auth", NotFoundError: "not-found", InvalidRequestError: "invalid",
             ProviderError: "error", ValueError: "error", asyncio.CancelledError: "cancelled"}
    for error, outcome in kinds.items():
        assert metrics.outcome_of(error("x")) == outcome
        assert outcome in metrics.OUTCOMES
    assert metrics.outcome_of(None) == "ok"


def test_each_call_of_a_real_provider_is_counted_timed_and_traced(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        local = make_provider("here", "local", {"root": str(tmp_path / "root")})
        ok = value("cloudherd_provider_calls_total", provider="local", operation="regions", outcome="ok")
        missing = value("cloudherd_provider_calls_total", provider="local", operation="start", outcome="not-found")
        timed = value("cloudherd_provider_call_seconds_count", provider="local", operation="regions")
        assert asyncio.run(local.regions()) == ["local"]
        with pytest.raises(NotFoundError):
            asyncio.run(local.start(["no-such-node"]))
    finally:
        tracing.use_provider(None)
    assert value("cloudherd_provider_calls_total", provider="local", operation="regions", outcome="ok") == ok + 1
    assert value("cloudherd_provider_calls_total", provider="local", operation="start",
                 outcome="not-found") == missing + 1
    assert value("cloudherd_provider_call_seconds_count", provider="local", operation="regions") == timed + 1
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert {"provider.regions", "provider.start"} <= set(spans)
    attributes = dict(spans["provider.regions"].attributes or {})
    assert (attributes["cloudherd.provider"], attributes["cloudherd.provider_name"]) == ("local", "here")
    assert not spans["provider.start"].status.is_ok


def test_a_metrics_listen_address_is_host_and_port() -> None:
    assert listen_address("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert listen_address("[::1]:9108") == ("::1", 9108)
    for bad in ("9108", "127.0.0.1", "127.0.0.1:port", "127.0.0.1:70000", ":9108"):
        with pytest.raises(UsageError, match="HOST:PORT"):
            listen_address(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5")
    assert open_warning("127.0.0.1:9108") is None and open_warning("[::1]:9108") is None
    assert open_warning("0.0.0.0:9108") == "/metrics on 0.0.0.0:9108 answers anyone who reaches it (no token there)"
