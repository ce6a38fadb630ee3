"""The native API's routes for what a user sets on a running fleet: a node's protection from scale-in, standby,
machines detached from a group or attached to one, and a group's suspended processes
(:mod:`cloudherd.api.client_choices`).  The server's manager honours them at its next pass, which each route asks
for at once."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from cloudherd.api.types import Group, HookHold, InfrastructureSummary, Node
from cloudherd.server.deps import Caller, owned, runtime_of
from cloudherd.server.native import _changeable, text_only
from cloudherd.server.runtime import Runtime
from cloudherd.state.models import Infrastructure as InfraRow

router = APIRouter(prefix="/v1", tags=["infrastructures"], dependencies=[Depends(text_only)])


class NodesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nodes: list[str] = Field(min_length=1, max_length=1000, description="Names, ids or addresses")


class ProtectBody(NodesBody):
    protected: bool = Field(default=True, description="False: give the nodes back to scale-in")


class StandbyBody(NodesBody):
    enter: bool = Field(default=True, description="False: bring the nodes back into service")
    replace: bool = Field(default=False, description="Entering: make new nodes in their place (the size is kept)")


class DetachBody(NodesBody):
    replace: bool = Field(default=False, description="Make new nodes in their place (the size is kept)")


class AttachBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    machines: list[str] = Field(min_length=1, max_length=1000,
                                description="Machine ids of the group's provider, or detached nodes' names or ids")


class ProcessesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    processes: list[str] = Field(default_factory=list, max_length=20,
                                 description="cloudherd's names or AWS's; none: every process")
    reason: str | None = Field(default=None, max_length=500)


def _pass_soon(runtime: Runtime, infra: InfraRow) -> None:
    """The manager applies it: at once for an attached infrastructure, by a pass of its own otherwise."""
    if not infra.attached:
        runtime.spawn(lambda: runtime.client.manage([infra.id], once=True), f"pass {infra.id}")
    runtime.poke(infra.id)


@router.post("/infrastructures/{ref}/nodes/protection", response_model=list[Node])
async def protect(request: Request, ref: str, body: ProtectBody, who: Caller) -> list[Node]:
    """Keep nodes from scale-in (or give them back to it)."""
    runtime = runtime_of(request)
    infra = _changeable(runtime, who, ref)
    nodes = await runtime.client.protect(infra.id, body.nodes, protected=body.protected)
    _pass_soon(runtime, infra)
    return nodes


@router.post("/infrastructures/{ref}/nodes/standby", response_model=list[Node])
async def standby(request: Request, ref: str, body: StandbyBody, who: Caller) -> list[Node]:
    """Put nodes in standby (out of service, kept), or bring them back."""
    runtime = runtime_of(request)
    infra = _changeable(runtime, who, ref)
    nodes = await runtime.client.standby(infra.id, body.nodes, enter=body.enter, replace=body.replace,
                                         run_pass=False)
    _pass_soon(runtime, infra)
    return nodes


@router.post("/infrastructures/{ref}/nodes/detach", response_model=list[Node])
async def detach_nodes(request: Request, ref: str, body: DetachBody, who: Caller) -> list[Node]:
    """Take nodes out of their group with their machines kept running (the size shrinks, or they are replaced)."""
    runtime = runtime_of(request)
    infra = _changeable(runtime, who, ref)
    nodes = await runtime.client.detach_nodes(infra.id, body.nodes, replace=body.replace, run_pass=False)
    _pass_soon(runtime, infra)
    return nodes


@router.post("/infrastructures/{ref}/groups/{group}/attach", response_model=list[Node])
async def attach_machines(request: Request, ref: str, group: str, body: AttachBody, who: Caller) -> list[Node]:
    """Make running machines nodes of the group (deployed by its scripts; the size grows by as many)."""
    runtime = runtime_of(request)
    infra = _changeable(runtime, who, ref)
    nodes = await runtime.client.attach_machines(infra.id, group, body.machines, run_pass=False, owner=who.user_id)
    _pass_soon(runtime, infra)
    return nodes


@router.post("/infrastructures/{ref}/groups/{group}/suspend", response_model=Group)
async def suspend(request: Request, ref: str, group: str, body: ProcessesBody, who: Caller) -> Group:
    """Suspend a group's processes (all when none is named) until resumed."""
    runtime = runtime_of(request)
    infra = _changeable(runtime, who, ref)
    return await runtime.client.suspend(infra.id, group, body.processes, reason=body.reason)


@router.post("/infrastructures/{ref}/groups/{group}/resume", response_model=Group)
async def resume(request: Request, ref: str, group: str, body: ProcessesBody, who: Caller) -> Group:
    """Resume a group's suspended processes (all when none is named)."""
    runtime = runtime_of(request)
    infra = _changeable(runtime, who, ref)
    answer = await runtime.client.resume_processes(infra.id, group, body.processes)
    _pass_soon(runtime, infra)
    return answer


@router.post("/infrastructures/{ref}/stop", response_model=InfrastructureSummary)
async def stop(request: Request, ref: str, who: Caller) -> InfrastructureSummary:
    """Stop the machines (kept) and suspend the launching processes, until started; the manager's next pass does it
    (started at once)."""
    runtime = runtime_of(request)
    infra = _changeable(runtime, who, ref)
    answer = await runtime.client.stop_machines(infra.id, run_pass=False)
    _pass_soon(runtime, infra)
    return answer


@router.post("/infrastructures/{ref}/start", response_model=InfrastructureSummary)
async def start(request: Request, ref: str, who: Caller) -> InfrastructureSummary:
    """Start a stopped infrastructure: the processes a stop suspended resumed; the manager's next pass starts the
    machines (started at once)."""
    runtime = runtime_of(request)
    infra = _changeable(runtime, who, ref)
    answer = await runtime.client.start_machines(infra.id, run_pass=False)
    _pass_soon(runtime, infra)
    return answer


class HookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: str = Field(min_length=1, max_length=300, description="The held node: name, id or address")
    hook: str | None = Field(default=None, max_length=100, description="The hook (none: every hold of the node)")
    result: str = Field(default="CONTINUE", pattern="^(CONTINUE|ABANDON|continue|abandon)$")


@router.get("/infrastructures/{ref}/hooks", response_model=list[HookHold])
async def hooks(request: Request, ref: str, who: Caller, done: bool = Query(False)) -> list[HookHold]:
    """The lifecycle-hook holds open now (``done``: the completed ones too)."""
    runtime = runtime_of(request)
    return await runtime.client.hooks(owned(runtime, who, ref).id, done=done)


@router.post("/infrastructures/{ref}/hooks/complete", response_model=list[HookHold])
async def complete_hook(request: Request, ref: str, body: HookBody, who: Caller) -> list[HookHold]:
    """Complete a node's hold with CONTINUE or ABANDON; the manager moves the node on at once."""
    runtime = runtime_of(request)
    infra = _changeable(runtime, who, ref)
    holds = await runtime.client.complete_hook(infra.id, body.node, body.hook, result=body.result, run_pass=False,
                                               by=who.user_name)
    _pass_soon(runtime, infra)
    return holds


@router.post("/infrastructures/{ref}/hooks/heartbeat", response_model=list[HookHold])
async def heartbeat_hook(request: Request, ref: str, body: HookBody, who: Caller) -> list[HookHold]:
    """Keep a node's hold open: its deadline moves on by the hook's timeout."""
    runtime = runtime_of(request)
    return await runtime.client.heartbeat_hook(_changeable(runtime, who, ref).id, body.node, body.hook)
