"""Progress events: the engine reports what happens; faces (CLI, REST) decide how to show it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    kind: str  # info | node | action | output | error
    message: str
    node: str | None = None
    group: str | None = None
    state: str | None = None


EventSink = Callable[[ProgressEvent], None]


def emit(sink: EventSink | None, event: ProgressEvent) -> None:
    if sink is not None:
        sink(event)
