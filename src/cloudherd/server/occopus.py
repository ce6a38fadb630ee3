"""Occopus' REST routes, in Occopus' request and answer shapes, for the scripts of users who come from it —
with what Occopus lacked: a token on every route, and real status codes (Occopus answered errors with
HTTP 200 and a ``status_code`` field; here a missing infrastructure is a 404, a bad description a 400).

The infrastructure id in these routes is cloudherd's id (a name or id prefix works too).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from cloudherd.api.auth import Principal
from cloudherd.lifecycle import InfraState, NodeState
from cloudherd.server.deps import Caller, owned, runtime_of, spec_upload
from cloudherd.server.errors import Conflict, NotFound
from cloudherd.server.uploads import discard

Count = Annotated[int, Path(ge=0, le=10000)]
router = APIRouter(prefix="/infrastructures", tags=["occopus"])


@router.post("/", openapi_extra={"requestBody": {"required": True, "content": {
    "application/yaml": {"schema": {"type": "string"}}}}})
async def submit_infrastructure(request: Request, who: Caller) -> dict[str, str]:
    """An Occopus infrastructure description (raw YAML; node definitions imported with ``cloudherd import``),
    or a cloudherd spec.  The infrastructure is made and maintained by the server's manager."""
    runtime = runtime_of(request)
    path = await spec_upload(request)
    try:
        infra_id = await runtime.client.submit(path, owner=who.user_id, attach=True, wait=10.0, new_only=True,
                                               within=runtime.within)
    except BaseException:
        discard(path)
        raise
    runtime.poke(infra_id)
    return {"infraid": infra_id}


@router.get("/")
async def list_infrastructures(request: Request, who: Caller) -> dict[str, list[str]]:
    """The ids of the caller's live infrastructures.  Occopus' own server spelled the key ``infrastuctures``
    (its documentation ``infrastructures``): both are given, so that clients of either work."""
    ids = [i.id for i in runtime_of(request).store.infrastructures(owner_id=who.user_id)]
    return {"infrastructures": ids, "infrastuctures": ids}


@router.get("/{infraid}")
async def report(request: Request, infraid: str, who: Caller) -> dict[str, Any]:
    """Per node (group): its instances with ``resource_address`` and ``state``, and its ``scaling``."""
    runtime = runtime_of(request)
    infra = await runtime.client.status(owned(runtime, who, infraid).id)
    result: dict[str, Any] = {}
    for group in infra.groups:
        live = [n for n in infra.live if n.group == group.name]
        result[group.name] = {
            "instances": {n.id: {"resource_address": n.address, "state": _state(n.state)} for n in live},
            "scaling": {"actual": len(live), "target": group.count, "min": group.min if group.min is not None
                        else group.count, "max": group.max if group.max is not None else group.count},
        }
    return result


@router.delete("/{infraid}")
async def tear_down(request: Request, infraid: str, who: Caller) -> dict[str, str]:
    """Stops maintaining and tears down (in the background: ``GET`` it to see it go)."""
    runtime = runtime_of(request)
    infra = owned(runtime, who, infraid)
    if infra.state == InfraState.DESTROYED:
        raise NotFound(f"infrastructure '{infraid}' does not exist")
    if infra.state == InfraState.DESTROYING:
        raise Conflict(f"infrastructure {infra.id} is being torn down already")
    runtime.tear_down(infra.id, who.user_id)
    return {"infraid": infra.id}


@router.post("/{infraid}/attach")
async def attach(request: Request, infraid: str, who: Caller) -> dict[str, str]:
    runtime = runtime_of(request)
    infra = owned(runtime, who, infraid)
    if infra.attached:
        raise Conflict(f"infrastructure {infra.id} is already being maintained")
    await runtime.client.attach(infra.id)
    runtime.poke(infra.id)
    return {"infraid": infra.id}


@router.post("/{infraid}/detach")
async def detach(request: Request, infraid: str, who: Caller) -> dict[str, str]:
    runtime = runtime_of(request)
    infra = owned(runtime, who, infraid)
    if not infra.attached:
        raise Conflict(f"infrastructure {infra.id} is not maintained")
    await runtime.client.detach(infra.id)
    return {"infraid": infra.id}


@router.post("/{infraid}/scaleup/{nodename}")
async def scale_up_one(request: Request, infraid: str, nodename: str, who: Caller) -> dict[str, Any]:
    return await scale_up(request, infraid, nodename, 1, who)


@router.post("/{infraid}/scaleup/{nodename}/{count}")
async def scale_up(request: Request, infraid: str, nodename: str, count: Count, who: Caller) -> dict[str, Any]:
    await _scale(request, who, infraid, nodename, f"+{count}")
    return {"method": "scaleup", "infraid": infraid, "nodename": nodename, "count": count}


@router.post("/{infraid}/scaledown/{nodename}")
async def scale_down_any(request: Request, infraid: str, nodename: str, who: Caller) -> dict[str, Any]:
    await _scale(request, who, infraid, nodename, "-1")
    return {"method": "scaledown", "infraid": infraid, "nodename": nodename, "nodeid": None}


@router.post("/{infraid}/scaledown/{nodename}/{nodeid}")
async def scale_down(request: Request, infraid: str, nodename: str, nodeid: str, who: Caller) -> dict[str, Any]:
    """Remove that instance (by id, name or address)."""
    await _scale(request, who, infraid, nodename, "-1", victims=[nodeid])
    return {"method": "scaledown", "infraid": infraid, "nodename": nodename, "nodeid": nodeid}


@router.post("/{infraid}/scaleto/{nodename}/{count}")
async def scale_to(request: Request, infraid: str, nodename: str, count: Count, who: Caller) -> dict[str, Any]:
    await _scale(request, who, infraid, nodename, f"={count}")
    return {"method": "scaleto", "infraid": infraid, "nodename": nodename, "count": count}


async def _scale(request: Request, who: Principal, infraid: str, nodename: str, change: str,
                 victims: list[str] | None = None) -> None:
    from cloudherd.errors import UsageError

    written = str(request.path_params.get("count", ""))
    if not (written.isascii() and written.isdigit() and len(written) <= 5) and "count" in request.path_params:
        raise UsageError(f"a count is at most 5 ASCII digits, got {len(written)} characters")
    runtime = runtime_of(request)
    infra = owned(runtime, who, infraid)
    if nodename not in {g.name for g in infra.groups}:
        raise NotFound(f"node '{nodename}' does not exist in infrastructure '{infraid}'")
    try:
        await runtime.client.scale(infra.id, nodename, change, victims=victims or (), run_pass=False)
    except UsageError as exc:
        if victims and "no live node" in str(exc):
            raise NotFound(str(exc)) from None
        raise
    if not infra.attached:
        runtime.spawn(lambda: runtime.client.manage([infra.id], once=True), f"pass {infra.id}")
    runtime.poke(infra.id)


_OCCOPUS_STATES = {NodeState.READY: "ready", NodeState.UNHEALTHY: "ready", NodeState.FAILED: "fail",
                   NodeState.DEAD: "shutdown", NodeState.STOPPED: "shutdown", NodeState.TERMINATING: "shutdown",
                   NodeState.DRAINING: "shutdown"}  # waiting for a launch hook: still "init"


def _state(state: NodeState) -> str:
    """Occopus' node states: ``init`` (being made), ``ready``, ``fail``, ``shutdown``."""
    return _OCCOPUS_STATES.get(state, "init")
