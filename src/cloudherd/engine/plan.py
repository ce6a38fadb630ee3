"""Plan: what ``up`` will change — nodes to create, destroy or replace, scripts to re-run, nodes to roll — as a value.

Read-only: a plan is built from the spec and the stored state by the decisions of :mod:`cloudherd.engine.diff`,
and nothing here writes.  ``up`` builds one (after settling leftovers and recording what the providers say) and
executes exactly it (:mod:`cloudherd.engine.converge`); ``plan`` / ``up --dry-run`` only show it.  A plan saved
to a file (:func:`save_plan`) carries a fingerprint of the state it was computed from: executing it later
(:func:`cloudherd.engine.apply.execute`) refuses, with :class:`StalePlan`, when that state changed since.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cloudherd.engine.context import Providers, Redactor, recorded_nodes
from cloudherd.engine.diff import Batch, GroupDiff, behind, diff_groups, rollout_batches, stale_scripts
from cloudherd.engine.liveness import Observed, observe
from cloudherd.engine.revisions import bundle
from cloudherd.engine.templates import (
    InfraLike,
    NodeLike,
    PlannedInfra,
    check_templates,
    planned_fleet,
    planned_node,
)
from cloudherd.errors import UsageError
from cloudherd.lifecycle import COUNTED_NODE_STATES, REACHABLE_NODE_STATES, NodeState
from cloudherd.spec import LoadedSpec

if TYPE_CHECKING:
    from cloudherd.state.models import Group, Infrastructure, Node, Revision
    from cloudherd.state.reader import Reader
    from cloudherd.state.repo import Store

PLAN_FORMAT = 1


class StalePlan(UsageError):
    """A saved plan no longer fits: the infrastructure's state (or the spec) changed since it was computed."""


@dataclass
class Plan:
    """What an ``up`` does, group by group; executed as it says (:func:`cloudherd.engine.converge.execute_plan`).

    ``prior`` fingerprints the stored state the plan was computed from and ``spec`` the spec it was computed for
    (both set by :func:`make_plan`, for a saved plan); ``observed``: the changes the providers showed, recorded
    when the plan is executed; ``in_place``: nodes that take their release where they stand (a rollout's batch),
    running every script again; ``force``: every script runs again on every node deployed."""

    name: str
    infrastructure_id: str | None
    groups: list[GroupDiff]
    prior: str | None = None
    spec: str | None = None
    spec_path: str | None = None
    observed: list[Observed] = field(default_factory=list)
    in_place: tuple[str, ...] = ()
    force: bool = False

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

    def leaving(self) -> list[Node]:
        """The nodes the plan retires: surplus, dead and replaced ones, and every node of a removed group."""
        return [n for g in self.groups for n in (*g.destroy, *g.replace)]

    def held(self) -> set[str]:
        """Ids of the nodes behind a rolling group's release: left as they are by the converge, the rollout's."""
        return {node_id for g in self.groups for b in g.batches for node_id in b.nodes}

    def batches(self, group: str) -> list[Batch]:
        return next((list(g.batches) for g in self.groups if g.name == group), [])

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (what :func:`save_plan` writes)."""
        def nodes(rows: Sequence[Node]) -> list[dict[str, str]]:
            return [{"id": n.id, "name": n.name} for n in rows]

        return {
            "format": PLAN_FORMAT, "name": self.name, "infrastructure": self.infrastructure_id,
            "prior": self.prior, "spec": self.spec, "spec_path": self.spec_path, "force": self.force,
            "in_place": list(self.in_place), "changes": self.changes, "totals": self.totals(),
            "observed": [{"node": o.node_id, "state": str(o.state), "reason": o.reason} for o in self.observed],
            "groups": [
                {"name": g.name, "provider": g.provider, "count": g.count, "current": g.current, "new": g.new,
                 "removed": g.removed, "create": g.create, "destroy": nodes(g.destroy), "replace": nodes(g.replace),
                 "reasons": g.reasons, "scripts": g.reruns, "rolling": g.rolling, "surge": g.surge,
                 "batches": [{"in_place": b.in_place, "nodes": list(b.nodes)} for b in g.batches],
                 "indices": g.indices, "warmed": g.warmed, "pool_create": g.pool_create}
                for g in self.groups
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """A plan read back; its nodes are stand-ins (id, name, group) until :meth:`bind` gives the rows."""
        if not isinstance(data, Mapping) or data.get("format") != PLAN_FORMAT:
            raise UsageError(f"not a cloudherd plan (format {PLAN_FORMAT}): compute it again with `plan --out`")
        from cloudherd.state.models import Node  # a saved plan is executed: the store is open anyway

        try:
            def nodes(group: str, rows: Sequence[Mapping[str, str]]) -> list[Node]:
                return [Node(id=r["id"], name=r["name"], group_name=group) for r in rows]

            groups = [GroupDiff(
                name=g["name"], provider=g["provider"], count=int(g["count"]), current=int(g["current"]),
                create=int(g["create"]), destroy=nodes(g["name"], g["destroy"]), replace=nodes(g["name"], g["replace"]),
                reasons=list(g["reasons"]), reruns={k: list(v) for k, v in g["scripts"].items()},
                rolling=list(g["rolling"]), surge=int(g["surge"]), removed=bool(g["removed"]), new=bool(g["new"]),
                batches=[Batch(bool(b["in_place"]), tuple(b["nodes"])) for b in g["batches"]],
                indices=[int(i) for i in g["indices"]], warmed=[str(i) for i in g.get("warmed", [])],
                pool_create=int(g.get("pool_create", 0)),
            ) for g in data["groups"]]
            return cls(
                name=str(data["name"]), infrastructure_id=data["infrastructure"], groups=groups,
                prior=data["prior"], spec=data["spec"], spec_path=data["spec_path"],
                observed=[Observed(o["node"], NodeState(o["state"]), o["reason"]) for o in data["observed"]],
                in_place=tuple(data["in_place"]), force=bool(data["force"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"a damaged plan ({exc.__class__.__name__}: {exc}): compute it again") from None

    def bind(self, nodes: Sequence[Node]) -> Plan:
        """The plan with its stand-in nodes replaced by the recorded rows of the same ids."""
        by_id = {n.id: n for n in nodes}
        missing = [n.name for n in self.leaving() if n.id not in by_id]
        if missing:
            raise StalePlan(f"the plan of {self.name} names nodes that are no longer recorded "
                            f"({', '.join(missing)}): run plan again")
        groups = [dataclasses.replace(g, destroy=[by_id[n.id] for n in g.destroy],
                                      replace=[by_id[n.id] for n in g.replace]) for g in self.groups]
        return dataclasses.replace(self, groups=groups)


def build_plan(loaded: LoadedSpec, infra: InfraLike, rows: Sequence[Group], nodes: Sequence[Node],
               done: Mapping[tuple[str, str], str], *, replace: Collection[str] = (), victims: Collection[str] = (),
               in_place: Collection[str] = (), force: bool = False, scripts: bool = True) -> Plan:
    """The plan for an infrastructure whose groups are ``rows`` and whose nodes, as fresh as they can be, are
    ``nodes``; ``done``: the digests of the scripts' last successful runs (see :func:`diff.stale_scripts`).

    ``replace`` / ``victims``: see :func:`diff.diff_groups`; ``in_place``: nodes that take the release where they
    stand (they are not held, and run every script again); ``scripts``: whether to work out the script re-runs
    (a converge decides them at deploy time, with the new nodes' addresses known)."""
    diffs = diff_groups(loaded, rows, nodes, replace=replace, victims=victims)
    leaving = {n.id for d in diffs for n in (*d.destroy, *d.replace)}
    held = {n.id: n for n in behind(loaded, [n for n in nodes if n.id not in leaving]) if n.id not in in_place}
    for diff in diffs:
        if diff.removed:
            continue
        mine = [n for n in held.values() if n.group_name == diff.name]
        diff.rolling = [n.name for n in mine]
        diff.batches = rollout_batches(loaded, diff.name, mine) if mine else []
        update = loaded.group(diff.name).update
        in_place_batches = bool(update.max_unavailable) and all(b.in_place for b in diff.batches)
        diff.surge = update.max_unavailable if in_place_batches else update.max_surge
        if diff.rolling:
            how = "in place (scripts re-run)" if in_place_batches else "new nodes beside the old"
            diff.reasons.append(f"a new release: rolling, {diff.surge} at a time, {how}, health-gated")
    plan = Plan(loaded.spec.name, infra.id, diffs, in_place=tuple(in_place), force=force)
    if scripts:
        _reruns(loaded, infra, plan, future(loaded, infra, nodes, plan), held,
                {} if force else {k: v for k, v in done.items() if k[0] not in in_place})
    return plan


def future(loaded: LoadedSpec, infra: InfraLike, nodes: Sequence[Node], plan: Plan) -> list[NodeLike]:
    """The fleet as the plan leaves it: the kept nodes plus stand-ins for the ones to make (addresses unknown)."""
    leaving = {n.id for n in plan.leaving()}
    fleet: list[NodeLike] = [n for n in nodes if n.id not in leaving and n.state in COUNTED_NODE_STATES]
    for diff in plan.groups:
        for index in diff.indices:
            fleet.append(planned_node(infra.id, loaded.spec.name, diff.name, index, diff.provider))
    return fleet


def _reruns(loaded: LoadedSpec, infra: InfraLike, plan: Plan, fleet: Sequence[NodeLike], held: Collection[str],
            done: Mapping[tuple[str, str], str]) -> None:
    for diff in plan.groups:
        if diff.removed:
            continue
        kept = [n for n in fleet if n.group_name == diff.name and n.state in REACHABLE_NODE_STATES
                and n.id not in held]
        stale = {n.name: set(stale_scripts(loaded, n, fleet, infra, done)) for n in kept}
        new_names = [n.name for n in fleet if n.group_name == diff.name and n.state == NodeState.PENDING]
        for script in loaded.scripts[diff.name]:
            names = [*new_names, *(n.name for n in kept if script.source in stale[n.name])]
            if names:
                diff.reruns[script.source] = sorted(names)


async def make_plan(loaded: LoadedSpec, reads: Store | Reader, *, force: bool = False) -> Plan:
    """The plan of ``up`` for ``loaded``, refreshed from the providers (one list per provider); writes nothing, so
    the lean reader serves as well as the store.

    It carries the fingerprints of the state and the spec it was computed from, for :func:`save_plan`."""
    existing = reads.active_named(loaded.spec.name)
    if existing is None:
        check_templates(loaded, planned_fleet(loaded), PlannedInfra("(new)", loaded.spec.name))
        groups = [GroupDiff(name, g.provider, g.count, 0, create=g.count, new=True, indices=list(range(1, g.count + 1)),
                            reruns={s.source: [f"{loaded.spec.name}-{name}-{i}" for i in range(1, g.count + 1)]
                                    for s in loaded.scripts[name]} if g.count else {})
                  for name, g in loaded.spec.groups.items()]
        return Plan(loaded.spec.name, None, groups, prior=fingerprint(loaded.spec.name, None),
                    spec=spec_fingerprint(loaded), spec_path=str(loaded.path), force=force)
    # a row of the store or a record of the reader: the plan reads only the attributes both have (the records'
    # fields are held to the models' columns by tests/unit/test_records.py)
    infra = cast("Infrastructure", reads.infrastructure(existing.id))
    nodes = recorded_nodes(infra)
    done = reads.script_digests(infra.id)
    prior = fingerprint(loaded.spec.name, infra, nodes, done, cast("list[Revision]", reads.revisions(infra.id)))
    nodes, changes = await fresh_nodes(loaded, cast("Store", reads), infra, nodes)
    plan = build_plan(loaded, infra, infra.groups, nodes, done, force=force)
    check_templates(loaded, future(loaded, infra, nodes, plan), infra)
    return dataclasses.replace(plan, prior=prior, spec=spec_fingerprint(loaded), spec_path=str(loaded.path),
                               observed=changes)


async def fresh_nodes(loaded: LoadedSpec, reads: Store, infra: Infrastructure,
                      nodes: list[Node] | None = None) -> tuple[list[Node], list[Observed]]:
    """Recorded nodes (``nodes``: as just read) with their liveness checked (one list call per provider), and what
    changed.  Nothing is written: ``plan`` only shows the changes, ``up`` records them."""
    nodes = reads.nodes(infra.id) if nodes is None else nodes
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


# -- the saved plan: a contract -----------------------------------------------------------------------


def fingerprint(name: str, infra: Infrastructure | None, nodes: Sequence[Node] = (),
                done: Mapping[tuple[str, str], str] | None = None, revisions: Sequence[Revision] = ()) -> str:
    """A digest of the stored state a plan depends on: which infrastructure is active under ``name``, its group
    rows, its nodes (what a diff, a template or a rollout reads of them), the scripts' last successful runs and
    its releases.  Equal digests: the plan computed from one is the plan of the other."""
    if infra is None:
        state: dict[str, Any] = {"name": name, "infrastructure": None}
    else:
        state = {
            "name": name, "infrastructure": infra.id,
            "groups": sorted([g.name, g.provider, g.image, g.size, g.count] for g in infra.groups),
            "nodes": sorted([n.id, n.group_name, n.name, n.index, str(n.state), n.provider, n.provider_id,
                             n.address, n.private_address, n.port, n.release, n.shape] for n in nodes),
            "scripts": sorted([*key, digest] for key, digest in (done or {}).items()),
            "revisions": [[r.number, r.digest, r.state] for r in revisions],
        }
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def prior_state(store: Store, name: str) -> str:
    """The fingerprint of the stored state of the active infrastructure ``name`` (or of none), read now."""
    existing = store.active_named(name)
    if existing is None:
        return fingerprint(name, None)
    infra = store.infrastructure(existing.id)
    return fingerprint(name, infra, recorded_nodes(infra), store.script_digests(infra.id), store.revisions(infra.id))


def spec_fingerprint(loaded: LoadedSpec) -> str:
    """A digest of the spec as loaded (sizes, scripts and variables included; secrets masked)."""
    text = json.dumps({"spec": loaded.spec.model_dump(mode="json"), "bundle": bundle(loaded),
                       "variables": {name: loaded.variables_for(name) for name in loaded.spec.groups}},
                      sort_keys=True, default=str)
    return hashlib.sha256(Redactor(set(loaded.secrets))(text).encode()).hexdigest()


def save_plan(plan: Plan, path: str | os.PathLike[str]) -> None:
    """Write ``plan`` as JSON (only its owner may read it: it names the fleet's nodes)."""
    if plan.prior is None or plan.spec is None:
        raise UsageError("only a plan computed by make_plan can be saved (it carries the state it was made from)")
    target = Path(path).expanduser()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(plan.as_dict(), out, indent=1, sort_keys=True)
        out.write("\n")


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """A plan written by :func:`save_plan`."""
    source = Path(path).expanduser()
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read the plan {source}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{source} is not a cloudherd plan (not JSON: {exc})") from None
    return Plan.from_dict(data)


def check_plan(plan: Plan, loaded: LoadedSpec, prior: str) -> None:
    """Refuse a saved ``plan`` for another spec than ``loaded``, or computed from another state than ``prior``."""
    if plan.prior is None or plan.spec is None:
        raise UsageError("this plan carries no fingerprint of its state: compute it with make_plan")
    if plan.name != loaded.spec.name:
        raise StalePlan(f"the plan is for {plan.name}, the spec for {loaded.spec.name}")
    if plan.spec != spec_fingerprint(loaded):
        raise StalePlan(f"the spec of {plan.name} changed since the plan was computed: run plan again")
    if plan.prior != prior:
        raise StalePlan(f"the state of {plan.name} changed since the plan was computed (another command ran, "
                        "or a machine changed): run plan again and review it")
