"""What a face may ask of a herd wherever its state lives: the methods that both the local client
(:class:`~cloudherd.api.client.SyncClient`, over this machine's database) and the server's client
(:class:`~cloudherd.api.remote.RemoteClient`, over ``cloudherd serve``) answer with the same typed values.

The CLI holds a :class:`HerdClient` and nothing more, so mypy proves that every command it sends to a server
is one the server answers.  What only the machine holding the state can do (``gc``, ``adopt``, ``push``,
``manage``…) is asked of a ``SyncClient`` the CLI gets through a refusal when a server is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cloudherd.api.types import (
        Action,
        CostReport,
        Event,
        ExecResult,
        Group,
        HookHold,
        Infrastructure,
        InfrastructureSummary,
        Node,
        Plan,
        Revision,
        Rollout,
        ScaleResult,
        SpecSummary,
            Why,
)

Names = str | Sequence[str] | None
LineSink = Callable[[str, str, str], None]


class HerdClient(Protocol):
    """The shared methods, with the signatures of the local client (the server's client accepts each keyword
    and ignores the ones that only mean something beside the state: see its docstrings)."""

    def close(self) -> None: ...

    def validate(self, spec: Any, *, format: str | None = None) -> SpecSummary: ...

    def plan(self, spec: Any, *, format: str | None = None, out: Any = None) -> Plan: ...

    def up(self, spec: Any, *, keep_on_failure: bool = False, on_event: Any = None,
           connect_timeout: float = 120.0, force: bool = False, concurrency: int | None = None,
           accept_new_host_key: Sequence[str] = (), wait: float = 600.0, format: str | None = None,
           no_rollback: bool = False, pause_after: int | None = None,
           counts: Mapping[str, int] | None = None, plan_file: Any = None, ttl: float | None = None) -> str: ...

    def down(self, ref: str, *, on_event: Any = None, artifacts_dir: Any = None, wait: float = 600.0,
             force: bool = False) -> str: ...

    def ls(self, *, include_destroyed: bool = False) -> list[InfrastructureSummary]: ...

    def status(self, ref: str) -> Infrastructure: ...

    def why(self, node: str, ref: str | None = None) -> Why: ...

    def cost(self, ref: str | None = None, *, since: datetime | None = None) -> CostReport: ...

    def infrastructure(self, ref: str) -> Infrastructure: ...

    def exec(self, ref: str, command: str, *, group: Names = None, node: Names = None, tags: Any = None,
             on_line: LineSink | None = None, timeout: float = 30.0, command_timeout: float | None = None,
             concurrency: int | None = None, accept_new_host_key: Sequence[str] = ()) -> list[ExecResult]: ...

    def scale(self, ref: str, group: str, change: str | int, *, victims: Sequence[str] = (),
              wait: float = 600.0, on_event: Any = None, run_pass: bool = True) -> ScaleResult: ...

    def protect(self, ref: str, nodes: Names, *, protected: bool = True) -> list[Node]: ...

    def standby(self, ref: str, nodes: Names, *, enter: bool = True, replace: bool = False, wait: float = 600.0,
                on_event: Any = None, run_pass: bool = True) -> list[Node]: ...

    def detach_nodes(self, ref: str, nodes: Names, *, replace: bool = False, wait: float = 600.0,
                     on_event: Any = None, run_pass: bool = True) -> list[Node]: ...

    def attach_machines(self, ref: str, group: str, machines: Names, *, wait: float = 600.0, on_event: Any = None,
                        run_pass: bool = True) -> list[Node]: ...

    def suspend(self, ref: str, group: str, processes: Sequence[str] = (), *, reason: str | None = None) -> Group: ...

    def stop_machines(self, ref: str, *, wait: float = 600.0, on_event: Any = None,
                      run_pass: bool = True) -> InfrastructureSummary: ...

    def start_machines(self, ref: str, *, wait: float = 600.0, on_event: Any = None,
                       run_pass: bool = True) -> InfrastructureSummary: ...

    def resume_processes(self, ref: str, group: str, processes: Sequence[str] = ()) -> Group: ...

    def hooks(self, ref: str, *, done: bool = False) -> list[HookHold]: ...

    def complete_hook(self, ref: str, node: str, hook: str | None = None, *, result: str = "CONTINUE",
                      wait: float = 600.0, on_event: Any = None, run_pass: bool = True) -> list[HookHold]: ...

    def heartbeat_hook(self, ref: str, node: str, hook: str | None = None) -> list[HookHold]: ...

    def attach(self, ref: str) -> InfrastructureSummary: ...

    def detach(self, ref: str) -> InfrastructureSummary: ...

    def events(self, ref: str, *, after: int = 0, limit: int | None = None) -> list[Event]: ...

    def logs(self, ref: str, node: str | None = None) -> list[Action]: ...

    def history(self, ref: str) -> list[Revision]: ...

    def rollout(self, ref: str) -> Rollout: ...

    def rollback(self, ref: str, revision: int | None = None, *, on_event: Any = None,
                 connect_timeout: float = 120.0, wait: float = 600.0) -> Revision: ...

    def resume(self, ref: str, *, on_event: Any = None, connect_timeout: float = 120.0,
               wait: float = 600.0) -> Rollout: ...

    def abort(self, ref: str, *, on_event: Any = None, connect_timeout: float = 120.0,
              wait: float = 600.0) -> Rollout: ...


def _both_satisfy() -> None:  # pragma: no cover - read by mypy only: both clients are HerdClients
    from cloudherd.api.client import SyncClient
    from cloudherd.api.remote import RemoteClient

    local: HerdClient = SyncClient()
    remote: HerdClient = RemoteClient("", "")
    del local, remote
