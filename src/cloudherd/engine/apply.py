"""``up``: bring an infrastructure to what its spec says, and deploy its scripts.

A new name makes a new infrastructure; a name that is active already is converged: missing nodes are
created, surplus (and dead) nodes retired, and scripts whose rendered text changed are re-run while
unchanged ones are skipped.  Each node starts its scripts the moment it accepts SSH, over one pooled
connection.  On failure or Ctrl-C, what this run created is rolled back (unless asked to keep it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cloudherd.engine import journal, revisions, rollout
from cloudherd.engine.context import Identity, Providers, Redactor, ensure_identity
from cloudherd.engine.deploy import deploy_node
from cloudherd.engine.destroy import retire
from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.engine.fleet import Reach
from cloudherd.engine.liveness import record
from cloudherd.engine.locks import DEFAULT_WAIT, exclusive, infra_scope
from cloudherd.engine.plan import diff_groups, fresh_nodes
from cloudherd.engine.recover import recover
from cloudherd.engine.revisions import group_digest, shape_digest
from cloudherd.engine.templates import (
    PlannedInfra,
    check_templates,
    new_indices,
    node_env,
    planned_fleet,
    script_digest,
    template_context,
)
from cloudherd.errors import ApplyFailed, CloudherdError
from cloudherd.lifecycle import COUNTED_NODE_STATES, LIVE_NODE_STATES, InfraState, NodeState
from cloudherd.providers.base import (
    TAG_GROUP,
    TAG_INFRA,
    TAG_OWNER,
    CapacityError,
    CreateRequest,
    QuotaError,
    SizeNeed,
)
from cloudherd.remote.pool import ConnectionPool
from cloudherd.remote.scripts import render
from cloudherd.spec import LoadedSpec
from cloudherd.spec.model import Group as GroupSpec
from cloudherd.spec.model import MinCount
from cloudherd.spec.model import SizeNeed as SpecSizeNeed
from cloudherd.state.models import Infrastructure, Node, Revision
from cloudherd.state.repo import Store

DEFAULT_CONNECT_TIMEOUT = 120.0


async def up(
    loaded: LoadedSpec,
    store: Store,
    *,
    keep_on_failure: bool = False,
    on_event: EventSink | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    handshakes: int | None = None,
    force: bool = False,
    accept_new_host_key: Collection[str] = (),
    wait: float = DEFAULT_WAIT,
    origin: str = "up",
    no_rollback: bool = False,
    pause_after: int | None = None,
) -> str:
    """Create or converge the infrastructure of ``loaded``; return its id, or raise ApplyFailed.

    One operation changes an infrastructure at a time: while another holds its name's lease, this
    waits up to ``wait`` seconds (saying for whom), then gives up with BusyError.  Each apply is recorded
    as a revision (``origin`` says what asked for it: an up, a rollback).  A rolling update pauses after
    ``pause_after`` nodes (else the groups' own ``update.pause_after``; 0: never), its revision ``paused``.
    """
    def waiting(message: str) -> None:
        emit(on_event, ProgressEvent("info", message))

    async with exclusive(store, infra_scope(loaded.spec.name), "up", wait=wait, on_wait=waiting):
        return await _up(loaded, store, keep_on_failure=keep_on_failure, on_event=on_event,
                         connect_timeout=connect_timeout, handshakes=handshakes, force=force,
                         accept_new_host_key=accept_new_host_key, origin=origin, no_rollback=no_rollback,
                         pause_after=pause_after)


def confined_record(loaded: LoadedSpec) -> dict[str, Any] | None:
    """What the infrastructure keeps of a network spec's confinement, so that every re-read is confined too."""
    return loaded.within.as_record() if loaded.within is not None else None


async def submit(loaded: LoadedSpec, store: Store, *, wait: float = DEFAULT_WAIT, owner_id: str | None = None,
                 attached: bool = False) -> str:
    """Record an infrastructure (its spec, groups and the node rows to make) without making anything: the
    manager's first pass creates and deploys it (Occopus' ``submit_infrastructure``).  Returns its id.

    ``owner_id`` names the user it is made for (the server's callers); the nodes are reached with this
    process's key either way.  ``attached`` is written with the row itself: a process killed right after
    leaves an infrastructure the manager will make, never a row that nothing ever picks up."""
    spec = loaded.spec
    async with exclusive(store, infra_scope(spec.name), "submit", wait=wait):
        identity = ensure_identity(store, _key_path(loaded))
        existing = store.active_named(spec.name)
        if existing is not None:
            store.update_infrastructure(existing.id, spec_text=loaded.raw_text, spec_path=str(loaded.path.resolve()),
                                        confined=confined_record(loaded), **({"attached": True} if attached else {}))
            infra_id = existing.id
        else:
            check_templates(loaded, planned_fleet(loaded), PlannedInfra("(new)", spec.name))
            infra_id = store.create_infrastructure(
                name=spec.name, owner_id=owner_id or identity.user_id, state=InfraState.CREATING,
                spec_path=str(loaded.path.resolve()), spec_text=loaded.raw_text, ssh_user=spec.ssh.user,
                ssh_key_path=str(identity.key_path), confined=confined_record(loaded), attached=attached,
            ).id
        owner = store.user_by_id(owner_id) if owner_id else None
        revisions.begin(store, infra_id, loaded, owner.name if owner else identity.user_name, "submit",
                        restart=False)
        await _sync_groups(loaded, store, infra_id, Redactor(set(loaded.secrets)))
        store.add_event(infra_id, "submit", f"{spec.name} submitted: the manager makes it")
        return infra_id


async def _up(loaded: LoadedSpec, store: Store, *, keep_on_failure: bool, on_event: EventSink | None,
              connect_timeout: float, handshakes: int | None, force: bool, accept_new_host_key: Collection[str],
              origin: str, no_rollback: bool, pause_after: int | None) -> str:
    spec = loaded.spec
    identity = ensure_identity(store, _key_path(loaded))
    existing = store.active_named(spec.name)
    if existing is None:  # every script renders for the fleet to be, or nothing is made at all
        check_templates(loaded, planned_fleet(loaded), PlannedInfra("(new)", spec.name))
    if existing is None:
        infra = store.create_infrastructure(
            name=spec.name, owner_id=identity.user_id, state=InfraState.CREATING, spec_path=str(loaded.path.resolve()),
            spec_text=loaded.raw_text, ssh_user=spec.ssh.user, ssh_key_path=str(identity.key_path),
            confined=confined_record(loaded),
        )
        store.add_event(infra.id, "up", f"up of {spec.name} started")
        emit(on_event, ProgressEvent("info", f"infrastructure {infra.id} ({spec.name})"))
    else:
        infra = existing
        store.update_infrastructure(infra.id, state=InfraState.UPDATING, reason=None, spec_text=loaded.raw_text,
                                    spec_path=str(loaded.path.resolve()), confined=confined_record(loaded))
        store.add_event(infra.id, "up", f"converging {spec.name}")
        emit(on_event, ProgressEvent("info", f"infrastructure {infra.id} ({spec.name}): converging"))
    release = revisions.begin(store, infra.id, loaded, identity.user_name, origin)
    providers = Providers(loaded)
    run_intents: list[str] = []
    stopped: str | rollout.RolloutPaused | None = None
    try:
        recover(store, infra, on_event)  # a killed run's half-done states, then its cloud calls, settled first
        await journal.resolve(store, infra, providers, on_event)
        async with ConnectionPool(identity.key, handshakes=handshakes, connect_timeout=connect_timeout) as pool:
            reach = Reach(store, infra, identity, accept_new_host_key)
            try:
                await converge(loaded, store, infra, identity, providers, pool, reach, on_event,
                               force=force, run_intents=run_intents)
                roll = rollout.Rollout(store, infra, identity, providers, pool, reach, on_event, run_intents)
                stopped = await roll_out(loaded, roll, release, no_rollback, pause_limit(loaded, pause_after))
            finally:
                reach.record(pool)
        if isinstance(stopped, rollout.RolloutPaused):
            said = f"paused at revision {release.number}: {stopped}"
            store.set_infrastructure_state(infra.id, InfraState.READY)
            store.end_revision(release.id, "paused", str(stopped))
            store.add_event(infra.id, "rollout", said)
            emit(on_event, ProgressEvent("info", f"{said} (cloudherd rollout {spec.name} resume | abort)"))
            return infra.id
        if stopped is None:
            store.set_infrastructure_state(infra.id, InfraState.READY)
            store.end_revision(release.id, "applied")
            store.add_event(infra.id, "up", f"ready (revision {release.number})")
            return infra.id
    except BaseException as exc:
        reason = failure_reason(exc)
        store.end_revision(release.id, "failed", reason)
        store.add_event(infra.id, "error", reason)
        emit(on_event, ProgressEvent("error", reason))
        if keep_on_failure:
            store.set_infrastructure_state(infra.id, InfraState.FAILED, reason + " (kept, as asked, for inspection)")
        else:
            emit(on_event, ProgressEvent("info", "rolling back what this run created"))
            await _rollback(store, infra, providers, run_intents, reason)
        if isinstance(exc, CloudherdError | BaseExceptionGroup) and not isinstance(exc, asyncio.CancelledError):
            raise ApplyFailed(f"up of {spec.name} failed: {reason}") from exc
        raise
    finally:
        await providers.close()
    # the rollout stopped at a batch that failed its gate: what it made is settled (rolled back, or kept)
    store.end_revision(release.id, "failed", stopped)
    store.add_event(infra.id, "error", stopped)
    raise ApplyFailed(f"up of {spec.name} failed: {stopped}")


def pause_limit(loaded: LoadedSpec, asked: int | None) -> int | None:
    """Nodes a rollout replaces before it pauses: as asked (0: never), else the smallest ``pause_after`` of the
    rolling groups, else no pause."""
    if asked is not None:
        return asked or None
    limits = [g.update.pause_after for g in loaded.spec.groups.values()
              if g.update.strategy == "rolling" and g.update.pause_after]
    return min(limits) if limits else None


async def roll_out(loaded: LoadedSpec, roll: rollout.Rollout, release: Revision, no_rollback: bool,
                    pause_after: int | None) -> str | rollout.RolloutPaused | None:
    """Roll the rolling groups' held nodes to this release; None when done, the pause when it paused, else why
    it stopped (and what was done about it: the failed batch's new nodes retired, then the fleet back at the
    release before)."""
    store, infra_id, sink = roll.store, roll.infra.id, roll.sink
    try:
        await roll.run(loaded, pause_after)
        return None
    except rollout.RolloutPaused as paused:
        return paused
    except rollout.RolloutFailed as failed:
        emit(sink, ProgressEvent("error", str(failed)))
        await roll.retire_made(loaded, failed.group, failed.made)
        if no_rollback:
            why = f"{failed}; stopped there (--no-rollback): nodes already replaced keep the new release"
            store.set_infrastructure_state(infra_id, InfraState.FAILED, why)
            return why
        earlier = [r for r in store.revisions(infra_id) if r.number <= release.number]
        try:
            previous = revisions.pick(earlier, None)
        except CloudherdError:
            why = f"{failed}; no earlier release to roll back to"
            store.set_infrastructure_state(infra_id, InfraState.FAILED, why)
            return why
        emit(sink, ProgressEvent("info", f"rolling back to revision {previous.number}"))
        back = revisions.loaded_from(previous, {name: g.count for name, g in loaded.spec.groups.items()},
                                     within=loaded.within)
        store.update_infrastructure(infra_id, spec_text=back.raw_text, spec_path=previous.spec_path)
        undo = revisions.begin(store, infra_id, back, release.author, f"rollback to {previous.number} (automatic)")
        await converge(back, store, roll.infra, roll.identity, roll.providers, roll.pool, roll.reach, sink,
                       run_intents=roll.run_intents)
        await roll.run(back)
        store.end_revision(undo.id, "applied")
        store.set_infrastructure_state(infra_id, InfraState.READY)
        return f"{failed}; rolled back to revision {previous.number}"


async def converge(
    loaded: LoadedSpec, store: Store, infra: Infrastructure, identity: Identity, providers: Providers,
    pool: ConnectionPool, reach: Reach, sink: EventSink | None, *, force: bool = False,
    run_intents: list[str] | None = None, replace: Collection[str] = (), victims: Collection[str] = (),
    in_place: Collection[str] = (),
) -> Infrastructure:
    """Make the fleet what ``loaded`` says: retire what goes, create what is missing, deploy what changed.

    The one converge: ``up`` calls it with the spec as written, the manager's reconcile pass with the
    spec as applied and the sizes asked for since, plus the nodes to replace (``replace``) and those to
    remove first when a group shrinks (``victims``).  Nodes behind a rolling group's release are left as they
    are (the rollout's), but for those of ``in_place``: a rollout's batch that takes the release in place.
    """
    redact = Redactor(set(loaded.secrets))
    surplus = await _sync_groups(loaded, store, infra.id, redact, replace=replace, victims=victims)
    infra = store.infrastructure(infra.id)
    leaving = {n.id for n in surplus}
    check_templates(loaded, [n for n in store.nodes(infra.id) if n.id not in leaving], infra)
    if surplus:
        emit(sink, ProgressEvent("info", f"retiring {len(surplus)} node(s): {', '.join(n.name for n in surplus)}"))
        await retire(store, infra, surplus, loaded=loaded, reach=reach, pool=pool, providers=providers, sink=sink)
    intents = run_intents if run_intents is not None else []
    # a group whose boot data may name another group's nodes (Occopus' getip in a cloud-config) is made
    # when the groups it depends on are ready, as Occopus did; every other group is made at once
    later = {name for name, group in loaded.spec.groups.items() if loaded.boot.get(name) and group.depends_on}

    async def create(groups: Collection[str]) -> None:
        await _create_missing(loaded, store, infra, identity, providers, sink, intents, only=groups)
        reach.pins.update({node_id: row.public_key for node_id, row in store.host_keys(infra.id).items()})

    await create(set(loaded.spec.groups) - later)
    held = {n.id for n in rollout.behind(loaded, store.nodes(infra.id))} - set(in_place)

    async def before_level(level: Collection[str]) -> None:
        if later & set(level):
            await create(later & set(level))

    await _deploy_all(loaded, store, infra, reach, pool, redact, sink, force, held, rerun=in_place,
                      before_level=before_level)
    rollout.stamp(loaded, store, infra.id, held)
    return infra


def _key_path(loaded: LoadedSpec) -> Path | None:
    key = loaded.spec.ssh.key
    if not key:
        return None
    path = Path(key).expanduser()
    return path if path.is_absolute() else loaded.path.parent / path


async def _sync_groups(loaded: LoadedSpec, store: Store, infra_id: str, redact: Redactor, *,
                       replace: Collection[str] = (), victims: Collection[str] = ()) -> list[Node]:
    """Make the group rows and node rows say what the plan says; return the nodes to retire.

    New nodes are added as ``pending`` rows (created next); surplus, dead and replaced nodes, and every
    node of a removed group, are returned.  Liveness is checked with one list call per provider.
    """
    spec = loaded.spec
    infra = store.infrastructure(infra_id)
    rows = {g.name: g for g in infra.groups}
    nodes, changes = await fresh_nodes(loaded, store, infra)
    record(store, infra_id, nodes, changes)
    diffs = {d.name: d for d in diff_groups(loaded, infra.groups, nodes, replace=replace, victims=victims)}
    surplus: list[Node] = []
    for position, (group_name, group) in enumerate(spec.groups.items()):
        fields: dict[str, Any] = {
            "position": position, "provider": group.provider,
            "provider_type": spec.providers[group.provider].type if group.provider in spec.providers
            else group.provider,
            "image": group.image, "size": group.size_name, "count": group.count,
            "config": _group_config(loaded, group_name, redact),
        }
        if group_name in rows:
            store.update_group(infra_id, group_name, **fields)
        else:
            store.add_group(infra_id, name=group_name, **fields)
        diff = diffs[group_name]
        surplus += [*diff.destroy, *diff.replace]
        store.add_nodes(infra_id, [
            {"group_name": group_name, "name": f"{spec.name}-{group_name}-{index}", "index": index,
             "provider": group.provider, "release": group_digest(loaded, group_name),
             "shape": shape_digest(loaded, group_name)}
            for index in new_indices(nodes, group_name, diff.create)
        ])
    for group_name, diff in diffs.items():
        if diff.removed:
            store.update_group(infra_id, group_name, count=0)
            surplus += diff.destroy
    return surplus


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


def _size_need(size: object) -> SizeNeed | None:
    if isinstance(size, SpecSizeNeed):
        return SizeNeed(cpus=size.cpus, memory_mib=size.memory_mib)
    return None


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


async def _create_missing(
    loaded: LoadedSpec, store: Store, infra: Infrastructure, identity: Identity, providers: Providers,
    sink: EventSink | None, run_intents: list[str], *, only: Collection[str],
) -> None:
    """One journaled bulk create per group of ``only`` (and place) for its ``pending`` nodes, all at once."""
    nodes = store.nodes(infra.id)

    async def create_group(group_name: str) -> None:
        group = loaded.group(group_name)
        rows = [n for n in nodes if n.group_name == group_name and n.state == NodeState.PENDING]
        if not rows:
            return
        tags = {**group.tags, TAG_INFRA: infra.id, TAG_GROUP: group_name, TAG_OWNER: identity.user_name}

        async def make(provider_name: str, batch: Sequence[Node]) -> None:
            boot = _boot_data(loaded, group_name, batch, nodes, infra)
            if len(set(boot)) > 1:  # the boot data names the node: one create call per node
                await asyncio.gather(*(make_one(provider_name, [node], data) for node, data in zip(batch, boot,
                                                                                                   strict=True)))
            else:
                await make_one(provider_name, batch, boot[0] if boot else None)

        async def make_one(provider_name: str, batch: Sequence[Node], user_data: str | None) -> None:
            place = next((p for p in group.placement if p.provider == provider_name), None)
            size = group.size if isinstance(group.size, str) else None
            provider = providers.get(provider_name)
            image = (place and place.image) or group.image
            user, public_key = login_of(loaded, group_name, identity, provider.default_user(image))
            request = CreateRequest(
                count=len(batch), image=image, size=(place and place.size) or size,
                tags=tags, ssh_user=user, ssh_public_key=public_key,
                names=[n.name for n in batch], token=_request_token(infra.id, group_name, batch),
                ports=group.ports, size_need=_size_need(group.size), user_data=user_data,
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
    loaded: LoadedSpec, store: Store, infra: Infrastructure, reach: Reach, pool: ConnectionPool,
    redact: Redactor, sink: EventSink | None, force: bool, held: Collection[str] = (), rerun: Collection[str] = (),
    before_level: Callable[[Collection[str]], Awaitable[None]] | None = None,
) -> None:
    """Each node runs its scripts as soon as it accepts SSH; the first failure stops the run.  ``held``: nodes
    of an older release that a rolling update replaces batch by batch (they keep what they run).  ``rerun``:
    nodes taking a release in place, which run every script of it: a script that succeeded there once may
    have been undone by a release since (a rollback to it must run it again)."""
    nodes = store.nodes(infra.id)
    done = {} if force else {key: digest for key, digest in store.script_digests(infra.id).items()
                             if key[0] not in rerun}

    def unchanged(node: Node) -> bool:
        """A ready node whose every script already succeeded as it renders now: no login needed at all."""
        if force or node.state != NodeState.READY:
            return False
        group = loaded.group(node.group_name)
        context = template_context(node, nodes, infra, loaded.variables_for(node.group_name), loaded.env)
        env = node_env(node, group.env)
        return all(done.get((node.id, s.source)) == script_digest(s.source, render(s.source, s.content, context), env)
                   for s in loaded.scripts[node.group_name])

    async def deploy(node: Node) -> None:
        if unchanged(node):
            return
        context = template_context(node, nodes, infra, loaded.variables_for(node.group_name), loaded.env)
        scripts = [{"name": s.name, "source": s.source, "content": s.content} for s in loaded.scripts[node.group_name]]
        await deploy_node(pool, reach.target(node), store, node, scripts, context, loaded.group(node.group_name).env,
                          redact, sink, done=done, interrupted="deploy interrupted: another node failed",
                          uploads=loaded.group(node.group_name).upload, base=loaded.path.parent)

    # level by level (depends_on): a group's scripts start when every group it depends on is ready, and
    # see their addresses; within a level each node starts the moment it accepts SSH
    for level in loaded.spec.levels():
        if before_level is not None:
            await before_level(level)
            nodes = store.nodes(infra.id)
        async with asyncio.TaskGroup() as tasks:
            for node in nodes:
                if node.state in LIVE_NODE_STATES and node.group_name in level and node.id not in held:
                    tasks.create_task(deploy(node))
        nodes = store.nodes(infra.id)


async def _rollback(store: Store, infra: Infrastructure, providers: Providers, run_intents: Sequence[str],
                    reason: str) -> None:
    """Undo exactly what this run created, read from the journal."""
    with contextlib.suppress(CloudherdError):
        await journal.undo(store, infra, providers, run_intents)
    for node in store.nodes(infra.id):
        if node.state == NodeState.PENDING:  # never created: nothing to undo
            store.update_node(node.id, state=NodeState.TERMINATED, reason="not created (rolled back)")
    store.set_infrastructure_state(infra.id, InfraState.FAILED, f"{reason} (rolled back)")
    store.add_event(infra.id, "rollback", "rolled back")


def _request_token(infra_id: str, group: str, batch: Sequence[Node]) -> str:
    """The idempotency token of a create: the same for a retry of the very same rows (a cloud then answers
    with what the first call made), another for any other batch — after a killed run's create is resolved,
    the rows never made are asked for again, and under the first batch's token the cloud would hand back
    that batch's machines (already adopted by its other rows) instead of making new ones."""
    rows = hashlib.sha256(",".join(row.id for row in batch).encode()).hexdigest()[:16]
    return f"{infra_id}-{group}-{rows}"
