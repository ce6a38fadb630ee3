"""Live progress of ``up`` / ``down``: a table of nodes on a terminal, plain lines elsewhere."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cloudherd.cli.style import STATE_STYLE
from cloudherd.engine.events import ProgressEvent


class Progress:
    """An event sink for the engine that draws on ``console`` (stderr, so stdout stays parseable)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows: dict[str, tuple[str, str, str, float]] = {}  # node -> (group, state, message, since)
        self.live: Live | None = None
        self.started = time.monotonic()

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self.live = Live(self._table(), console=self.console, refresh_per_second=8, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(kind, exc, tb)

    def __call__(self, event: ProgressEvent) -> None:
        if event.node:
            group, state, _message, since = self.rows.get(event.node, (event.group or "", "", "", time.monotonic()))
            self.rows[event.node] = (event.group or group, event.state or state, event.message, since)
        if self.live is not None:
            if event.kind == "error" and not event.node:
                self.live.console.print(Text(event.message, style="red"))
            elif event.kind == "info":
                self.live.console.print(Text(event.message))
            elif event.kind == "warning":
                self.live.console.print(Text(f"warning: {event.message}", style="yellow"))
            self.live.update(self._table())
            return
        elapsed = time.monotonic() - self.started
        who = f"{event.node} " if event.node else ""
        style = "red" if event.kind == "error" else "yellow" if event.kind == "warning" \
            else STATE_STYLE.get(event.state or "", "")
        text = f"[{elapsed:6.1f}s] {who}{'warning: ' if event.kind == 'warning' else ''}{event.message}"
        self.console.print(Text(text, style=style), soft_wrap=True)

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for column in ("node", "group", "state", "last"):
            table.add_column(column)
        for node, (group, state, message, _since) in sorted(self.rows.items()):
            style = STATE_STYLE.get(state, "")
            table.add_row(Text(node), Text(group), Text(state, style=style), Text(message[:80]))
        return table
