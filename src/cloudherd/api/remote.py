"""The Python API over a shared `cloudherd serve`: the same methods and typed values as
:class:`~cloudherd.api.client.SyncClient`, spoken over the server's native REST routes instead of a local
database.  The CLI uses it when ``CLOUDHERD_SERVER`` is set (with ``CLOUDHERD_TOKEN``), or after
``cloudherd login URL``.

What needs the machine the server runs on (``gc``, ``adopt``, ``push`` / ``pull``, ``ssh``, ``manage``,
tokens) is refused with a message saying so.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

import httpx
from pydantic import BaseModel

from cloudherd.api.login import SERVER_ENV, TOKEN_ENV, configured, login_file, refuse_remote, save_login
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
    Why,
)
from cloudherd.errors import ApplyFailed, StateError, UsageError, from_answer
from cloudherd.lifecycle import InfraState

__all__ = ["RemoteClient", "configured", "login_file", "refuse_remote", "save_login"]

BUNDLE_LIMIT = 50 << 20
_SAVED_PLANS = (f"a saved plan is made and executed beside the state it fingerprints, not through a server: unset "
                f"{SERVER_ENV} (or `cloudherd logout`) and run plan --out / up --plan-file on the server's machine")
T = TypeVar("T", bound=BaseModel)
SKIPPED_FOLDERS = {".git", ".venv", "venv", "__pycache__", "node_modules", ".mypy_cache", ".ruff_cache"}


class RemoteClient:
    """A blocking client of a `cloudherd serve`; close it (or use ``with``) when done."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0) -> None:
        if not token:
            raise UsageError(f"a token is needed for {url}: set {TOKEN_ENV}, or run `cloudherd login {url}`")
        self.url = url
        self._http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StateError(f"cannot reach the server {self.url}: {exc.__class__.__name__}: {exc}") from None
        if answer.status_code < 400:
            return answer.json()
        try:
            body = answer.json()
        except ValueError:
            body = {"detail": answer.text[:300]}
        error = from_answer(answer.status_code, body)  # the class the server raised, and so its exit code
        if answer.status_code == 401:
            raise UsageError(f"the server {self.url} refused the token: {error}")
        if type(error) is StateError:
            raise StateError(f"the server {self.url} failed: {error}")
        raise error

    def _job(self, job: dict[str, Any], deadline: float) -> dict[str, Any]:
        while job["state"] == "running":
            if time.monotonic() > deadline:
                raise StateError(f"job {job['id']} is still running on {self.url} (GET /v1/jobs/{job['id']})")
            time.sleep(0.2)
            job = self._call("GET", f"/v1/jobs/{job['id']}")
        if job["state"] != "done":
            raise ApplyFailed(f"{job['kind']} {job['state']}: {job.get('error') or 'no reason given'}")
        return job

    # -- infrastructures ------------------------------------------------------------------------------

    def ls(self, *, include_destroyed: bool = False) -> list[InfrastructureSummary]:
        rows = self._call("GET", "/v1/infrastructures", params={"all": str(include_destroyed).lower()})
        return [_value(InfrastructureSummary, r) for r in rows]

    def status(self, ref: str) -> Infrastructure:
        return _value(Infrastructure, self._call("GET", f"/v1/infrastructures/{ref}"))

    def infrastructure(self, ref: str) -> Infrastructure:
        return self.status(ref)

    def cost(self, ref: str | None = None, *, since: datetime | None = None) -> CostReport:
        params = {key: value for key, value in (("infrastructure", ref),
                                                ("since", since.isoformat() if since else None)) if value}
        return _value(CostReport, self._call("GET", "/v1/cost", params=params))

    def up(self, spec: Any, *, keep_on_failure: bool = False, on_event: Any = None,
           connect_timeout: float = 120.0, force: bool = False, concurrency: int | None = None,
           accept_new_host_key: Sequence[str] = (), wait: float = 600.0, format: str | None = None,
           no_rollback: bool = False, pause_after: int | None = None,
           counts: Mapping[str, int] | None = None, plan_file: Any = None, ttl: float | None = None) -> str:
        """Send the spec (and the files beside it) to the server, which makes or converges it; wait until every
        node is deployed (or the infrastructure failed).  The server applies its own settings for how a run
        goes (rollback, concurrency, host keys, events): those keywords are taken and not sent."""
        if plan_file is not None:
            raise UsageError(_SAVED_PLANS)
        body, kind = _bundle(spec)
        params = {"converge": "true", **({"format": format} if format else {}), **({"ttl": str(ttl)} if ttl else {})}
        made = self._call("POST", "/v1/infrastructures", content=body, headers={"Content-Type": kind},
                          params=params)
        deadline = time.monotonic() + max(wait, 1800.0)
        while True:
            infra = self.status(made["id"])
            if infra.state == InfraState.FAILED:
                raise ApplyFailed(f"{infra.name}: {infra.reason or 'failed'}")
            if infra.state == InfraState.READY and infra.ready_nodes == len(infra.live):
                return infra.id
            if time.monotonic() > deadline:
                raise StateError(f"{infra.name} is not ready after {max(wait, 1800.0):g}s (cloudherd status)")
            time.sleep(0.3)

    def plan(self, spec: Any, *, format: str | None = None, out: Any = None) -> Plan:
        if out is not None:
            raise UsageError(_SAVED_PLANS)
        body, kind = _bundle(spec)
        return _value(Plan, self._call("POST", "/v1/plan", content=body, headers={"Content-Type": kind},
                                              params={"format": format} if format else None))

    def down(self, ref: str, *, on_event: Any = None, artifacts_dir: Any = None, wait: float = 600.0,
             force: bool = False) -> str:
        """Destroy on the server (artifacts land on the server's machine)."""
        job = self._call("DELETE", f"/v1/infrastructures/{ref}")
        self._job(job, time.monotonic() + max(wait, 600.0))
        return str(job["infrastructure"])

    def exec(self, ref: str, command: str, *, group: Any = None, node: Any = None, tags: Any = None,
             on_line: Callable[[str, str, str], None] | None = None, timeout: float = 30.0,
             command_timeout: float | None = None, concurrency: int | None = None,
             accept_new_host_key: Sequence[str] = ()) -> list[ExecResult]:
        """Run on the server's connections (its concurrency and host keys); each node's output once it is done."""
        body = {"command": command, "group": _names(group), "node": _names(node), "timeout": timeout,
                "command_timeout": command_timeout}
        job = self._call("POST", f"/v1/infrastructures/{ref}/exec", json=body)
        done = self._job(job, time.monotonic() + timeout + (command_timeout or 3600.0) + 60)
        results = [_value(ExecResult, r) for r in done["results"]]
        if on_line is not None:  # no live stream over the server: each node's output once it is done
            for result in results:
                for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
                    for line in text.splitlines():
                        on_line(result.node, stream, line)
        return results

    def scale(self, ref: str, group: str, change: str | int, *, victims: Sequence[str] = (),
              wait: float = 600.0, on_event: Any = None, run_pass: bool = True) -> ScaleResult:
        """Ask the server: its manager consumes the change at its next pass."""
        answer = self._call("POST", f"/v1/infrastructures/{ref}/groups/{group}/scale",
                            json={"change": str(change), "victims": list(victims)})
        return _value(ScaleResult, answer)

    def protect(self, ref: str, nodes: Any, *, protected: bool = True) -> list[Node]:
        answer = self._call("POST", f"/v1/infrastructures/{ref}/nodes/protection",
                            json={"nodes": _names(nodes), "protected": protected})
        return [_value(Node, n) for n in answer]

    def standby(self, ref: str, nodes: Any, *, enter: bool = True, replace: bool = False, wait: float = 600.0,
                on_event: Any = None, run_pass: bool = True) -> list[Node]:
        """Ask the server: its manager applies the change at its next pass (``wait``, ``run_pass`` are the local
        client's)."""
        answer = self._call("POST", f"/v1/infrastructures/{ref}/nodes/standby",
                            json={"nodes": _names(nodes), "enter": enter, "replace": replace})
        return [_value(Node, n) for n in answer]

    def detach_nodes(self, ref: str, nodes: Any, *, replace: bool = False, wait: float = 600.0,
                     on_event: Any = None, run_pass: bool = True) -> list[Node]:
        """Ask the server: its manager detaches them at its next pass (``wait``, ``run_pass`` are the local
        client's)."""
        answer = self._call("POST", f"/v1/infrastructures/{ref}/nodes/detach",
                            json={"nodes": _names(nodes), "replace": replace})
        return [_value(Node, n) for n in answer]

    def attach_machines(self, ref: str, group: str, machines: Any, *, wait: float = 600.0, on_event: Any = None,
                        run_pass: bool = True) -> list[Node]:
        """Ask the server: its manager attaches them at its next pass (none returned until it has)."""
        answer = self._call("POST", f"/v1/infrastructures/{ref}/groups/{group}/attach",
                            json={"machines": _names(machines)})
        return [_value(Node, n) for n in answer]

    def suspend(self, ref: str, group: str, processes: Sequence[str] = (), *, reason: str | None = None) -> Group:
        answer = self._call("POST", f"/v1/infrastructures/{ref}/groups/{group}/suspend",
                            json={"processes": list(processes), "reason": reason})
        return _value(Group, answer)

    def stop_machines(self, ref: str, *, wait: float = 600.0, on_event: Any = None,
                      run_pass: bool = True) -> InfrastructureSummary:
        """Ask the server: its manager stops the machines at its next pass (started at once)."""
        return _value(InfrastructureSummary, self._call("POST", f"/v1/infrastructures/{ref}/stop"))

    def start_machines(self, ref: str, *, wait: float = 600.0, on_event: Any = None,
                       run_pass: bool = True) -> InfrastructureSummary:
        """Ask the server: the stopped processes resumed, its manager starts the machines at its next pass."""
        return _value(InfrastructureSummary, self._call("POST", f"/v1/infrastructures/{ref}/start"))

    def resume_processes(self, ref: str, group: str, processes: Sequence[str] = ()) -> Group:
        answer = self._call("POST", f"/v1/infrastructures/{ref}/groups/{group}/resume",
                            json={"processes": list(processes)})
        return _value(Group, answer)

    def hooks(self, ref: str, *, done: bool = False) -> list[HookHold]:
        answer = self._call("GET", f"/v1/infrastructures/{ref}/hooks", params={"done": str(done).lower()})
        return [_value(HookHold, h) for h in answer]

    def complete_hook(self, ref: str, node: str, hook: str | None = None, *, result: str = "CONTINUE",
                      wait: float = 600.0, on_event: Any = None, run_pass: bool = True) -> list[HookHold]:
        """Ask the server: its manager moves the node on at its next pass (started at once)."""
        answer = self._call("POST", f"/v1/infrastructures/{ref}/hooks/complete",
                            json={"node": node, "hook": hook, "result": result})
        return [_value(HookHold, h) for h in answer]

    def heartbeat_hook(self, ref: str, node: str, hook: str | None = None) -> list[HookHold]:
        answer = self._call("POST", f"/v1/infrastructures/{ref}/hooks/heartbeat", json={"node": node, "hook": hook})
        return [_value(HookHold, h) for h in answer]

    def attach(self, ref: str) -> InfrastructureSummary:
        return _value(InfrastructureSummary, self._call("POST", f"/v1/infrastructures/{ref}/attach"))

    def detach(self, ref: str) -> InfrastructureSummary:
        return _value(InfrastructureSummary, self._call("POST", f"/v1/infrastructures/{ref}/detach"))

    def events(self, ref: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        rows = self._call("GET", f"/v1/infrastructures/{ref}/events", params={"after": after},
                          headers={"Accept": "application/json"})
        return [_value(Event, r) for r in rows][:limit]

    def logs(self, ref: str, node: str | None = None) -> list[Action]:
        rows = self._call("GET", f"/v1/infrastructures/{ref}/logs", params={"node": node} if node else None)
        return [_value(Action, r) for r in rows]

    def why(self, node: str, ref: str | None = None) -> Why:
        return _value(Why, self._call("GET", f"/v1/nodes/{node}/why", params={"infrastructure": ref} if ref else None))

    def history(self, ref: str) -> list[Revision]:
        return [_value(Revision, r) for r in self._call("GET", f"/v1/infrastructures/{ref}/revisions")]

    def rollout(self, ref: str) -> Rollout:
        return _value(Rollout, self._call("GET", f"/v1/infrastructures/{ref}/rollout"))

    def rollback(self, ref: str, revision: int | None = None, *, on_event: Any = None,
                 connect_timeout: float = 120.0, wait: float = 600.0) -> Revision:
        job = self._call("POST", f"/v1/infrastructures/{ref}/rollback", json={"revision": revision})
        return _value(Revision, self._job(job, time.monotonic() + wait)["value"])

    def resume(self, ref: str, *, on_event: Any = None, connect_timeout: float = 120.0,
               wait: float = 600.0) -> Rollout:
        job = self._call("POST", f"/v1/infrastructures/{ref}/rollout/resume")
        return _value(Rollout, self._job(job, time.monotonic() + wait)["value"])

    def abort(self, ref: str, *, on_event: Any = None, connect_timeout: float = 120.0,
              wait: float = 600.0) -> Rollout:
        job = self._call("POST", f"/v1/infrastructures/{ref}/rollout/abort")
        return _value(Rollout, self._job(job, time.monotonic() + wait)["value"])

    def validate(self, spec: Any, *, format: str | None = None) -> Any:
        from cloudherd.api.client import SyncClient

        return SyncClient().validate(spec, format=format)  # reads the files only: no state, no server


def _value(cls: type[T], data: Any) -> T:
    """A typed value from the server's JSON: the computed fields it carries (``ok``, ``seconds``…) left out,
    as the values are made anew from their stored fields."""
    return cls.model_validate(_without_computed(cls, data))


def _without_computed(annotation: Any, data: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(data, dict):
        kept = {k: v for k, v in data.items() if k not in annotation.model_computed_fields}
        for name, field in annotation.model_fields.items():
            if name in kept:
                kept[name] = _without_computed(field.annotation, kept[name])
        return kept
    args = [a for a in get_args(annotation) if a is not type(None) and a is not Ellipsis]
    if isinstance(data, list) and args:
        return [_without_computed(args[0], item) for item in data]
    if len(args) == 1 and get_origin(annotation) in (Union, UnionType):
        return _without_computed(args[0], data)
    return data


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _bundle(spec: Any) -> tuple[bytes, str]:
    """The spec and the files beside it as a tar.gz (the spec as cloudherd.yml at its top)."""
    paths = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    if len(paths) != 1:
        raise UsageError("through a server, give one spec file (merge OGC layouts locally with `cloudherd convert`)")
    path = Path(paths[0])
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    blob, total = io.BytesIO(), 0
    with tarfile.open(fileobj=blob, mode="w:gz") as archive:
        archive.add(path, arcname="cloudherd.yml")
        for item in sorted(path.parent.rglob("*")):
            relative = item.relative_to(path.parent)
            if item == path or not item.is_file() or item.is_symlink() or \
                    any(part in SKIPPED_FOLDERS for part in relative.parts) or relative.name == "cloudherd.yml":
                continue
            total += item.stat().st_size
            if total > BUNDLE_LIMIT:
                raise UsageError(f"the files beside {path.name} are more than {BUNDLE_LIMIT >> 20} MiB: put the spec "
                                 "in a folder of its own")
            archive.add(item, arcname=str(relative))
    return blob.getvalue(), "application/gzip"
