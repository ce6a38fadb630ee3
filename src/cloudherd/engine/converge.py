"""Converge: execute a :class:`~cloudherd.engine.plan.Plan` — write the rows it says, retire the nodes it
retires, create the ones it makes (placement and failover), deploy what changed, level by level.

The one converge: ``up`` runs it with the spec as written, the manager's reconcile pass with the spec as applied
and the sizes asked for since (plus the nodes to replace and the victims of a shrink), a rollout's batch with a
group sized for its surge, or with the nodes taking the release in place.  Each time the plan is built first
(:func:`observed_plan`: the providers asked, what they show recorded) and then executed as it is; a saved plan
is executed the same way (:func:`cloudherd.engine.apply.execute`).  Nodes behind a rolling group's release are
the plan's held ones: left as they are, for the rollout (:mod:`cloudherd.engine.rollout`).

Which scripts run on a node is :func:`cloudherd.engine.diff.stale_scripts`, evaluated as the node deploys: its
template context then has the addresses of the nodes made just before (the plan shows the same rule's answer
with those still unknown).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudherd.engine import journal, market, node_timer, warm_pool
from cloudherd.engine.context import Identity, Redactor, recorded_nodes
from cloudherd.engine.deploy import deploy_node
from cloudherd.engine.destroy import retire
from cloudherd.engine.diff import stale_scripts
from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.engine.hooks import advance, hold_launched, hold_leaving
from cloudherd.engine.liveness import record
from cloudherd.engine.plan import Plan, build_plan, fresh_nodes
from cloudherd.engine.revisions import group_digest, shape_digest
from cloudherd.engine.session import RunSession
from cloudherd.engine.templates import check_templates, template_context
from cloudherd.errors import ApplyFailed, CloudherdError
from cloudherd.lifecycle import COUNTED_NODE_STATES, LIVE_NODE_STATES, NodeState
from cloudherd.providers.base import (
    TAG_GROUP,
    TAG_INFRA,
    TAG_OWNER,
    Capability,
    CapacityError,
    CreateRequest,
    QuotaError,
    SizeNeed,
)
from cloudherd.remote.scripts import render
from cloudherd.spec import LoadedSpec
from cloudherd.spec.model import Group as GroupSpec
from cloudherd.spec.model import MinCount
from cloudherd.spec.model import SizeNeed as SpecSizeNeed
from cloudherd.state.models import Group, Infrastructure, Node
from cloudherd.state.repo import Store
from cloudherd.state.snapshot import Snapshot


async def converge(
    loaded: LoadedSpec, store: Store, infra: Infrastructure, run: RunSession, *, force: bool = False,
    run_intents: list[str] | None = None, replace: Collection[str] = (), victims: Collection[str] = (),
    in_place: Collection[str] = (), plan: Plan | None = None, seen: Snapshot | None = None,
) -> tuple[Infrastructure, Plan]:
    """Make the fleet what ``loaded`` says: the plan built now (or ``plan``, a saved one whose state was checked),
    then executed.  Returns the infrastructure as read again, and the plan executed (its rolling groups' batches
    are what the rollout goes through).

    ``replace``: nodes to retire and make anew (the manager's failed ones); ``victims``: nodes to remove first when
    a group shrinks; ``in_place``: nodes of a rollout's batch that take the release where they stand; ``seen``:
    the infrastructure as the caller has just read it (:meth:`RunSession.observe`), else it is read here."""
    if plan is None:
        plan = await observed_plan(loaded, store, infra.id, replace=replace, victims=victims, in_place=in_place,
                                   force=force, seen=seen)
    else:  # a saved plan: what the providers showed when it was computed is recorded, its nodes are the rows
        nodes = seen.nodes if seen is not None else store.nodes(infra.id)
        if plan.observed:
            record(store, infra.id, nodes, plan.observed)
            nodes = store.nodes(infra.id)
        plan = plan.bind(nodes)
    return await execute_plan(plan, loaded, store, infra.id, run, run_intents=run_intents), plan


async def observed_plan(loaded: LoadedSpec, store: Store, infra_id: str, *, replace: Collection[str] = (),
                        victims: Collection[str] = (), in_place: Collection[str] = (), force: bool = False,
                        seen: Snapshot | None = None) -> Plan:
    """The plan for the infrastructure as it is now (``seen``: as the caller has just read it): its nodes'
    liveness asked of the providers (one list call per provider) and what changed recorded, then the plan built
    from them.  The scripts are left to the deploy."""
    infra = seen.infra if seen is not None else store.infrastructure(infra_id)
    nodes, changes = await fresh_nodes(loaded, store, infra, recorded_nodes(infra))
    record(store, infra_id, nodes, changes)
    return build_plan(loaded, infra, infra.groups, nodes, {}, replace=replace, victims=victims, in_place=in_place,
                      force=force, scripts=False)


async def execute_plan(plan: Plan, loaded: LoadedSpec, store: Store, infra_id: str, run: RunSession, *,
                       run_intents: list[str] | None = None) -> Infrastructure:
    """Exactly ``plan``: rows written, its leaving nodes retired, its new ones made, then the deploy (the held
    nodes left as they are, the ``in_place`` ones running every script again), each node stamped with its
    release."""
    redact = Redactor(set(loaded.secrets))
    surplus = write_rows(plan, loaded, store, infra_id, redact)
    infra = store.infrastructure(infra_id)
    leaving = {n.id for n in surplus}
    nodes: list[Node] | None = recorded_nodes(infra)  # as read with it; None once something changed them
    # the rows of the nodes to make, and the warm-pool nodes taken into service: the ones a launch hook holds
    made = {n.id for n in nodes or () if n.state == NodeState.PENDING} | {i for g in plan.groups for i in g.warmed}
    check_templates(loaded, [n for n in nodes or () if n.id not in leaving], infra)
    sink = run.sink
    if surplus:
        nodes = None
        surplus = hold_leaving(loaded, store, infra_id, surplus)  # a group's terminate hooks hold its nodes first
    if surplus:
        emit(sink, ProgressEvent("info", f"retiring {len(surplus)} node(s): {', '.join(n.name for n in surplus)}"))
        await retire(store, infra, surplus, loaded=loaded, reach=run.reach, pool=run.pool, providers=run.providers,
                     sink=sink)
    intents = run_intents if run_intents is not None else []
    # a group whose boot data may name another group's nodes (Occopus' getip in a cloud-config) is made
    # when the groups it depends on are ready, as Occopus did; every other group is made at once
    later = {name for name, group in loaded.spec.groups.items() if loaded.boot.get(name) and group.depends_on}

    async def create(groups: Collection[str]) -> bool:
        nonlocal nodes
        if not await _create_missing(loaded, store, infra, run, intents, only=groups, nodes=nodes):
            return False
        run.reach.pins.update(store.pins(infra.id))
        nodes = None
        return True

    if any(g.warmed for g in plan.groups):
        await warm_pool.take(plan, store, infra, run)  # started instead of made; the deploy finds them set up
        nodes = None
    await create(set(loaded.spec.groups) - later)
    held = plan.held()

    async def before_level(level: Collection[str]) -> bool:
        return bool(later & set(level)) and await create(later & set(level))

    nodes = await _deploy_all(loaded, store, infra, run, redact, plan.force, held, rerun=plan.in_place,
                              before_level=before_level, read=nodes)
    hooked = any(g.hooks for g in loaded.spec.groups.values())
    if hooked and (hold_launched(loaded, store, infra.id, made) or leaving):  # the hooks' commands run at once
        await advance(store, infra, loaded, store.nodes(infra.id), run)
        nodes = None
    if any(g.warm_pool for g in loaded.spec.groups.values()):
        await warm_pool.park(loaded, store, infra, run)
        nodes = None
    stamp(loaded, store, infra.id, held, nodes)
    return infra


def stamp(loaded: LoadedSpec, store: Store, infra_id: str, held: Collection[str],
          nodes: Sequence[Node] | None = None) -> None:
    """After a converge deployed them: every live node not held runs its group's current release (``nodes``: as
    read after the deploy, when the caller has them)."""
    digests = {name: group_digest(loaded, name) for name in loaded.spec.groups}
    changes: list[tuple[str, dict[str, object]]] = [
        (n.id, {"release": digests[n.group_name]}) for n in (store.nodes(infra_id) if nodes is None else nodes)
        if n.group_name in digests and n.id not in held and n.state in LIVE_NODE_STATES
        and n.release != digests[n.group_name]]
    store.update_nodes(infra_id, changes)


def write_rows(plan: Plan, loaded: LoadedSpec, store: Store, infra_id: str, redact: Redactor) -> list[Node]:
    """Make the group rows and node rows say what ``plan`` says; return the nodes to retire.

    The groups first (the ones there already in one transaction), then the new nodes, added as ``pending`` rows
    (created next); surplus, dead and replaced nodes, and every node of a removed group, are returned.
    """
    spec = loaded.spec
    diffs = {d.name: d for d in plan.groups}
    updates: dict[str, dict[str, Any]] = {}
    for position, (group_name, group) in enumerate(spec.groups.items()):
        fields: dict[str, Any] = {
            "position": position, "provider": group.provider,
            "provider_type": spec.providers[group.provider].type if group.provider in spec.providers
            else group.provider,
            "image": group.image, "size": group.size_name, "count": group.count,
            "config": _group_config(loaded, group_name, redact),
        }
        if diffs[group_name].new:
            store.add_group(infra_id, name=group_name, **fields)
        else:
            updates[group_name] = fields
    updates.update({name: {"count": 0} for name, diff in diffs.items() if diff.removed})
    store.update_groups(infra_id, updates)
    surplus: list[Node] = []
    for group_name, group in spec.groups.items():
        diff = diffs[group_name]
        surplus += [*diff.destroy, *diff.replace]
        if diff.indices:  # the ones to serve first, then the warm pool's
            store.add_nodes(infra_id, [
                {"group_name": group_name, "name": f"{spec.name}-{group_name}-{index}", "index": index,
                 "provider": group.provider, "release": group_digest(loaded, group_name),
                 "shape": shape_digest(loaded, group_name), "protected": group.protect_new,
                 "warm": position >= diff.create}
                for position, index in enumerate(diff.indices)
            ])
    return surplus + [n for diff in diffs.values() if diff.removed for n in diff.destroy]


def _group_config(loaded: LoadedSpec, group_name: str, redact: Redactor) -> dict[str, Any]:
    group = loaded.group(group_name)
    return {
        **loaded.stored(group_name),
        "tags": dict(group.tags),
        "env": {k: redact(v) for k, v in group.env.items()},
        "artifacts": list(group.artifacts),
        "ports": list(group.ports),
        **({"ssh_key": str(loaded.login(group_name)[1])} if group.ssh and group.ssh.key else {}),
        **({"upload": [u.model_dump() for u in group.upload]} if group.upload else {}),
    }


def _group_row(store: Store, infra: Infrastructure, name: str) -> Group | None:
    """The group's row as the infrastructure was read with it (read again when it was read without its groups)."""
    rows = infra.__dict__.get("groups")  # loaded with it, or not: then no lazy load of a detached row
    if rows is None:
        rows = store.infrastructure(infra.id).groups
    return next((g for g in rows if g.name == name), None)


def _size_need(size: object) -> SizeNeed | None:
    if isinstance(size, SpecSizeNeed):
        return SizeNeed(cpus=size.cpus, memory_mib=size.memory_mib)
    return None


async def _create_missing(
    loaded: LoadedSpec, store: Store, infra: Infrastructure, run: RunSession, run_intents: list[str], *,
    only: Collection[str], nodes: Sequence[Node] | None = None,
) -> bool:
    """One journaled bulk create per group of ``only`` (and place) for its ``pending`` nodes, all at once;
    whether there were any (``nodes``: the infrastructure's as just read, when the caller has them)."""
    nodes = store.nodes(infra.id) if nodes is None else nodes
    if not any(n.state == NodeState.PENDING and n.group_name in only for n in nodes):
        return False
    identity, providers, sink = run.identity, run.providers, run.sink

    async def create_group(group_name: str) -> None:
        group = loaded.group(group_name)
        rows = [n for n in nodes if n.group_name == group_name and n.state == NodeState.PENDING]
        if not rows:
            return
        tags = {**group.tags, TAG_INFRA: infra.id, TAG_GROUP: group_name, TAG_OWNER: identity.user_name}
        others = [n for n in nodes if n.group_name == group_name and n.state != NodeState.PENDING]
        markets = market.choose(group, _group_row(store, infra, group_name), others, rows)
        store.update_nodes(infra.id, [(n.id, {"market": markets[n.id]}) for n in rows if n.market != markets[n.id]])

        async def make(provider_name: str, batch: Sequence[Node]) -> None:
            boot = _boot_data(loaded, group_name, batch, nodes, infra)
            if len(set(boot)) > 1:  # the boot data names the node: one create call per node
                await asyncio.gather(*(make_on(provider_name, [node], data) for node, data in zip(batch, boot,
                                                                                                  strict=True)))
            else:
                await make_on(provider_name, batch, boot[0] if boot else None)

        async def make_on(provider_name: str, batch: Sequence[Node], user_data: str | None) -> None:
            """One create per market; spot refused for capacity falls back at once where the group says so."""
            spot = [n for n in batch if markets.get(n.id) == market.SPOT]
            rest = [n for n in batch if markets.get(n.id) != market.SPOT]
            jobs = [make_one(provider_name, rest, user_data)] if rest else []
            if spot:
                jobs.append(make_spot(provider_name, spot, user_data))
            await asyncio.gather(*jobs)

        async def make_spot(provider_name: str, batch: Sequence[Node], user_data: str | None) -> None:
            try:
                await make_one(provider_name, batch, user_data, market.SPOT)
            except CapacityError as exc:
                if group.market is None or group.market.fallback != market.ON_DEMAND:
                    raise
                said = market.fall_back(store, infra.id, group, group_name, f"spot refused on {provider_name} "
                                        f"({exc.code or exc.__class__.__name__})", provider_name)
                emit(sink, ProgressEvent("info", said))
                store.update_nodes(infra.id, [(n.id, {"state": NodeState.PENDING, "reason": None,
                                                      "market": market.ON_DEMAND}) for n in batch])
                await make_one(provider_name, batch, user_data)

        async def make_one(provider_name: str, batch: Sequence[Node], user_data: str | None,
                           bought: str = market.ON_DEMAND) -> None:
            place = next((p for p in group.placement if p.provider == provider_name), None)
            size = group.size if isinstance(group.size, str) else None
            provider = providers.get(provider_name)
            image = (place and place.image) or group.image
            user, public_key = login_of(loaded, group_name, identity, provider.default_user(image))
            timer = node_timer.deadline_of(store, infra, loaded) if provider.supports(Capability.NODE_TIMER) \
                else None
            request = CreateRequest(
                count=len(batch), image=image, size=(place and place.size) or size,
                tags=tags, ssh_user=user, ssh_public_key=public_key,
                names=[n.name for n in batch], token=_request_token(infra.id, group_name, batch),
                ports=group.ports, size_need=_size_need(group.size), user_data=user_data, market=bought,
                max_price=group.market.max_price if group.market is not None else None,
                deadline=timer[0] if timer else None, on_deadline=timer[1] if timer else "terminate",
            )
            for row in batch:
                emit(sink, ProgressEvent("node", f"creating on {provider_name}", node=row.name, group=group_name,
                                         state=NodeState.CREATING))
            try:
                await journal.create(store, infra, provider, batch, request, user,
                                     sink, run_intents=run_intents)
            finally:
                for notice in provider.take_notices():
                    emit(sink, ProgressEvent("info", f"{provider_name}: {notice}"))

        if not group.placement:
            await make(group.provider, rows)
            return
        await _place(store, infra, group_name, group, rows, nodes, make, sink)

    await asyncio.gather(*(create_group(name) for name in loaded.spec.groups if name in only))
    return True


def login_of(loaded: LoadedSpec, group_name: str, identity: Identity, image_user: str | None) -> tuple[str, str]:
    """(login user, public key line) a group's machines are made with: the group's ``ssh``, else the spec's,
    else the image's own user (an AWS alias), else the local user's name; the group's key, else ours."""
    user, key_path = loaded.login(group_name)
    public = identity.public_key
    own = loaded.group(group_name).ssh
    if own is not None and own.key and key_path is not None:
        from cloudherd.remote.keys import ensure_keypair

        public = ensure_keypair(key_path)[1]
    return user or image_user or identity.user_name, public


def _boot_data(loaded: LoadedSpec, group_name: str, batch: Sequence[Node], nodes: Sequence[Node],
               infra: Infrastructure) -> list[str | None]:
    """The group's cloud-config rendered for each node of ``batch`` (Occopus rendered it per node: its
    ``getip`` of the groups made before, ``node_id``…); [] when the group has none."""
    boot = loaded.boot.get(group_name)
    if boot is None:
        return []
    return [render(boot.source, boot.content,
                   template_context(node, nodes, infra, loaded.variables_for(group_name), loaded.env))
            for node in batch]


async def _place(
    store: Store, infra: Infrastructure, group_name: str, group: GroupSpec, rows: Sequence[Node],
    nodes: Sequence[Node], make: Any, sink: EventSink | None,
) -> None:
    """Fill the placement's candidates in order, up to each ``max``; a candidate that answers with a
    capacity or quota error is set aside for this group (a cooldown) and the remainder moves on at once."""
    cooled = cooling(store, infra.id, group_name)
    avoided = market.avoided_place(_group_row(store, infra, group_name))
    if avoided is not None:
        cooled.setdefault(avoided, "spot interruptions: its fallback moved new nodes off it")
    remaining = list(rows)
    made = 0
    for place in group.placement:
        if not remaining:
            break
        if place.provider in cooled:
            emit(sink, ProgressEvent("info", f"{group_name}: skipping {place.provider} (cooling down after "
                                             f"{cooled[place.provider]})"))
            continue
        there = sum(1 for n in nodes if n.group_name == group_name and n.provider == place.provider
                    and n.state in COUNTED_NODE_STATES and n.state != NodeState.PENDING)
        room = len(remaining) if place.max is None else max(0, place.max - there)
        batch = remaining[:room]
        if not batch:
            continue
        for row in batch:
            store.update_node(row.id, provider=place.provider)
        batch = [store_node for store_node in store.nodes(infra.id) if store_node.id in {b.id for b in batch}]
        try:
            await make(place.provider, batch)
        except (CapacityError, QuotaError) as exc:
            reason = f"{exc.__class__.__name__}: {exc}"
            store.add_event(infra.id, "cooldown", f"{group_name}:{place.provider}:{reason}"[:1000])
            emit(sink, ProgressEvent("info", f"{group_name}: {place.provider} has no room ({exc}); failing over"))
            for row in batch:  # the create intent was undone; the rows wait for the next place
                store.update_node(row.id, state=NodeState.PENDING, reason=None)
            continue
        made += len(batch)
        remaining = remaining[len(batch):]
    if not remaining:
        return
    policy = group.policy
    wanted_min = policy.min_count if isinstance(policy, MinCount) else (0 if policy == "best_effort" else None)
    total = sum(1 for n in nodes if n.group_name == group_name and n.state in COUNTED_NODE_STATES
                and n.state != NodeState.PENDING) + made
    if wanted_min is None or total < wanted_min:
        need = "every node" if wanted_min is None else f"at least {wanted_min}"
        raise ApplyFailed(f"group {group_name}: no place had room for {len(remaining)} node(s) (policy: {need})")
    for row in remaining:
        store.update_node(row.id, state=NodeState.TERMINATED, reason="no place had room (best effort)")
    emit(sink, ProgressEvent("info", f"{group_name}: {len(remaining)} node(s) found no place; kept {total}"))


COOLDOWN = timedelta(minutes=10)


DEPLOYABLE = LIVE_NODE_STATES - {NodeState.DRAINING}  # a draining node keeps what it runs until it ends


def cooling(store: Store, infra_id: str, group_name: str) -> dict[str, str]:
    """Providers set aside for this group: a capacity / quota error within the cooldown."""
    found = {}
    for event in store.recent_events(infra_id, "cooldown", datetime.now(UTC) - COOLDOWN):
        group, _, rest = event.message.partition(":")
        provider, _, reason = rest.partition(":")
        if group == group_name:
            found[provider] = reason.split(":")[0]
    return found


async def _deploy_all(
    loaded: LoadedSpec, store: Store, infra: Infrastructure, run: RunSession, redact: Redactor, force: bool,
    held: Collection[str] = (), rerun: Collection[str] = (),
    before_level: Callable[[Collection[str]], Awaitable[bool]] | None = None, read: list[Node] | None = None,
) -> list[Node]:
    """Each node runs its scripts as soon as it accepts SSH; the first failure stops the run.  ``held``: nodes
    of an older release that a rolling update replaces batch by batch (they keep what they run).  ``rerun``:
    nodes taking a release in place, which run every script of it: a script that succeeded there once may
    have been undone by a release since (a rollback to it must run it again).  ``before_level`` says whether it
    changed the nodes (made some); ``read``: the nodes as just read, when the caller has them.  Returns them as
    the deploy left them."""
    nodes = store.nodes(infra.id) if read is None else read
    done = {} if force else {key: digest for key, digest in store.script_digests(infra.id).items()
                             if key[0] not in rerun}

    def unchanged(node: Node) -> bool:
        """A ready node (or one a launch hook holds) whose every script already succeeded as it renders now: no
        login needed at all."""
        if force or node.state not in (NodeState.READY, NodeState.WAITING):
            return False
        return not any(stale_scripts(loaded, node, nodes, infra, done, strict=True))

    async def deploy(node: Node) -> None:
        if unchanged(node):
            return
        context = template_context(node, nodes, infra, loaded.variables_for(node.group_name), loaded.env)
        scripts = [{"name": s.name, "source": s.source, "content": s.content} for s in loaded.scripts[node.group_name]]
        await deploy_node(run.pool, run.reach.target(node), store, node, scripts, context,
                          loaded.group(node.group_name).env, redact, run.sink, done=done,
                          interrupted="deploy interrupted: another node failed",
                          uploads=loaded.group(node.group_name).upload, base=loaded.path.parent)

    # level by level (depends_on): a group's scripts start when every group it depends on is ready, and
    # see their addresses; within a level each node starts the moment it accepts SSH
    for level in loaded.spec.levels():
        if before_level is not None and await before_level(level):
            nodes = store.nodes(infra.id)
        async with asyncio.TaskGroup() as tasks:
            for node in nodes:
                if node.state in DEPLOYABLE and node.group_name in level and node.id not in held:
                    tasks.create_task(deploy(node))
        nodes = store.nodes(infra.id)
    return nodes


def _request_token(infra_id: str, group: str, batch: Sequence[Node]) -> str:
    """The idempotency token of a create: the same for a retry of the very same rows (a cloud then answers
    with what the first call made), another for any other batch — after a killed run's create is resolved,
    the rows never made are asked for again, and under the first batch's token the cloud would hand back
    that batch's machines (already adopted by its other rows) instead of making new ones."""
    rows = hashlib.sha256(",".join(row.id for row in batch).encode()).hexdigest()[:16]
    return f"{infra_id}-{group}-{rows}"


def failure_reason(exc: BaseException) -> str:
    """An exception as the one line a failed run reports."""
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, BaseExceptionGroup):
        first = next((e for e in exc.exceptions if isinstance(e, CloudherdError)), exc.exceptions[0])
        return failure_reason(first)
    if isinstance(exc, CloudherdError):
        return str(exc)
    return f"{exc.__class__.__name__}: {exc}"
