"""``up``: bring an infrastructure to what its spec says, and deploy its scripts.

A new name makes a new infrastructure; a name that is active already is converged: missing nodes are
created, surplus (and dead) nodes retired, and scripts whose rendered text changed are re-run while
unchanged ones are skipped.  Each node starts its scripts the moment it accepts SSH, over one pooled
connection.  On failure or Ctrl-C, what this run created is rolled back (unless asked to keep it).

Under the infrastructure's lease an ``up`` settles what a killed command left, builds the plan
(:mod:`cloudherd.engine.plan`) and executes exactly it (:mod:`cloudherd.engine.converge`), then rolls the
rolling groups through the plan's batches (:mod:`cloudherd.engine.rollout`).  :func:`execute` runs a plan
saved earlier instead, once it has checked that the state it was computed from is still the state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from cloudherd.engine import journal, revisions, rollout
from cloudherd.engine.budget import check_spec
from cloudherd.engine.causes import log_made
from cloudherd.engine.context import Providers, Redactor, ensure_identity
from cloudherd.engine.converge import converge, failure_reason, observed_plan, write_rows
from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.engine.lifetime import stamp_end
from cloudherd.engine.locks import DEFAULT_WAIT, exclusive, infra_scope
from cloudherd.engine.plan import Plan, StalePlan, check_plan, prior_state
from cloudherd.engine.session import RunSession
from cloudherd.engine.templates import PlannedInfra, check_templates, planned_fleet
from cloudherd.errors import ApplyFailed, CloudherdError
from cloudherd.lifecycle import InfraState, NodeState, RevisionState
from cloudherd.observe import cause, tracing
from cloudherd.spec import LoadedSpec
from cloudherd.state.models import Infrastructure, Revision
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

    check_spec(loaded.spec)  # a spec over its hourly budget makes nothing
    async with exclusive(store, infra_scope(loaded.spec.name), "up", wait=wait, on_wait=waiting):
        return await _up(loaded, store, keep_on_failure=keep_on_failure, on_event=on_event,
                         connect_timeout=connect_timeout, handshakes=handshakes, force=force,
                         accept_new_host_key=accept_new_host_key, origin=origin, no_rollback=no_rollback,
                         pause_after=pause_after)



async def execute(plan: Plan, loaded: LoadedSpec, store: Store, *, keep_on_failure: bool = False,
                  on_event: EventSink | None = None, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                  handshakes: int | None = None, accept_new_host_key: Collection[str] = (), wait: float = DEFAULT_WAIT,
                  no_rollback: bool = False, pause_after: int | None = None) -> str:
    """``up`` of a saved ``plan`` (:func:`cloudherd.engine.plan.load_plan`): exactly its changes, or none at all.

    ``loaded`` is the spec the plan was computed for (read again by the caller, from ``plan.spec_path``).  Under
    the lease the state is read again: when it is not the state the plan was computed from (another command
    changed the infrastructure, a machine's recorded state changed, leftovers of a killed command wait to be
    settled) or the spec changed, :class:`~cloudherd.engine.plan.StalePlan` is raised and nothing is done.
    Otherwise as :func:`up` (its keywords the same; ``force`` is the plan's); returns the infrastructure's id."""
    def waiting(message: str) -> None:
        emit(on_event, ProgressEvent("info", message))

    async with exclusive(store, infra_scope(loaded.spec.name), "up", wait=wait, on_wait=waiting):
        check_plan(plan, loaded, prior_state(store, loaded.spec.name))
        existing = store.active_named(loaded.spec.name)
        if existing is not None and (store.open_intents(existing.id) or store.has_leftovers(existing.id)):
            raise StalePlan(f"{loaded.spec.name} has leftovers of an interrupted command to settle first "
                            "(`cloudherd status` settles them): run plan again after")
        return await _up(loaded, store, keep_on_failure=keep_on_failure, on_event=on_event,
                         connect_timeout=connect_timeout, handshakes=handshakes, force=plan.force,
                         accept_new_host_key=accept_new_host_key, origin="up", no_rollback=no_rollback,
                         pause_after=pause_after, plan=plan)

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
    check_spec(spec)
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
        stamp_end(store, store.infrastructure(infra_id), spec)
        owner = store.user_by_id(owner_id) if owner_id else None
        revisions.begin(store, infra_id, loaded, owner.name if owner else identity.user_name, "submit",
                        restart=False)
        write_rows(await observed_plan(loaded, store, infra_id), loaded, store, infra_id, Redactor(set(loaded.secrets)))
        store.add_event(infra_id, "submit", f"{spec.name} submitted: the manager makes it")
        return infra_id


async def _up(loaded: LoadedSpec, store: Store, *, keep_on_failure: bool, on_event: EventSink | None,
              connect_timeout: float, handshakes: int | None, force: bool, accept_new_host_key: Collection[str],
              origin: str, no_rollback: bool, pause_after: int | None, plan: Plan | None = None) -> str:
    """An ``up`` is an operation: a trace of its own, and the origin its events carry (the command's, when a
    command opened one; else ``cloudherd <origin>``)."""
    with tracing.operation_span(origin, cause.origin() or f"cloudherd {origin}", infrastructure=loaded.spec.name):
        return await _apply(loaded, store, keep_on_failure=keep_on_failure, on_event=on_event,
                            connect_timeout=connect_timeout, handshakes=handshakes, force=force,
                            accept_new_host_key=accept_new_host_key, origin=origin, no_rollback=no_rollback,
                            pause_after=pause_after, plan=plan)


async def _apply(loaded: LoadedSpec, store: Store, *, keep_on_failure: bool, on_event: EventSink | None,
                 connect_timeout: float, handshakes: int | None, force: bool, accept_new_host_key: Collection[str],
                 origin: str, no_rollback: bool, pause_after: int | None, plan: Plan | None = None) -> str:
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
        started = store.add_event(infra.id, "up", f"up of {spec.name} started")
        emit(on_event, ProgressEvent("info", f"infrastructure {infra.id} ({spec.name})"))
    else:
        infra = existing
        store.update_infrastructure(infra.id, state=InfraState.UPDATING, reason=None, spec_text=loaded.raw_text,
                                    spec_path=str(loaded.path.resolve()), confined=confined_record(loaded))
        started = store.add_event(infra.id, "up", f"converging {spec.name}")
        emit(on_event, ProgressEvent("info", f"infrastructure {infra.id} ({spec.name}): converging"))
    stamp_end(store, infra, spec)
    release = revisions.begin(store, infra.id, loaded, identity.user_name, origin)
    run_intents: list[str] = []
    stopped: str | rollout.RolloutPaused | None = None
    async with RunSession(store, infra, loaded, identity=identity, sink=on_event, connect_timeout=connect_timeout,
                          handshakes=handshakes, accept_new_host_key=accept_new_host_key) as run:
        try:
            seen = await run.observe()  # one read; a killed run's half-done states and cloud calls settled first
            run.check_reach()
            try:
                before = {n.id for n in seen.nodes if n.state != NodeState.PENDING}
                _, executed = await converge(loaded, store, infra, run, force=force, run_intents=run_intents,
                                             plan=plan, seen=seen)
                log_made(store, infra, before, started, "up")
                roll = rollout.Rollout(store, infra, run, run_intents)
                stopped = await roll_out(loaded, roll, release, no_rollback, pause_limit(loaded, pause_after),
                                         executed)
            finally:
                await run.hang_up()
            if isinstance(stopped, rollout.RolloutPaused):
                said = f"paused at revision {release.number}: {stopped}"
                store.set_infrastructure_state(infra.id, InfraState.READY)
                store.end_revision(release.id, RevisionState.PAUSED, str(stopped))
                store.add_event(infra.id, "rollout", said)
                emit(on_event, ProgressEvent("info", f"{said} (cloudherd rollout {spec.name} resume | abort)"))
                return infra.id
            if stopped is None:
                store.set_infrastructure_state(infra.id, InfraState.READY)
                store.end_revision(release.id, RevisionState.APPLIED)
                store.add_event(infra.id, "up", f"ready (revision {release.number})")
                return infra.id
        except BaseException as exc:
            reason = failure_reason(exc)
            store.end_revision(release.id, RevisionState.FAILED, reason)
            store.add_event(infra.id, "error", reason)
            emit(on_event, ProgressEvent("error", reason))
            if keep_on_failure:
                store.set_infrastructure_state(infra.id, InfraState.FAILED,
                                               reason + " (kept, as asked, for inspection)")
            else:
                emit(on_event, ProgressEvent("info", "rolling back what this run created"))
                await _rollback(store, infra, run.providers, run_intents, reason)
            if isinstance(exc, CloudherdError | BaseExceptionGroup) and not isinstance(exc, asyncio.CancelledError):
                raise ApplyFailed(f"up of {spec.name} failed: {reason}") from exc
            raise
    # the rollout stopped at a batch that failed its gate: what it made is settled (rolled back, or kept)
    store.end_revision(release.id, RevisionState.FAILED, stopped)
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
                   pause_after: int | None, plan: Plan | None = None) -> str | rollout.RolloutPaused | None:
    """Roll the rolling groups' held nodes to this release, through ``plan``'s batches (the converge's just
    executed; None: as the nodes stand now); None when done, the pause when it paused, else why it stopped (and
    what was done about it: the failed batch's new nodes retired, then the fleet back at the release before)."""
    store, infra_id, sink = roll.store, roll.infra.id, roll.session.sink
    try:
        await roll.run(loaded, pause_after, plan)
        return None
    except rollout.RolloutPaused as paused:
        return paused
    except rollout.RolloutFailed as failed:
        emit(sink, ProgressEvent("error", str(failed)))
        await roll.retire_made(loaded, failed.group, failed.made)
        if no_rollback or not loaded.group(failed.group).update.rollback:
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
        _, back_plan = await converge(back, store, roll.infra, roll.session, run_intents=roll.run_intents)
        await roll.run(back, plan=back_plan)
        store.end_revision(undo.id, RevisionState.APPLIED)
        store.set_infrastructure_state(infra_id, InfraState.READY)
        return f"{failed}; rolled back to revision {previous.number}"


def _key_path(loaded: LoadedSpec) -> Path | None:
    key = loaded.spec.ssh.key
    if not key:
        return None
    path = Path(key).expanduser()
    return path if path.is_absolute() else loaded.path.parent / path


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


