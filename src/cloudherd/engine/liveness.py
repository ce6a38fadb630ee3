"""What the providers say of an infrastructure's nodes: the one liveness check every command shares.

``status`` / ``exec`` (which record what they find), ``plan`` (which records nothing) and ``up`` (which
replaces the dead) all ask the same question the same way: one list-by-tag call per provider, each
recorded machine looked up in the answer.  Asking in one place keeps their answers equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cloudherd.engine.context import Providers
from cloudherd.errors import CloudherdError
from cloudherd.lifecycle import COUNTED_NODE_STATES, NodeState
from cloudherd.providers.base import TAG_INFRA
from cloudherd.state.models import Node


@dataclass(frozen=True)
class Observed:
    """A node whose recorded state the providers contradict: what it is now, and why."""

    node_id: str
    state: NodeState
    reason: str | None


async def observe(providers: Providers, infra_id: str, nodes: Sequence[Node]) -> list[Observed]:
    """Changes of state the providers show for ``nodes`` that hold a machine (one list per provider).

    A provider that cannot be asked now is skipped: what we knew of its nodes stands, since a failed
    call says nothing about the machines.
    """
    held = [n for n in nodes if n.provider_id and n.state in COUNTED_NODE_STATES]
    changes: list[Observed] = []
    for provider_name in sorted({n.provider for n in held}):
        try:
            found = {i.id: i for i in await providers.get(provider_name).list({TAG_INFRA: infra_id})}
        except CloudherdError:
            continue
        for node in (n for n in held if n.provider == provider_name):
            instance = found.get(node.provider_id or "")
            if instance is None or instance.state in ("dead", "terminated"):
                why = "its machine is gone" if instance is not None else "the provider no longer lists it"
                changes.append(Observed(node.id, NodeState.DEAD, why))
            elif instance.state == "stopped" and node.state != NodeState.STOPPED:
                changes.append(Observed(node.id, NodeState.STOPPED, "the provider reports it stopped"))
    return changes
