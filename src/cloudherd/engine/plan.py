"""Plan: what ``up`` would change — nodes to create, destroy or replace, scripts to re-run — and nothing else.

The same diff drives ``up`` (it writes the rows the plan says) and ``plan`` / ``up --dry-run`` (they
only show it), so what is shown is what is done.  Reality comes from one list call per provider.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloudherd.engine.context import Providers
from cloudherd.engine.liveness import Observed, observe
from cloudherd.engine.revisions import shape_digest
from cloudherd.engine.rollout import behind
from cloudherd.engine.templates import (
    NodeLike,
    PlannedInfra,
    check_templates,
    new_indices,
    node_env,
    planned_fleet,
    planned_node,
    script_digest,
    template_context,
)
from cloudherd.errors import DeployError
from cloudherd.lifecycle import COUNTED_NODE_STATES, REACHABLE_NODE_STATES, NodeState
from cloudherd.remote.scripts import render
from cloudherd.spec import LoadedSpec
from cloudherd.state.models import Group, Infrastructure, Node
from cloudherd.state.repo import Store


@dataclass
class GroupDiff:
    """One group's part of the plan."""

    name: str
    provider: str
    count: int  # wanted
    current: int  # counted now
    create: int = 0
    destroy: list[Node] = field(default_factory=list)  # surplus, dead, or of a removed group
    replace: list[Node] = field(default_factory=list)  # image / size / provider changed: destroyed and made anew
    reasons: list[str] = field(default_factory=list)
    reruns: dict[str, list[str]] = field(default_factory=dict)  # script source -> node names
    rolling: list[str] = field(default_factory=list)  # nodes behind the new release: replaced batch by batch
    surge: int = 1  # of a rolling group: nodes made per batch
    removed: bool = False  # the group is no longer in the spec
    new: bool = False

    @property
    def changes(self) -> bool:
        return bool(self.create or self.destroy or self.replace or self.reruns or self.rolling)


@dataclass
class Plan:
    name: str
    infrastructure_id: str | None
    groups: list[GroupDiff]

    @property
    def changes(self) -> bool:
        return any(g.changes for g in self.groups)

    def totals(self) -> dict[str, int]:
        return {
            "create": sum(g.create for g in self.groups),
            "destroy": sum(len(g.destroy) for g in self.groups),
            "replace": sum(len(g.replace) + len(g.rolling) for g in self.groups),
            "script_runs": sum(len(nodes) for g in self.groups for nodes in g.reruns.values()),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "infrastructure": self.infrastructure_id, "changes": self.changes,
            "totals": self.totals(),
            "groups": [
                {"name": g.name, "provider": g.provider, "count": g.count, "current": g.current, "new": g.new,
                 "removed": g.removed, "create": g.create, "destroy": [n.name for n in g.destroy],
                 "replace": [n.name for n in g.replace], "reasons": g.reasons, "scripts": g.reruns,
                 "rolling": g.rolling, "surge": g.surge}
                for g in self.groups
            ],
        }


def diff_groups(loaded: LoadedSpec, rows: Sequence[Group], nodes: Sequence[Node], *,
                replace: Collection[str] = (), victims: Collection[str] = ()) -> list[GroupDiff]:
    """Spec versus the recorded groups and nodes (whose states should be fresh).

    ``replace`` names nodes to treat as dead (the manager's failed ones); ``victims`` names nodes to
    remove first when a group shrinks (else the newest go first).  A changed image, size or provider
    replaces every node of a ``recreate`` group here; a ``rolling`` group's are replaced batch by batch by
    the rollout (:mod:`cloudherd.engine.rollout`), so here they stay.
    """
    spec = loaded.spec
    by_name = {g.name: g for g in rows}
    diffs = []
    for group_name, group in spec.groups.items():
        row = by_name.get(group_name)
        members = [n for n in nodes if n.group_name == group_name and n.state != NodeState.TERMINATED]
        dead = [n for n in members if n.state not in COUNTED_NODE_STATES or n.id in replace]
        places = [p.provider for p in group.placement] or [group.provider]
        rank = {name: i for i, name in enumerate(places)}
        # kept first: not a victim, then by place (scale-down empties the last place first), then oldest
        counted = sorted((n for n in members if n.state in COUNTED_NODE_STATES and n.id not in replace),
                         key=lambda n: (n.id in victims, rank.get(n.provider, len(places)), n.index))
        diff = GroupDiff(group_name, group.provider, group.count, len(counted), new=row is None)
        changed = _shape_changes(row, group.provider, group.image, group.size_name) \
            if row is not None and group.update.strategy == "recreate" else []
        if changed and counted:
            diff.reasons += changed
            diff.replace = counted[: group.count]
            diff.destroy = dead + counted[group.count:]
            diff.create = group.count
        else:
            diff.destroy = dead + counted[group.count:]
            diff.create = max(0, group.count - len(counted))
        if dead:
            diff.reasons.append(f"{len(dead)} dead node(s) replaced")
        diffs.append(diff)
    for group_name, row in by_name.items():
        if group_name in spec.groups:
            continue
        members = [n for n in nodes if n.group_name == group_name and n.state != NodeState.TERMINATED]
        if members:
            diffs.append(GroupDiff(group_name, row.provider, 0, len(members), destroy=members, removed=True))
    return diffs


def _shape_changes(row: Group, provider: str, image: str | None, size: str | None) -> list[str]:
    changes = []
    for what, old, new in (("provider", row.provider, provider), ("image", row.image, image),
                           ("size", row.size, size)):
        if (old or None) != (new or None):
            changes.append(f"{what} {old or '-'} → {new or '-'}")
    return changes


async def make_plan(loaded: LoadedSpec, store: Store) -> Plan:
    """The plan of ``up`` for ``loaded``, refreshed from the providers (one list per provider)."""
    existing = store.active_named(loaded.spec.name)
    if existing is None:
        check_templates(loaded, planned_fleet(loaded), PlannedInfra("(new)", loaded.spec.name))
        groups = [GroupDiff(name, g.provider, g.count, 0, create=g.count, new=True,
                            reruns={s.source: [f"{loaded.spec.name}-{name}-{i}" for i in range(1, g.count + 1)]
                                    for s in loaded.scripts[name]} if g.count else {})
                  for name, g in loaded.spec.groups.items()]
        return Plan(loaded.spec.name, None, groups)
    infra = store.infrastructure(existing.id)
    nodes, _ = await fresh_nodes(loaded, store, infra)
    diffs = diff_groups(loaded, infra.groups, nodes)
    done = store.script_digests(infra.id)
    leaving = {n.id for d in diffs for n in (*d.destroy, *d.replace)}
    # the fleet as it will be: kept nodes plus stand-ins for the ones to make (their addresses are unknown)
    future: list[NodeLike] = [n for n in nodes if n.id not in leaving and n.state in COUNTED_NODE_STATES]
    for diff in diffs:
        for index in new_indices(nodes, diff.name, diff.create):
            future.append(planned_node(infra.id, loaded.spec.name, diff.name, index, diff.provider))
    check_templates(loaded, future, infra)
    held = {n.id: n for n in behind(loaded, [n for n in nodes if n.id not in leaving])}
    for diff in diffs:
        if diff.removed:
            continue
        diff.rolling = [n.name for n in held.values() if n.group_name == diff.name]
        update = loaded.group(diff.name).update
        shape = shape_digest(loaded, diff.name)
        in_place = bool(update.max_unavailable) and all(n.shape == shape for n in held.values()
                                                         if n.group_name == diff.name)
        diff.surge = update.max_unavailable if in_place else update.max_surge
        if diff.rolling:
            how = "in place (scripts re-run)" if in_place else "new nodes beside the old"
            diff.reasons.append(f"a new release: rolling, {diff.surge} at a time, {how}, health-gated")
        kept = [n for n in future if n.group_name == diff.name and n.state in REACHABLE_NODE_STATES
                and n.id not in held]
        new_names = [n.name for n in future if n.group_name == diff.name and n.state == NodeState.PENDING]
        group = loaded.group(diff.name)
        for script in loaded.scripts[diff.name]:
            names = list(new_names)
            for node in kept:
                env = node_env(node, group.env)
                try:
                    context = template_context(node, future, infra, loaded.variables_for(node.group_name),
                                               loaded.env)
                    text = render(script.source, script.content, context)
                except DeployError:
                    names.append(node.name)
                    continue
                if done.get((node.id, script.source)) != script_digest(script.source, text, env):
                    names.append(node.name)
            if names:
                diff.reruns[script.source] = sorted(names)
    return Plan(loaded.spec.name, infra.id, diffs)


async def fresh_nodes(loaded: LoadedSpec, store: Store, infra: Infrastructure) -> tuple[list[Node], list[Observed]]:
    """Recorded nodes with their liveness checked (one list call per provider), and what changed.

    Nothing is written: ``plan`` only shows the changes, ``up`` records them.
    """
    nodes = store.nodes(infra.id)
    providers = Providers(loaded)
    try:
        changes = await observe(providers, infra.id, nodes)
    finally:
        await providers.close()
    by_id = {n.id: n for n in nodes}
    for change in changes:
        by_id[change.node_id].state = change.state
        by_id[change.node_id].reason = change.reason
    return nodes, changes
