"""What a node's scripts see: their environment and template context, and the check that renders every
script before anything is made.

Kept apart from the rest of the engine (no SSH, no database at import) so that ``validate`` can render
a spec's scripts against the fleet it describes and stay fast.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cloudherd.engine.ogc_names import ogc_names
from cloudherd.errors import DeployError, SpecError
from cloudherd.lifecycle import GONE_NODE_STATES, NodeState
from cloudherd.remote.scripts import render

if TYPE_CHECKING:
    from cloudherd.spec import LoadedSpec


class NodeLike(Protocol):
    """What templates read of a node: a recorded row, or a stand-in for one still to be made."""

    id: str
    name: str
    group_name: str
    index: int
    state: str
    address: str | None
    private_address: str | None
    port: int
    provider: str
    provider_id: str | None
    infrastructure_id: str


class InfraLike(Protocol):
    id: str
    name: str


@dataclass
class PlannedNode:
    """A node ``up`` will make: known by name and group, its address not yet."""

    id: str
    name: str
    group_name: str
    index: int
    provider: str
    infrastructure_id: str
    state: str = NodeState.PENDING
    address: str | None = "(new)"
    private_address: str | None = None
    port: int = 22
    provider_id: str | None = None


@dataclass
class PlannedInfra:
    id: str
    name: str


def new_indices(nodes: Iterable[NodeLike], group: str, count: int) -> list[int]:
    """Indices for ``count`` new nodes of ``group``: after every index the group ever used, terminated
    nodes included, so that a replacement never takes a gone node's name and logs stay unambiguous."""
    start = max((n.index for n in nodes if n.group_name == group), default=0) + 1
    return list(range(start, start + count))


def planned_node(infra_id: str, infra_name: str, group: str, index: int, provider: str) -> PlannedNode:
    return PlannedNode(id=f"new-{group}-{index}", name=f"{infra_name}-{group}-{index}", group_name=group,
                       index=index, provider=provider, infrastructure_id=infra_id)


def node_env(node: NodeLike, group_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a node's scripts, teardown and exec commands see: its group's ``env`` and who it is.

    One function for every caller: ``plan`` hashes this environment into script digests and ``up``
    compares them, so two builders that drifted apart would make ``plan`` report wrong re-runs.
    """
    return {**(group_env or {}), "CLOUDHERD_NODE": node.name, "CLOUDHERD_GROUP": node.group_name,
            "CLOUDHERD_INFRA": node.infrastructure_id}


def script_digest(source: str, text: str, env: Mapping[str, str]) -> str:
    """What a script run did, as one hash: its name, rendered text and environment (plan and up compare it)."""
    material = json.dumps([source, text, sorted(env.items())], ensure_ascii=False)
    return hashlib.sha256(material.encode()).hexdigest()


def node_view(node: NodeLike) -> dict[str, Any]:
    return {
        "id": node.id, "name": node.name, "group": node.group_name, "index": node.index,
        "address": node.address, "private_address": node.private_address or node.address,
        "port": node.port, "provider": node.provider, "provider_id": node.provider_id,
    }


def template_context(
    node: NodeLike, nodes: Iterable[NodeLike], infra: InfraLike, variables: Mapping[str, Any], env: Mapping[str, str]
) -> dict[str, Any]:
    nodes = list(nodes)
    by_group: dict[str, list[dict[str, Any]]] = {}
    for other in nodes:
        if other.state in GONE_NODE_STATES:
            continue
        by_group.setdefault(other.group_name, []).append(node_view(other))

    def members(group: str) -> list[dict[str, Any]]:
        if group not in by_group:  # an Occopus node name as written (``VINA``, ``my_node``): its group's name
            group = re.sub(r"[^a-z0-9-]+", "-", str(group).lower()).strip("-")
        if group not in by_group:
            known = ", ".join(sorted(by_group)) or "none"
            raise DeployError(f"no group '{group}' with live nodes (groups: {known})")
        return by_group[group]

    def getip(group: str) -> str:
        """The address of the group's first node (Occopus's getip)."""
        return str(members(group)[0]["address"])

    def getipall(group: str) -> list[str]:
        """Every address in the group, in node order."""
        return [str(n["address"]) for n in members(group)]

    def getprivip(group: str) -> str:
        """The private address of the group's first node (its address where the cloud has no private one)."""
        return str(members(group)[0]["private_address"])

    return {
        "node": node_view(node), "nodes": by_group, "infra": {"id": infra.id, "name": infra.name},
        "variables": dict(variables), "env": dict(env),
        "getip": getip, "getipall": getipall, "getprivip": getprivip,
        "infra_id": infra.id, "node_id": node.id,  # Occopus' names for them
        # OGC's names, bound by the first line of a translated Mako script (see cloudherd.spec.mako)
        "ogc": lambda layouts: ogc_names(node, nodes, layouts),
    }


class TemplateError(SpecError):
    """A script or teardown cannot be rendered for the fleet the spec describes."""


def check_templates(loaded: LoadedSpec, fleet: Sequence[NodeLike], infra: InfraLike) -> None:
    """Render every group's scripts and teardown for one node of the group, against ``fleet`` as it will
    be: an undefined name, a missing group in ``getip`` or a failing expression is found here, at
    ``validate`` / ``plan`` time, before any machine exists.  The first problem is raised, with the
    script's file and line."""
    spec = loaded.spec
    for group_name, group in spec.groups.items():
        members = [n for n in fleet if n.group_name == group_name and n.state not in GONE_NODE_STATES]
        node = members[0] if members else planned_node(infra.id, infra.name, group_name, 1, group.provider)
        scripts = [*loaded.scripts.get(group_name, [])]
        scripts += [s for s in (loaded.teardown.get(group_name), loaded.boot.get(group_name)) if s is not None]
        for script in scripts:
            context = template_context(node, fleet, infra, loaded.variables_for(group_name), loaded.env)
            try:
                render(script.source, script.content, context)
            except DeployError as exc:
                raise _located(script.source, str(exc)) from None


def planned_fleet(loaded: LoadedSpec, infra_id: str = "(new)") -> list[PlannedNode]:
    """The nodes a new infrastructure of ``loaded`` would have."""
    spec = loaded.spec
    return [planned_node(infra_id, spec.name, name, index, group.provider)
            for name, group in spec.groups.items() for index in range(1, group.count + 1)]


def _located(source: str, message: str) -> TemplateError:
    """``source:LINE: template error: …`` (as render words it) as a located spec error."""
    head, _, rest = message.partition(": ")
    file, _, line = head.rpartition(":")
    if file == source and line.isdigit():
        return TemplateError(source, int(line), "", rest)
    text = message[len(source) + 2:] if message.startswith(source + ": ") else message
    return TemplateError(source, None, "", text)
