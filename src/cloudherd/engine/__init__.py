"""The engine: bring infrastructures up, run commands on them, tear them down.  Knows no CLI."""

from cloudherd.engine.apply import up
from cloudherd.engine.destroy import down
from cloudherd.engine.events import EventSink, ProgressEvent
from cloudherd.engine.fleet import ExecResult, exec_command, refresh

__all__ = ["EventSink", "ExecResult", "ProgressEvent", "down", "exec_command", "refresh", "up"]
