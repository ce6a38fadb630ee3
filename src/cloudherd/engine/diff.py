"""The decisions of a converge, as pure functions of the spec and the recorded rows: each made here and only here.

* :func:`diff_groups` — per group, the nodes to create, destroy (surplus, dead, of a removed group) and replace
  (a ``recreate`` group whose image, size or provider changed);
* :func:`behind` — the live nodes of rolling groups that run an older release than their group's;
* :func:`rollout_batches` — how a rolling group reaches its release: in place (scripts re-run where the nodes
  stand, ``max_unavailable`` at a time, for nodes whose shape is the group's) or by surge (new nodes beside the
  old, ``max_surge`` at a time);
* :func:`stale_scripts` — the scripts of a node that must (re-)run: those whose text as it renders now, in its
  environment, differs from the digest of their last successful run there.

Nothing here reads the store or asks a provider: :mod:`cloudherd.engine.plan` gathers what these decide into a
:class:`~cloudherd.engine.plan.Plan`, and :mod:`cloudherd.engine.converge` executes it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cloudherd.engine.processes import suspended
from cloudherd.engine.revisions import group_digest, shape_digest
from cloudherd.engine.scale_in import keep_order, shrink_choice
from cloudherd.engine.templates import InfraLike, NodeLike, new_indices, node_env, script_digest, template_context
from cloudherd.errors import DeployError
from cloudherd.lifecycle import COUNTED_NODE_STATES, LIVE_NODE_STATES, NodeState, Process
from cloudherd.remote.scripts import render
from cloudherd.spec import LoadedSpec

if TYPE_CHECKING:
    from cloudherd.state.models import Group, Node


@dataclass(frozen=True)
class Batch:
    """One step of a rolling update: ``nodes`` (ids, oldest first) take the release in place, or are replaced by
    as many new nodes made beside them."""

    in_place: bool
    nodes: tuple[str, ...]


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
    batches: list[Batch] = field(default_factory=list)  # the rollout of ``rolling``, in order
    indices: list[int] = field(default_factory=list)  # of the nodes to make (their names): ``create``, then the pool's
    warmed: list[str] = field(default_factory=list)  # warm-pool nodes (ids) taken into service, instead of creates
    pool_create: int = 0  # nodes to make into the group's warm pool (after the ``create`` ones)

    @property
    def changes(self) -> bool:
        return bool(self.create or self.destroy or self.replace or self.reruns or self.rolling or self.warmed
                    or self.pool_create)


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
        held = suspended(row)
        # a node in standby, or draining for a terminate hook, is out of the reckoning
        members = [n for n in nodes if n.group_name == group_name and n.state != NodeState.TERMINATED
                   and n.state != NodeState.DRAINING and not n.standby and not n.warm]
        # with launch or terminate suspended, a live node named to be replaced stays (it could not be, or
        # not be made anew); a machine already gone is still forgotten
        renewable = replace if not held & {Process.LAUNCH, Process.TERMINATE} else ()
        dead = [n for n in members if n.state not in COUNTED_NODE_STATES or n.id in renewable]
        counted = keep_order([n for n in members if n.state in COUNTED_NODE_STATES and n.id not in renewable],
                             places=[p.provider for p in group.placement] or [group.provider],
                             policies=group.termination, victims=victims,
                             release=group_digest(loaded, group_name) if "oldest-release" in group.termination
                             else None)
        diff = GroupDiff(group_name, group.provider, group.count, len(counted), new=row is None)
        changed = _shape_changes(row, group.provider, group.image, group.size_name) \
            if row is not None and group.update.strategy == "recreate" else []
        surplus = [] if Process.TERMINATE in held else shrink_choice(counted, group.count, victims)
        if changed and counted:
            diff.reasons += changed
            diff.replace = [n for n in counted if n not in surplus]
            diff.destroy = dead + surplus
            diff.create = len(diff.replace)
        else:
            diff.destroy = dead + surplus
            diff.create = max(0, group.count - len(counted))
        _say_held(diff, held, counted, group.count, surplus)
        if dead:
            diff.reasons.append(f"{len(dead)} dead node(s) replaced")
        _use_pool(diff, group.warm_pool.size_beside(group.count) if group.warm_pool else 0, held,
                  [n for n in nodes if n.group_name == group_name and n.warm and n.state != NodeState.TERMINATED],
                  group_digest(loaded, group_name))
        diff.indices = new_indices(nodes, group_name, diff.create + diff.pool_create)
        diffs.append(diff)
    for group_name, row in by_name.items():
        if group_name in spec.groups:
            continue
        members = [n for n in nodes if n.group_name == group_name and n.state != NodeState.TERMINATED]
        if members:
            diffs.append(GroupDiff(group_name, row.provider, 0, len(members), destroy=members, removed=True))
    return diffs


POOL_STATES = frozenset({NodeState.PENDING, NodeState.BOOTING, NodeState.DEPLOYING, NodeState.READY,
                         NodeState.STOPPED})  # a warm-pool node on its way in, or prepared
PREPARED = frozenset({NodeState.READY, NodeState.STOPPED})


def _use_pool(diff: GroupDiff, size: int, held: frozenset[Process], pool: Sequence[Node], release: str) -> None:
    """A scale-out takes prepared warm-pool nodes first (oldest first); the pool is made up to ``size`` behind it,
    its extra nodes (the newest), its broken ones (failed, dead) and the ones set up for an older release of the
    group ended (AWS's instance refresh replaces a warm pool's instances too: a pool node is never taken into
    service as what the group no longer is)."""
    stale = [n for n in pool if n.state in POOL_STATES and n.release is not None and n.release != release]
    alive = sorted((n for n in pool if n.state in POOL_STATES and n not in stale), key=lambda n: n.index)
    diff.destroy += [n for n in pool if n.state not in POOL_STATES] + stale
    if stale:
        diff.reasons.append(f"warm pool: {len(stale)} node(s) set up for an older release ended")
    if Process.LAUNCH not in held and diff.create:
        taken = [n for n in alive if n.state in PREPARED][:diff.create]
        diff.warmed = [n.id for n in taken]
        diff.create -= len(taken)
        if taken:
            diff.reasons.append(f"{len(taken)} node(s) from the warm pool")
    kept = [n for n in alive if n.id not in diff.warmed]
    if len(kept) > size:
        diff.destroy += kept[size:]
        diff.reasons.append(f"warm pool: {len(kept) - size} node(s) over its size ended")
    elif len(kept) < size and Process.LAUNCH not in held:
        diff.pool_create = size - len(kept)
        diff.reasons.append(f"warm pool: {diff.pool_create} node(s) made")


def _say_held(diff: GroupDiff, held: frozenset[Process], counted: Sequence[Node], count: int,
              surplus: Sequence[Node]) -> None:
    """What the group does not do because of a suspension or of protection, said in the diff's reasons."""
    if Process.LAUNCH in held and diff.create:
        diff.reasons.append(f"launch suspended: {diff.create} node(s) not made")
        diff.create = 0
        diff.replace = []
    beyond = max(0, len(counted) - count) - len(surplus)
    if beyond and Process.TERMINATE in held:
        diff.reasons.append(f"terminate suspended: {beyond} node(s) over the size kept")
    elif beyond:
        diff.reasons.append(f"{beyond} protected node(s) over the size kept")


def _shape_changes(row: Group, provider: str, image: str | None, size: str | None) -> list[str]:
    changes = []
    for what, old, new in (("provider", row.provider, provider), ("image", row.image, image),
                           ("size", row.size, size)):
        if (old or None) != (new or None):
            changes.append(f"{what} {old or '-'} → {new or '-'}")
    return changes


def behind(loaded: LoadedSpec, nodes: Sequence[Node]) -> list[Node]:
    """Live nodes of rolling groups that run an older release than their group's (oldest first)."""
    digests = {name: group_digest(loaded, name) for name, g in loaded.spec.groups.items()
               if g.update.strategy == "rolling"}
    return [n for n in sorted(nodes, key=lambda n: (n.group_name, n.index or 0))
            if n.group_name in digests and n.state in LIVE_NODE_STATES and n.state != NodeState.DRAINING
            and n.release is not None and not n.standby and not n.warm
            and n.release != digests[n.group_name]]


def rollout_batches(loaded: LoadedSpec, group_name: str, old: Sequence[Node]) -> list[Batch]:
    """The batches that bring ``old`` (the group's nodes behind, oldest first) to the group's release: with
    ``max_unavailable``, the nodes whose shape is the group's take it in place that many at a time; the rest are
    replaced ``max_surge`` at a time, new nodes made beside them first."""
    update = loaded.group(group_name).update
    shape = shape_digest(loaded, group_name)
    alike = [n.id for n in old if n.shape == shape] if update.max_unavailable else []
    rest = [n.id for n in old if n.id not in set(alike)]
    return [*(Batch(True, tuple(alike[i:i + update.max_unavailable]))
              for i in range(0, len(alike), update.max_unavailable or 1)),
            *(Batch(False, tuple(rest[i:i + update.max_surge])) for i in range(0, len(rest), update.max_surge))]


def stale_scripts(loaded: LoadedSpec, node: NodeLike, fleet: Sequence[NodeLike], infra: InfraLike,
                  done: Mapping[tuple[str, str], str], *, strict: bool = False) -> Iterator[str]:
    """The sources of ``node``'s scripts that must run: their text as it renders against ``fleet`` (in the node's
    environment) differs from the digest of their last successful run there (``done``).  A script that does not
    render is one to run (its run reports the error), unless ``strict``: then the error is raised.  Lazy: ``any``
    stops at the first."""
    group = loaded.group(node.group_name)
    env = node_env(node, group.env)
    context = None
    for script in loaded.scripts[node.group_name]:
        try:
            if context is None:
                context = template_context(node, fleet, infra, loaded.variables_for(node.group_name), loaded.env)
            text = render(script.source, script.content, context)
        except DeployError:
            if strict:
                raise
            yield script.source
            continue
        if done.get((node.id, script.source)) != script_digest(script.source, text, env):
            yield script.source
