"""cloudherd's own REST routes, under ``/v1``: JSON in and out, the API's typed values as the bodies (so
their JSON Schema is the OpenAPI schema), real status codes.

Every route needs a bearer token and sees only the caller's infrastructures: another user's id answers
404 exactly as a missing one does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from cloudherd.api import views
from cloudherd.api.auth import Principal, authenticate
from cloudherd.api.types import (
    Action,
    CostReport,
    Event,
    Group,
    Infrastructure,
    InfrastructureSummary,
    Job,
    Node,
    Plan,
    Revision,
    Rollout,
    Why,
)
from cloudherd.api.types import ScaleResult as ScaleAnswer
from cloudherd.errors import UsageError
from cloudherd.inputs import SURROGATE, whole
from cloudherd.lifecycle import InfraState
from cloudherd.server.deps import Caller, owned, runtime_of, spec_upload
from cloudherd.server.errors import Conflict, NotFound, clean
from cloudherd.server.gate import CALL_LIMIT, body_limit
from cloudherd.server.live import DENIED
from cloudherd.server.runtime import Runtime
from cloudherd.server.uploads import discard
from cloudherd.state.models import Infrastructure as InfraRow
from cloudherd.times import as_utc


async def text_only(request: Request) -> None:
    """A JSON body's strings are text: JSON may write a lone surrogate (``"\\ud800"``), which no UTF-8 carries,
    and FastAPI's own answer to it (the value echoed back) could not be written (a 500).  It is refused here,
    400 with its place, before the body is validated; a body that is no JSON is left to FastAPI to say so."""
    if "json" not in request.headers.get("content-type", "") or \
            body_limit(request.method, request.url.path) != CALL_LIMIT:  # a spec: its loader refuses them
        return
    try:
        data = json.loads(await request.body())
    except ValueError:
        return
    where = _lone_surrogate(data, "body")
    if where is not None:
        raise UsageError(f"{where}: a lone surrogate (such as \\ud800) is not text: send UTF-8 text")


def _lone_surrogate(value: Any, where: str) -> str | None:
    """The place of the first string (key or value) holding a lone surrogate, if any."""
    if isinstance(value, str):
        return where if SURROGATE.search(value) else None
    if isinstance(value, list):
        return next((w for i, item in enumerate(value) if (w := _lone_surrogate(item, f"{where}[{i}]"))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if SURROGATE.search(key):
                return f"{where} (a key)"
            found = _lone_surrogate(item, f"{where}.{key}")
            if found is not None:
                return found
    return None


# every route's JSON call body is checked, not only the routes that were found to fail
router = APIRouter(prefix="/v1", tags=["infrastructures"], dependencies=[Depends(text_only)])
SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
            "application/gzip": {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "A spec (YAML or JSON, scripts inline), or a tar.gz bundle of the spec and its files.",
    }
}


class ScaleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    change: str = Field(description="+N, -N or =N (or N)", examples=["+1", "=5"], max_length=12)
    victims: list[str] = Field(default_factory=list, description="Nodes to remove first: names, ids or addresses",
                               max_length=1000)


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    revision: int | None = Field(default=None, ge=1, le=2**31 - 1, description="default: the one before")


class ExecBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1, max_length=100_000)
    group: list[str] = Field(default_factory=list, max_length=100)
    node: list[str] = Field(default_factory=list, max_length=10_000)
    timeout: float = Field(default=30.0, gt=0, le=3600)
    command_timeout: float | None = Field(default=None, gt=0, le=86_400)




@router.get("/infrastructures", response_model=list[InfrastructureSummary])
async def list_infrastructures(request: Request, who: Caller, all: bool = False) -> list[InfrastructureSummary]:
    """The caller's infrastructures, oldest first (destroyed ones with ``all``)."""
    rows = runtime_of(request).store.infrastructures(include_destroyed=all, owner_id=who.user_id)
    return [views.summary(r) for r in rows]


@router.get("/cost", response_model=CostReport)
async def cost(request: Request, who: Caller, infrastructure: str | None = None,
               since: datetime | None = None) -> CostReport:
    """What the caller's machines have cost, by infrastructure, group and provider (one infrastructure's with
    ``infrastructure``), from ``since`` until now."""
    runtime = runtime_of(request)
    ref = owned(runtime, who, infrastructure).id if infrastructure else None
    return await runtime.client.cost(ref, since=as_utc(since) if since else None, owner=who.user_id)


@router.post("/infrastructures", status_code=201, response_model=InfrastructureSummary, openapi_extra=SPEC_BODY)
async def create_infrastructure(request: Request, response: Response, who: Caller,
                                format: Annotated[str | None, Query(pattern="^(native|ogc|occopus)$")] = None,
                                attach: bool = True, converge: bool = False,
                                ttl: Annotated[float | None, Query(gt=0, le=366 * 86400)] = None,
                                ) -> InfrastructureSummary:
    """Record an infrastructure from a spec; the server's manager makes it (watch its events) and, attached,
    keeps it.  409 when the name is taken, 400 with the spec's one-line error.  With ``converge``, a name of
    the caller's that is active already is brought to the new spec instead (200), as ``cloudherd up`` does."""
    runtime = runtime_of(request)
    path = await spec_upload(request)
    try:
        existing = None
        if converge:
            existing = runtime.store.active_named(runtime.client._load(path, format, runtime.within).spec.name)
            if existing is not None and existing.owner_id != who.user_id:
                raise Conflict(f"the name {existing.name} is taken")
        infra_id = await runtime.client.submit(path, format=format, owner=who.user_id, attach=attach, wait=60.0,
                                               new_only=not converge, within=runtime.within, ttl=ttl)
    except BaseException:
        discard(path)
        raise
    if existing is not None:
        response.status_code = 200
    runtime.poke(infra_id)
    response.headers["Location"] = f"/v1/infrastructures/{infra_id}"
    return views.summary(runtime.store.infrastructure(infra_id))


@router.post("/plan", response_model=Plan, openapi_extra=SPEC_BODY)
async def plan(request: Request, who: Caller,
               format: Annotated[str | None, Query(pattern="^(native|ogc|occopus)$")] = None) -> Plan:
    """What creating (or, for a name of yours that is active, converging) a spec would change; changes nothing."""
    runtime = runtime_of(request)
    path = await spec_upload(request)
    try:
        loaded = runtime.client._load(path, format, runtime.within)
        existing = runtime.store.active_named(loaded.spec.name)
        if existing is not None and existing.owner_id != who.user_id:
            raise Conflict(f"the name {loaded.spec.name} is taken")
        return await runtime.client.plan(path, format=format, within=runtime.within)
    finally:
        discard(path)


@router.get("/infrastructures/{ref}", response_model=Infrastructure)
async def get_infrastructure(request: Request, ref: str, who: Caller) -> Infrastructure:
    runtime = runtime_of(request)
    return await runtime.client.status(owned(runtime, who, ref).id)


@router.delete("/infrastructures/{ref}", status_code=202, response_model=Job)
async def delete_infrastructure(request: Request, ref: str, who: Caller) -> Job:
    """Tear down in the background (after the pass in progress, if any); ``GET /v1/jobs/{id}`` says when done."""
    runtime = runtime_of(request)
    infra = owned(runtime, who, ref)
    if infra.state == InfraState.DESTROYED:
        raise Conflict(f"{infra.name} ({infra.id}) is destroyed already")
    if infra.state == InfraState.DESTROYING:
        raise Conflict(f"{infra.name} ({infra.id}) is being torn down already")
    return _job(runtime.tear_down(infra.id, who.user_id))


@router.get("/infrastructures/{ref}/groups", response_model=list[Group])
async def groups(request: Request, ref: str, who: Caller) -> tuple[Group, ...]:
    runtime = runtime_of(request)
    return (await runtime.client.status(owned(runtime, who, ref).id)).groups


@router.get("/infrastructures/{ref}/nodes", response_model=list[Node])
async def nodes(request: Request, ref: str, who: Caller, all: bool = False) -> tuple[Node, ...]:
    """The live nodes (every node it ever had with ``all``)."""
    runtime = runtime_of(request)
    infra = await runtime.client.status(owned(runtime, who, ref).id)
    return infra.nodes if all else infra.live


@router.get("/infrastructures/{ref}/nodes/{name}", response_model=Node)
async def node(request: Request, ref: str, name: str, who: Caller) -> Node:
    runtime = runtime_of(request)
    infra = await runtime.client.status(owned(runtime, who, ref).id)
    try:
        return infra.node(name)
    except KeyError:
        raise NotFound(f"no live node '{name}' in {infra.name}") from None


@router.get("/nodes/{name}/why", response_model=Why)
async def why(request: Request, name: str, who: Caller, infrastructure: str | None = None) -> Why:
    """Why a node exists: the event that made it and the chain of causes behind it, newest first."""
    runtime = runtime_of(request)
    ref = owned(runtime, who, infrastructure).id if infrastructure else None
    answer = await runtime.client.why(name, ref)
    owned(runtime, who, answer.infrastructure_id)  # someone else's node: the same 404 as a missing one
    return answer


@router.post("/infrastructures/{ref}/groups/{group}/scale", status_code=202, response_model=ScaleAnswer)
async def scale(request: Request, ref: str, group: str, body: ScaleBody, who: Caller) -> ScaleAnswer:
    """Ask for a size; the manager's next pass (started at once) applies it, clamped to min / max."""
    runtime = runtime_of(request)
    infra = owned(runtime, who, ref)
    if infra.state in (InfraState.DESTROYED, InfraState.DESTROYING):
        raise Conflict(f"{infra.name} ({infra.id}) is {infra.state}: nothing to scale")
    if group not in {g.name for g in infra.groups}:
        raise NotFound(f"no group '{group}' in {infra.name}")
    result = await runtime.client.scale(infra.id, group, body.change, victims=body.victims, run_pass=False)
    if not infra.attached:
        runtime.spawn(lambda: runtime.client.manage([infra.id], once=True), f"pass {infra.id}")
    runtime.poke(infra.id)
    return result


@router.post("/infrastructures/{ref}/attach", response_model=InfrastructureSummary)
async def attach(request: Request, ref: str, who: Caller) -> InfrastructureSummary:
    runtime = runtime_of(request)
    summary = await runtime.client.attach(owned(runtime, who, ref).id)
    runtime.poke(summary.id)
    return summary


@router.post("/infrastructures/{ref}/detach", response_model=InfrastructureSummary)
async def detach(request: Request, ref: str, who: Caller) -> InfrastructureSummary:
    runtime = runtime_of(request)
    return await runtime.client.detach(owned(runtime, who, ref).id)


@router.post("/infrastructures/{ref}/exec", status_code=202, response_model=Job)
async def exec_job(request: Request, ref: str, body: ExecBody, who: Caller) -> Job:
    """Run a command on the chosen nodes in the background, over the server's warm SSH connections."""
    runtime = runtime_of(request)
    infra = _changeable(runtime, who, ref)
    job = runtime.store.add_job(owner_id=who.user_id, infrastructure_id=infra.id, kind="exec",
                                request=body.model_dump())

    async def work() -> None:
        try:
            await runtime.warm_pool()
            results = await runtime.client.exec(infra.id, body.command, group=body.group or None,
                                                node=body.node or None, timeout=body.timeout,
                                                command_timeout=body.command_timeout)
        except Exception as exc:
            runtime.store.finish_job(job.id, "failed", error=str(exc))
            raise
        dumped = [r.model_dump(mode="json", exclude={"ok"}) for r in results]
        runtime.store.finish_job(job.id, "done", {"results": dumped})

    runtime.spawn(work, f"exec {job.id}")
    return _job(job)


@router.get("/infrastructures/{ref}/revisions", response_model=list[Revision])
async def revisions(request: Request, ref: str, who: Caller) -> list[Revision]:
    """The releases applied to it, oldest first (``cloudherd history``)."""
    runtime = runtime_of(request)
    return await runtime.client.history(owned(runtime, who, ref).id)


@router.get("/infrastructures/{ref}/rollout", response_model=Rollout)
async def rollout(request: Request, ref: str, who: Caller) -> Rollout:
    """Where its latest release stands: each rolling group's nodes on it and behind it."""
    runtime = runtime_of(request)
    return await runtime.client.rollout(owned(runtime, who, ref).id)


@router.post("/infrastructures/{ref}/rollback", status_code=202, response_model=Job)
async def rollback(request: Request, ref: str, body: RollbackBody, who: Caller) -> Job:
    """Apply an earlier release again (default: the newest applied one before the current), in the background."""
    runtime = runtime_of(request)
    infra = _changeable(runtime, who, ref)
    return _background(runtime, who, infra.id, "rollback", body.model_dump(),
                       lambda: runtime.client.rollback(infra.id, body.revision))


@router.post("/infrastructures/{ref}/rollout/{action}", status_code=202, response_model=Job)
async def rollout_action(request: Request, ref: str, action: str, who: Caller) -> Job:
    """``resume`` a paused rollout to its end, or ``abort`` it (back to the release before), in the background."""
    runtime = runtime_of(request)
    if action not in ("resume", "abort"):
        raise NotFound(f"no rollout action '{action}' (resume or abort)")
    infra = _changeable(runtime, who, ref)
    change = runtime.client.resume if action == "resume" else runtime.client.abort
    return _background(runtime, who, infra.id, action, {}, lambda: change(infra.id))


def _changeable(runtime: Runtime, who: Principal, ref: str) -> InfraRow:
    infra = owned(runtime, who, ref)
    if infra.state in (InfraState.DESTROYED, InfraState.DESTROYING):
        raise Conflict(f"{infra.name} ({infra.id}) is {infra.state}")
    return infra


def _background(runtime: Runtime, who: Principal, infra_id: str, kind: str, request: dict[str, Any],
                work: Any) -> Job:
    """A job that runs ``work`` (a coroutine function returning a typed value, the job's ``value`` once done)."""
    job = runtime.store.add_job(owner_id=who.user_id, infrastructure_id=infra_id, kind=kind, request=request)

    async def run() -> None:
        try:
            value = await work()
        except Exception as exc:
            runtime.store.finish_job(job.id, "failed", error=str(exc))
            raise
        runtime.store.finish_job(job.id, "done", {"value": value.model_dump(mode="json")})

    runtime.spawn(run, f"{kind} {job.id}")
    return _job(job)


@router.get("/jobs/{job_id}", response_model=Job, tags=["jobs"])
async def get_job(request: Request, job_id: str, who: Caller) -> Job:
    row = runtime_of(request).store.job(job_id)
    if row is None or row.owner_id != who.user_id:
        raise NotFound(f"no job '{job_id}'")
    return _job(row)


@router.get("/infrastructures/{ref}/logs", response_model=list[Action])
async def logs(request: Request, ref: str, who: Caller, node: str | None = None) -> list[Action]:
    """Recorded actions (scripts, teardowns, exec), optionally of one node."""
    runtime = runtime_of(request)
    return await runtime.client.logs(owned(runtime, who, ref).id, node)


@router.get("/infrastructures/{ref}/events", response_model=list[Event],
            responses={200: {"content": {"text/event-stream": {}}}})
async def events(request: Request, ref: str, who: Caller,
                 after: Annotated[int, Query(ge=0, le=2**62)] = 0, follow: bool = True,
                 last_event_id: Annotated[str | None, Header()] = None) -> Any:
    """The event log as Server-Sent Events (``id`` is the event's id: reconnect with ``Last-Event-ID`` to
    resume); with ``Accept: application/json`` (or ``follow=false``) the events so far as a JSON list."""
    runtime = runtime_of(request)
    infra = owned(runtime, who, ref)
    start = whole(last_event_id or "")
    if last_event_id and start is None:
        raise UsageError("Last-Event-ID is an event id: ASCII digits, at most 18")
    start = after if start is None else start
    if "application/json" in request.headers.get("accept", "") and "text/event-stream" not in \
            request.headers.get("accept", ""):
        return await runtime.client.events(infra.id, after=start)
    return StreamingResponse(_stream(request, runtime, infra.id, start, follow), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _stream(request: Request, runtime: Runtime, infra_id: str, after: int, follow: bool) -> AsyncIterator[str]:
    """The events after ``after``, then (following) each new batch as it is written.  What wakes a reader is
    the server's one sampler of this infrastructure's newest event id (``runtime.live``), however many
    readers follow it; each reader then reads only what it has not seen.  The token is checked again every
    few seconds: a revoked one ends the stream with a ``denied`` event."""
    last = after
    yield "retry: 2000\n\n"

    async def fresh() -> AsyncGenerator[str, None]:
        nonlocal last
        while True:
            batch = await runtime.client.events(infra_id, after=last, limit=500)
            for event in batch:
                last = event.id
                data = clean(json.dumps(event.model_dump(mode="json")))
                yield f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"
            if len(batch) < 500:
                return

    async with contextlib.aclosing(fresh()) as texts:
        async for text in texts:
            yield text
    if not follow:
        return
    token = request.headers.get("authorization", "").partition(" ")[2].strip()

    async def allowed() -> bool:
        return await asyncio.to_thread(authenticate, runtime.store, token) is not None

    changes = runtime.live.changes(f"events {infra_id}", lambda: str(runtime.store.newest_event_id(infra_id)),
                                   allowed)
    async with contextlib.aclosing(changes):  # a reader that goes leaves the watch at once
        async for change in changes:
            if change == DENIED:
                yield "event: denied\ndata: the API token is no longer valid\n\n"
                return
            if not change:
                yield ": keep-alive\n\n"
                continue
            async with contextlib.aclosing(fresh()) as texts:
                async for text in texts:
                    yield text


def _job(row: Any) -> Job:
    from cloudherd.api.types import ExecResult

    results = tuple(ExecResult.model_validate(r) for r in (row.result or {}).get("results") or [])
    return Job(id=row.id, kind=row.kind, state=row.state, infrastructure=row.infrastructure_id,
               created_at=row.created_at, ended_at=row.ended_at, error=row.error, results=results,
               value=(row.result or {}).get("value"))
