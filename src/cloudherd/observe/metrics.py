"""cloudherd's Prometheus metrics: what it did (counters, histograms) and what the state holds (gauges).

Names follow Karpenter's and cluster-autoscaler's habits: one counter per decision, labelled by its reason.  Every
label has a short, fixed set of values or a name an operator chose (an infrastructure, a group, a provider, a
policy): never a node's name or id, so the number of series stays bounded however many machines come and go.

Two kinds, two sources:

* the counters and histograms live in :data:`REGISTRY`, in the process that does the work (a pass run inside
  ``cloudherd serve`` counts in ``serve``'s registry, a pass of ``cloudherd manage`` in that process's);
* the gauges (``cloudherd_nodes``, ``cloudherd_rollouts``, ``cloudherd_hourly_cost``, ``cloudherd_leases_held``)
  are read from the state at each scrape (:class:`StateGauges`, filled by :mod:`cloudherd.api.metrics_view`), so
  they are true whichever process changed the state.

A registry of cloudherd's own, not prometheus_client's global one: nothing another library registers there ends
up on cloudherd's ``/metrics``, and a test can read exactly what cloudherd exposes.  Nothing here touches a database.
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

# the text format every Prometheus reads (its names are all legacy ones: 1.0.0's escaping changes nothing here)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

CREATE_REASONS = ("up", "heal", "scale", "rollout", "market", "warm-pool", "other")
TERMINATE_REASONS = ("failed", "unhealthy", "scale-in", "replaced", "down", "ttl", "other")
DIRECTIONS = ("out", "in")
# a provider call's outcome: ok, or the kind of its error (the class of ProviderError, by name, short)
OUTCOMES = ("ok", "throttled", "transient", "capacity", "quota", "auth", "not-found", "invalid", "cancelled", "error")
_ERROR_OUTCOMES = {"ThrottledError": "throttled", "TransientError": "transient", "CapacityError": "capacity",
                   "QuotaError": "quota", "AuthError": "auth", "NotFoundError": "not-found",
                   "InvalidRequestError": "invalid", "UnknownProviderError": "invalid",
                   "MissingDependencyError": "invalid"}

# seconds; a node takes seconds locally and minutes on a cloud, a pass from milliseconds to minutes
_SLOW = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
_PASS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_CALL = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REGISTRY = CollectorRegistry(auto_describe=True)

_created = Counter("cloudherd_nodes_created_total", "Nodes whose machine was asked for, by why it was made.",
                   ["reason"], registry=REGISTRY)
_terminated = Counter("cloudherd_nodes_terminated_total", "Nodes whose machine was ended, by why.", ["reason"],
                      registry=REGISTRY)
_ready = Histogram("cloudherd_node_ready_seconds", "Seconds from a node's create call to the node ready "
                   "(its scripts all run).", buckets=_SLOW, registry=REGISTRY)
_healed = Histogram("cloudherd_heal_seconds", "Seconds from a node found failed to its replacement ready.",
                    buckets=_SLOW, registry=REGISTRY)
_pass = Histogram("cloudherd_pass_duration_seconds", "Seconds a manager's pass over one infrastructure took.",
                  buckets=_PASS, registry=REGISTRY)
_pass_errors = Counter("cloudherd_pass_errors_total", "Manager passes that ended in an error.", registry=REGISTRY)
_calls = Counter("cloudherd_provider_calls_total", "Calls made to a cloud, by provider type, operation and outcome "
                 "(ok, or the kind of error).", ["provider", "operation", "outcome"], registry=REGISTRY)
_call_seconds = Histogram("cloudherd_provider_call_seconds", "Seconds a call to a cloud took (each attempt).",
                          ["provider", "operation"], buckets=_CALL, registry=REGISTRY)
_decisions = Counter("cloudherd_scaling_decisions_total", "Scaling decisions made, by policy and direction.",
                     ["policy", "direction"], registry=REGISTRY)
_build = Gauge("cloudherd_build_info", "Always 1: the version of cloudherd and of Python this process runs.",
               ["version", "python"], registry=REGISTRY)


def _version() -> str:
    """cloudherd's version as installed (``cloudherd.__version__`` is the same; importing the package's root from
    here would reach above this layer)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cloudherd")
    except PackageNotFoundError:
        return "unknown"


_build.labels(_version(), platform.python_version()).set(1)
for _reason in CREATE_REASONS:  # every reason at 0 from the start: rate() and increase() see the first one
    _created.labels(_reason)
for _reason in TERMINATE_REASONS:
    _terminated.labels(_reason)

LABEL_MAX = 100  # characters of a free label value (a policy's name) kept


def _one_of(value: str, allowed: Iterable[str]) -> str:
    return value if value in allowed else "other"


def _bounded(value: str) -> str:
    return (value or "unnamed")[:LABEL_MAX]


def node_created(reason: str) -> None:
    """A node's machine was asked for: ``reason`` one of :data:`CREATE_REASONS` (any other counts as other)."""
    _created.labels(_one_of(reason, CREATE_REASONS)).inc()


def node_terminated(reason: str) -> None:
    """A node's machine was ended: ``reason`` one of :data:`TERMINATE_REASONS` (any other counts as other)."""
    _terminated.labels(_one_of(reason, TERMINATE_REASONS)).inc()


def node_ready(seconds: float) -> None:
    """A node became ready ``seconds`` after its create call."""
    _ready.observe(max(seconds, 0.0))


def healed(seconds: float) -> None:
    """A node found failed was replaced by a ready one ``seconds`` later."""
    _healed.observe(max(seconds, 0.0))


def pass_done(seconds: float, error: bool) -> None:
    """A manager's pass over one infrastructure took ``seconds``; ``error``: it ended in an error."""
    _pass.observe(max(seconds, 0.0))
    if error:
        _pass_errors.inc()


def outcome_of(error: BaseException | None) -> str:
    """A provider call's outcome label: ``ok``, the kind of a cloud's error, or ``error`` for anything else."""
    if error is None:
        return "ok"
    if isinstance(error, asyncio.CancelledError):  # the caller gave up on it (a timeout, a stop)
        return "cancelled"
    for cls in type(error).__mro__:
        found = _ERROR_OUTCOMES.get(cls.__name__)
        if found is not None:
            return found
    return "error"


def provider_call(provider: str, operation: str, outcome: str, seconds: float) -> None:
    """One call to a cloud: ``provider`` its type (aws, gce, local…), ``operation`` the contract's method
    (create, list…), ``outcome`` one of :data:`OUTCOMES` (any other counts as error)."""
    provider, operation = _bounded(provider), _bounded(operation)
    _calls.labels(provider, operation, outcome if outcome in OUTCOMES else "error").inc()
    _call_seconds.labels(provider, operation).observe(max(seconds, 0.0))


def scaling_decision(policy: str, direction: str) -> None:
    """A policy (its name in the spec; a scheduled action's, a request's kind) decided to scale ``out`` or ``in``
    (any other direction counts as other: a metric never fails the pass that counts it)."""
    _decisions.labels(_bounded(policy), _one_of(direction, DIRECTIONS)).inc()


@dataclass
class StateGauges:
    """What the state holds at a scrape, as the gauges show it (see :mod:`cloudherd.api.metrics_view`)."""

    nodes: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (infrastructure, group, state) -> nodes
    rollouts: dict[str, int] = field(default_factory=dict)  # a release's state -> infrastructures at it
    hourly_cost: dict[tuple[str, str], float] = field(default_factory=dict)  # (infrastructure, provider) -> $/h
    leases_held: int = 0


def state_families(gauges: StateGauges) -> Iterator[Metric]:
    """The gauges of ``gauges`` as metric families."""
    nodes = GaugeMetricFamily("cloudherd_nodes", "Nodes not yet terminated, by infrastructure, group and state.",
                              labels=["infrastructure", "group", "state"])
    for key, count in sorted(gauges.nodes.items()):
        nodes.add_metric(list(key), count)
    yield nodes
    rollouts = GaugeMetricFamily("cloudherd_rollouts", "Infrastructures by the state of their newest release "
                                 "(applying: a rollout in progress; paused: held by its canary or health gate).",
                                 labels=["state"])
    for state, count in sorted(gauges.rollouts.items()):
        rollouts.add_metric([state], count)
    yield rollouts
    cost = GaugeMetricFamily("cloudherd_hourly_cost", "Dollars an hour the running machines cost now, by "
                             "infrastructure and provider (from the price books; unpriced machines left out).",
                             labels=["infrastructure", "provider"])
    for place, dollars in sorted(gauges.hourly_cost.items()):
        cost.add_metric(list(place), dollars)
    yield cost
    yield GaugeMetricFamily("cloudherd_leases_held", "Leases held now (infrastructures being worked on, live "
                            "managers).", value=gauges.leases_held)


class Scrape:
    """What one ``/metrics`` answer holds: this process's counters and histograms, and the state's gauges when
    ``read_state`` is given (called at each scrape; an error there leaves the gauges out, not the counters)."""

    def __init__(self, read_state: Callable[[], StateGauges] | None = None,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.read_state = read_state
        self.on_error = on_error

    def collect(self) -> Iterator[Metric]:
        for family in REGISTRY.collect():
            # prometheus_client adds a <name>_created sample per counter and histogram: noise to a scraper
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family
        if self.read_state is None:
            return
        try:
            gauges = self.read_state()
        except Exception as exc:  # the database away: the counters still answer
            if self.on_error is not None:
                self.on_error(exc)
            return
        yield from state_families(gauges)


def exposition(read_state: Callable[[], StateGauges] | None = None,
               on_error: Callable[[BaseException], None] | None = None) -> bytes:
    """The text format of one scrape (:class:`Scrape`); its content type is :data:`CONTENT_TYPE`.  Blocking when
    ``read_state`` reads a database: call it in a thread from a loop."""
    return generate_latest(Scrape(read_state, on_error))  # type: ignore[arg-type]
