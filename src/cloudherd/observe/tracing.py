"""Spans around cloudherd's operations, with OpenTelemetry's API.

The API alone records nothing: without an SDK configured every span is a no-op that costs a function call.
:func:`configure` installs the SDK with an OTLP exporter when the standard variables ask for one
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and only then, so a user who set
nothing gets no exporter, no thread and no connection.  A test installs its own provider (an in-memory
exporter) with :func:`use_provider`.

An operation (:func:`operation_span`) starts a trace of its own, whatever was current: an ``up`` run from a
request of the server is one trace, not a branch of the server's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cloudherd.observe import cause

TRACER = "cloudherd"
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_configured = False
_provider: Any = None  # the SDK's TracerProvider spans go to; None: spans are no-ops


def wanted() -> bool:
    """Whether the environment asks for traces to be exported (and does not disable the SDK)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(os.environ.get(name, "").strip() for name in _ENDPOINTS)


def configure() -> str | None:
    """Install the SDK and its OTLP/HTTP exporter when the environment asks (once per process).  Returns why
    traces cannot be exported when they were asked for and cannot be (the SDK is an extra), else None."""
    global _configured
    if _configured or not wanted():
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return ("OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry's SDK is not installed: "
                "pip install 'cloudherd[otel]' (no traces are exported)")
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME")
                                                        or "cloudherd"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use_provider(provider)
    return None


def use_provider(provider: Any) -> None:
    """Make ``provider`` (an SDK ``TracerProvider``; None: none, spans are no-ops again) the one spans go to.
    OpenTelemetry's global provider can be set once per process; cloudherd asks its tracer from the provider
    given here instead, so a test can give its own each time."""
    global _configured, _provider
    _provider = provider
    _configured = True


def _tracer() -> Any:
    from opentelemetry import trace

    return (_provider or trace.get_tracer_provider()).get_tracer(TRACER)


def _attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    return {f"cloudherd.{k}": v if isinstance(v, (str, bool, int, float)) else str(v)
            for k, v in attributes.items() if v is not None}


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span inside the current trace (an SSH step, a provider call, a batch)."""
    if _provider is None:
        yield None
        return
    with _tracer().start_as_current_span(name, attributes=_attributes(attributes)) as current:
        yield current


@contextmanager
def operation_span(name: str, origin: str, **attributes: Any) -> Iterator[Any]:
    """The root span of an operation (a trace of its own), and the operation's cause (see :mod:`.cause`)."""
    with cause.operation(origin):
        if _provider is None:
            yield None
            return
        from opentelemetry import context

        with _tracer().start_as_current_span(name, context=context.Context(),
                                             attributes=_attributes({"origin": origin, **attributes})) as current:
            yield current


def current_trace_id() -> str | None:
    """The current trace's id as 32 hex digits (what a tracing backend searches for), or None outside one."""
    if _provider is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
