"""Machines that leave a group without ending (detach) and machines that join a group they were not made for
(attach), as AWS Auto Scaling's DetachInstances and AttachInstances do.

Why a pass does it, not the command that asked: a detach retags a machine and ends its node's row, an attach
retags one and writes a row; done beside a pass, that pass could list the infrastructure between the two steps,
miss the machine (or find one it does not know) and replace or retire it.  So the command writes a request (a
scale request of kind ``detach`` or ``attach``) and the next pass, which holds the infrastructure, carries it out
between observing the machines and converging the groups.

A detached machine keeps running with its cloudherd tags cleared, so neither its old infrastructure nor ``gc``
counts it as theirs; its node's row ends with the reason ``detached …`` (and is how ``attach`` finds the
machine again by the node's name or id).  An attached machine is retagged for its new group and becomes a node
to deploy (``booting``): the pass's converge runs the group's scripts on it like on any new node.  A machine
that came back from a detach keeps its node's id (AWS keeps an instance's id across both).
"""

from __future__ import annotations

from collections.abc import Sequence

from cloudherd.engine.session import RunSession
from cloudherd.engine.templates import new_indices
from cloudherd.errors import CloudherdError
from cloudherd.lifecycle import NodeState
from cloudherd.providers.base import TAG_GROUP, TAG_INFRA, Instance
from cloudherd.spec import LoadedSpec
from cloudherd.state.models import Group, Infrastructure, Node, ScaleRequest
from cloudherd.state.repo import Store
from cloudherd.state.repo_choices import DETACHED_REASON

DETACH = "detach"
ATTACH = "attach"
MEMBERSHIP_EVENT = "membership"  # the events of both (an infrastructure's own attach / detach are the manager's)
CLEARED = {TAG_INFRA: "", TAG_GROUP: ""}  # a detached machine's cloudherd tags: nobody's


async def move_members(store: Store, infra: Infrastructure, loaded: LoadedSpec, run: RunSession,
                       scaled: list[str]) -> bool:
    """Carry out the pending detach and attach requests of ``infra``, each told as an event and in ``scaled``;
    returns whether there was any.  Each starts from the group's size as the one before it left it."""
    done = False
    for request in store.pending_scale_requests(infra.id):
        if request.kind not in (DETACH, ATTACH):
            continue
        done = True
        try:
            if request.group_name not in loaded.spec.groups:
                outcome = f"{request.group_name}: no such group"
            elif request.kind == DETACH:
                outcome = await _detach(store, infra, request, run)
            else:
                outcome = await _attach(store, infra, request, run)
        except CloudherdError as exc:  # the provider refused (a machine gone, tags it cannot set): said, not retried
            outcome = f"{request.group_name}: {request.kind} failed: {exc}"
            store.add_event(infra.id, MEMBERSHIP_EVENT, outcome)
        store.consume_scale_request(request.id, outcome)
        scaled.append(outcome)
    return done


async def _detach(store: Store, infra: Infrastructure, request: ScaleRequest, run: RunSession) -> str:
    group = request.group_name
    named = set((request.victims or {}).get("nodes") or [])
    nodes = store.nodes(infra.id)
    leaving = [n for n in nodes if n.id in named and n.group_name == group and n.provider_id
               and n.state not in (NodeState.TERMINATED, NodeState.TERMINATING, NodeState.DRAINING)]
    if not leaving:
        return f"{group}: nothing to detach (the nodes named have ended)"
    for provider in sorted({n.provider for n in leaving}):
        await run.providers.get(provider).tag([n.provider_id or "" for n in leaving if n.provider == provider],
                                              CLEARED)
    counted = [n for n in leaving if not n.standby and not n.warm]  # what the group's size holds of them
    row = _group_now(store, infra.id, group)
    count = max(row.count - len(counted), 0) if request.amount else None
    names = ", ".join(f"{n.name} ({n.provider_id})" for n in leaving)
    size = f"size {row.count} → {count}" if count is not None else "replaced"
    message = f"{group}: detached {names}, machines kept running ({size})"
    store.detach_nodes(infra.id, group, {n.id: f"{DETACHED_REASON} from {infra.name}/{group}: machine "
                                               f"{n.provider_id} kept running" for n in leaving}, count, message)
    return message


async def _attach(store: Store, infra: Infrastructure, request: ScaleRequest, run: RunSession) -> str:
    group = request.group_name
    row = _group_now(store, infra.id, group)
    wanted = list(dict.fromkeys((request.victims or {}).get("machines") or []))
    driver = run.providers.get(row.provider)
    found = {i.id: i for i in await driver.list({})}
    held = store.machine_holders(row.provider, wanted)
    refused = _refusals(wanted, found, held)
    if refused:
        message = f"{group}: attach refused: {'; '.join(refused)}"
        store.add_event(infra.id, MEMBERSHIP_EVENT, message)
        return message
    await driver.tag(wanted, {TAG_INFRA: infra.id, TAG_GROUP: group})
    nodes = store.nodes(infra.id)
    free = iter(new_indices(nodes, group, len(wanted)))
    moved: dict[str, dict[str, object]] = {}
    made: list[dict[str, object]] = []
    names = []
    for machine in wanted:
        index = next(free)
        name = f"{infra.name}-{group}-{index}"
        fields = _fields(found[machine], group, index, name, row.provider)
        before = store.detached_node(machine)
        if before is not None:
            moved[before.id] = fields
        else:
            made.append(fields)
        names.append(f"{machine} as {name}")
    count = row.count + len(wanted)
    message = f"{group}: attached {', '.join(names)} (size {row.count} → {count})"
    store.attach_nodes(infra.id, group, moved, made, count, message)
    return message


def _group_now(store: Store, infra_id: str, group: str) -> Group:
    """The group's row as it is now: an earlier request of this pass may have changed its size."""
    return next(g for g in store.infrastructure(infra_id).groups if g.name == group)


def _refusals(wanted: Sequence[str], found: dict[str, Instance], held: dict[str, Node]) -> list[str]:
    """Why machines cannot be taken: not running, a node's, or tagged as another infrastructure's (whatever name
    its provider has there: a cloud account can be two providers' entries)."""
    refused = []
    for machine in wanted:
        if machine not in found or not found[machine].alive:
            refused.append(f"no running machine {machine}")
        elif machine in held:
            refused.append(f"{machine} is node {held[machine].name}'s")
        elif found[machine].tags.get(TAG_INFRA):
            refused.append(f"{machine} carries infrastructure {found[machine].tags[TAG_INFRA]}'s tag "
                           "(`cloudherd gc` / `adopt` are for such machines)")
    return refused


def _fields(instance: Instance, group: str, index: int, name: str, provider: str) -> dict[str, object]:
    """A node's row for an attached machine: a node to deploy, with nothing of a life it had before."""
    return {"group_name": group, "name": name, "index": index, "provider": provider, "provider_id": instance.id,
            "state": NodeState.BOOTING.value, "address": instance.address,
            "private_address": instance.private_address, "port": instance.port, "ssh_user": instance.ssh_user,
            "host_key": instance.host_key, "workdir": instance.workdir, "reason": None, "release": None,
            "shape": None, "health": None, "failures": 0, "failing_since": None, "last_check": None,
            "ready_at": None, "protected": False, "standby": False, "warm": False}
