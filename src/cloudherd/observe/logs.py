"""Logs a machine reads: ``--log-format json`` on ``serve`` and ``manage`` writes one JSON object a line (time,
level, logger, message, and where they apply the event's kind, infrastructure, node, ids and trace id).

Every event the state writes is also a record of the ``cloudherd.events`` logger (at INFO, with its fields), so
a log shipper sees what the event log holds as it happens.  Nothing handles those records unless a face asked
for a log format: a plain ``cloudherd up`` prints what it always printed.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from cloudherd.observe import tracing

EVENTS = logging.getLogger("cloudherd.events")
FORMATS = ("text", "json")
FIELDS = ("kind", "infrastructure", "node", "event_id", "cause_id", "origin", "trace_id")
# the loggers a server's records come from beside cloudherd's own (uvicorn's start, errors and requests)
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class JsonLines(logging.Formatter):
    """One JSON object a line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` and the fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if "trace_id" not in line and (trace := tracing.current_trace_id()):
            line["trace_id"] = trace
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def use(log_format: str, stream: IO[str] | None = None, *, server: bool = False) -> logging.Handler | None:
    """Write cloudherd's records (and, for a ``server``, uvicorn's) to ``stream`` in ``log_format``; ``text``
    leaves logging as it is.  Returns the handler installed, if any."""
    if log_format not in FORMATS:
        raise ValueError(f"log format is one of {', '.join(FORMATS)}, not {log_format!r}")
    if log_format == "text":
        return None
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLines())
    for name in ("cloudherd", *(SERVER_LOGGERS if server else ())):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return handler


def event(infrastructure_id: str | None, kind: str, message: str, node_id: str | None, event_id: int | None,
          cause_id: int | None, origin: str | None, trace_id: str | None) -> None:
    """An event as a log record (a cheap check when nothing listens)."""
    if EVENTS.isEnabledFor(logging.INFO):
        EVENTS.info(message, extra={"kind": kind, "infrastructure": infrastructure_id, "node": node_id,
                                    "event_id": event_id, "cause_id": cause_id, "origin": origin,
                                    "trace_id": trace_id})
