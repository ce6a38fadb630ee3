"""The client's life-cycle commands: set up, bring up, change, scale, roll out and back, tear down; orphans,
faults, the manager's attachment, users and tokens."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cloudherd.api import views
from cloudherd.api.client_core import PathLike, Specs, _check_limits, _safe_url, _scale_change, _scaling, _unmade
from cloudherd.api.client_queries import Queries
from cloudherd.api.types import (
    Fault,
    InfrastructureSummary,
    IssuedToken,
    Orphan,
    PassResult,
    Plan,
    Revision,
    Rollout,
    ScaleResult,
    Setup,
    SpecSummary,
    Token,
    User,
)
from cloudherd.errors import NotFound, UsageError
from cloudherd.lifecycle import InfraState, RevisionState

if TYPE_CHECKING:
    from cloudherd.engine.events import EventSink
    from cloudherd.engine.plan import Plan as EnginePlan
    from cloudherd.spec import LoadedSpec
    from cloudherd.spec.confine import Confinement


class Commands(Queries):
    """What :class:`~cloudherd.api.client.Client` changes."""

    # -- infrastructures ---------------------------------------------------------------------------

    async def init(self) -> Setup:
        """Make the database, the user and the SSH key pair if missing; say where they are."""
        from cloudherd.engine.context import ensure_identity
        from cloudherd.paths import data_dir

        identity = ensure_identity(self.store)
        return Setup(user=identity.user_name, key=str(identity.key_path), database=_safe_url(self._db_url),
                     data=str(data_dir()))

    async def up(self, spec: Specs | None, *, keep_on_failure: bool = False, on_event: EventSink | None = None,
                 connect_timeout: float = 120.0, force: bool = False, concurrency: int | None = None,
                 accept_new_host_key: Sequence[str] = (), wait: float = 600.0, format: str | None = None,
                 no_rollback: bool = False, pause_after: int | None = None,
                 counts: Mapping[str, int] | None = None, plan_file: PathLike | None = None,
                 ttl: float | None = None) -> str:
        """Create the spec's infrastructure, or converge the active one of the same name; returns its id.

        ``ttl``: seconds from now after which the manager brings it down (else its spec's ``ttl:``, from its
        making).

        ``plan_file``: execute the plan :meth:`plan` saved there (``out``) exactly, or refuse it with
        :class:`~cloudherd.engine.plan.StalePlan` when the infrastructure's state or the spec changed since;
        ``spec`` may then be None (the plan's own spec file is read).

        ``counts`` starts groups at other sizes than the spec's (OGC's ``launch``: one node of a layout).

        ``spec`` may also be an OGC layout file or an Occopus description (detected, or ``format``).

        Unchanged scripts are skipped on nodes where they already succeeded (``force`` re-runs them);
        ``concurrency`` bounds SSH handshakes in flight; ``accept_new_host_key`` names nodes whose new
        host key is taken as their pin.  While another operation changes the same infrastructure,
        this waits up to ``wait`` seconds for it (0: give up at once), then raises BusyError.  A rolling
        group's batch that fails its health gate rolls it back to the release before, unless ``no_rollback``;
        it pauses after ``pause_after`` nodes (a canary: see :meth:`rollout`).
        """
        from cloudherd.engine.apply import up

        _check_limits(connect_timeout=connect_timeout, concurrency=concurrency, wait=wait, ttl=ttl)
        from cloudherd.engine.events import ProgressEvent, emit

        if plan_file is not None:
            from cloudherd.engine.apply import execute

            saved, loaded = self._saved_plan(spec, plan_file, format)
            return await execute(saved, loaded, self.store, keep_on_failure=keep_on_failure, on_event=on_event,
                                 connect_timeout=connect_timeout, handshakes=concurrency,
                                 accept_new_host_key=accept_new_host_key, wait=wait, no_rollback=no_rollback,
                                 pause_after=pause_after)
        if spec is None:
            raise UsageError("give the spec file (or a saved plan: plan_file)")
        loaded = self._load(spec, format)
        for name, count in (counts or {}).items():
            if name not in loaded.spec.groups:
                raise UsageError(f"no group '{name}' in {loaded.spec.name} (groups: {', '.join(loaded.spec.groups)})")
            loaded.spec.groups[name].count = count
        for warning in loaded.warnings:
            emit(on_event, ProgressEvent("warning", str(warning)))
        infra_id = await up(loaded, self.store, keep_on_failure=keep_on_failure, on_event=on_event,
                            connect_timeout=connect_timeout, force=force, handshakes=concurrency,
                            accept_new_host_key=accept_new_host_key, wait=wait, no_rollback=no_rollback,
                            pause_after=pause_after)
        self._live_for(infra_id, loaded, ttl)
        return infra_id

    async def submit(self, spec: Specs, *, format: str | None = None, owner: str | None = None,
                     attach: bool = True, wait: float = 600.0, new_only: bool = False,
                     within: Confinement | None = None, ttl: float | None = None) -> str:
        """Record an infrastructure without making it: the manager's first pass does (``serve`` runs one);
        ``attach`` marks it kept alive.  ``owner`` is a user id (default: you).  With ``new_only``, a name
        that is already active is refused (:class:`~cloudherd.errors.NameTaken`) instead of updated.
        ``within`` confines a spec that came over the network (:mod:`cloudherd.spec.confine`)."""
        from cloudherd.engine.apply import submit
        from cloudherd.errors import NameTaken

        _check_limits(wait=wait, ttl=ttl)
        loaded = self._load(spec, format, within)
        existing = self.store.active_named(loaded.spec.name)
        if new_only and existing is not None and not _unmade(existing, owner):
            raise NameTaken(f"an infrastructure named {loaded.spec.name} exists already ({existing.id})")
        infra_id = await submit(loaded, self.store, wait=wait, owner_id=owner, attached=attach)
        if attach:
            self.store.add_event(infra_id, "attach", "attached: kept alive by the manager")
        self._live_for(infra_id, loaded, ttl)
        return infra_id

    def _live_for(self, infra_id: str, loaded: LoadedSpec, ttl: float | None) -> None:
        """``up --ttl``: the infrastructure ends ``ttl`` seconds from now (the spec's ``ttl:`` is the engine's)."""
        if ttl is not None:
            from cloudherd.engine.lifetime import stamp_end

            stamp_end(self.store, self.store.infrastructure(infra_id), loaded.spec, ttl)

    async def validate(self, spec: Specs, *, format: str | None = None) -> SpecSummary:
        """Load ``spec`` and render every script and teardown against the fleet it describes; touches nothing.

        Errors are :class:`~cloudherd.errors.SpecError` with the file and line (a script's own line for
        a template error).
        """
        from cloudherd.engine.templates import PlannedInfra, check_templates, planned_fleet

        loaded = self._load(spec, format)
        check_templates(loaded, planned_fleet(loaded), PlannedInfra("(new)", loaded.spec.name))
        return SpecSummary(name=loaded.spec.name, groups={n: g.count for n, g in loaded.spec.groups.items()},
                           warnings=tuple(map(str, loaded.warnings)))

    async def plan(self, spec: Specs, *, format: str | None = None, within: Confinement | None = None,
                   out: PathLike | None = None) -> Plan:
        """What ``up`` of ``spec`` would change (create / destroy / replace / scripts to re-run); changes nothing.

        ``out``: also save the plan there, with a fingerprint of the state it was computed from, for
        ``up(plan_file=…)`` to execute exactly (Terraform's ``plan -out``)."""
        from cloudherd.api.costs import Prices
        from cloudherd.engine.budget import refusal
        from cloudherd.engine.plan import make_plan, save_plan

        loaded = self._load(spec, format, within)
        made = await make_plan(loaded, self.reads)
        if out is not None:
            save_plan(made, out)
        prices = Prices()
        priced = {g.name: prices.of_group(loaded.spec, g.name, g.provider) for g in made.groups
                  if g.name in loaded.spec.groups}
        over = refusal(loaded.spec, {name: g.count for name, g in loaded.spec.groups.items()}, prices)
        markets = {name: group.market for name, group in loaded.spec.groups.items()}
        return views.plan(made, loaded.warnings, priced, markets).model_copy(update={"over_budget": over})

    def _saved_plan(self, spec: Specs | None, plan_file: PathLike, format: str | None) -> tuple[EnginePlan, LoadedSpec]:
        """A saved plan and the spec it is for (its own spec file, unless ``spec`` is given)."""
        from cloudherd.engine.plan import load_plan

        saved = load_plan(plan_file)
        source = spec if spec is not None else saved.spec_path
        if source is None:
            raise UsageError(f"{plan_file} names no spec file: give it")
        return saved, self._load(source, format)

    async def convert(self, spec: Specs, *, format: str | None = None) -> str:
        """The native spec an OGC layout file or an Occopus description means, as YAML (a native one as it is);
        several OGC files are merged left to right first (OGC's base + override files)."""
        from cloudherd.spec.files import Where, read_text
        from cloudherd.spec.foreign import merged_files, native_text
        from cloudherd.spec.loader import load_spec

        if not isinstance(spec, str | os.PathLike):
            paths = list(spec)
            self._load(paths, format)  # every error found, with its line, first
            return merged_files(paths, format=format)[0] if len(paths) > 1 else \
                await self.convert(paths[0], format=format)
        load_spec(spec, format=format, node_defs=self._node_defs)  # every error found, with its line, first
        text = read_text(Path(spec), Where(str(spec)), yaml=True)
        return native_text(text, str(spec), format=format, node_defs=self._node_defs, base=Path(spec).parent)

    async def import_node_defs(self, path: PathLike) -> list[str]:
        """Store the Occopus node definitions of ``path`` (``'node_def:<type>'`` entries); returns the types."""
        from cloudherd.spec.compat.occopus import read_node_definitions

        definitions = read_node_definitions(Path(path))
        self.store.put_node_defs(definitions, str(Path(path).resolve()))
        return sorted(key.partition(":")[2] for key in definitions)

    async def down(self, ref: str, *, on_event: EventSink | None = None,
                   artifacts_dir: PathLike | None = None, wait: float = 600.0, force: bool = False) -> str:
        """Pull artifacts, run teardowns, terminate every node; artifacts land in ``artifacts_dir/<node>/``.

        Waits up to ``wait`` seconds for another operation on the infrastructure to end first.  Nodes
        whose provider cannot terminate them make the down fail, naming them; ``force`` forgets them.
        """
        from cloudherd.engine.destroy import down

        _check_limits(wait=wait)
        infra = self.store.resolve(ref)
        await down(self.store, infra, on_event=on_event, artifacts_dir=artifacts_dir, wait=wait, force=force)
        return infra.id

    async def fault(self, node: str, kind: str, *, ref: str | None = None, peer: str | None = None) -> Fault:
        """Make a local node ``crash``, ``hang`` or lose its network (``partition``), or ``heal`` it: for testing
        what the manager and a group's health checks do then.  ``node`` is a name, id, provider id or address (the
        one rule: :meth:`cloudherd.state.repo.Store.resolve_node`), looked for in every active infrastructure (or
        in ``ref``'s); ``peer``, a node of the same infrastructure, makes the partition one between the two alone.
        Recorded as a ``fault`` event."""
        from cloudherd.engine.faults import inject

        scope = self.store.resolve(ref) if ref else None
        try:
            row = self.store.resolve_node(node, infrastructure_id=scope.id if scope else None)
        except NotFound:
            raise UsageError(f"no live node '{node}'" + (f" in {scope.name}" if scope else "")) from None
        infra = scope or self.store.infrastructure(row.infrastructure_id)
        other = None
        if peer is not None:
            try:
                other = self.store.resolve_node(peer, infrastructure_id=infra.id)
            except NotFound:
                other = None
            if other is None or other.id == row.id:
                raise UsageError(f"no other live node '{peer}' in {infra.name}")
        done = await inject(self.store, infra, row, kind, other)
        return Fault(infrastructure=infra.name, node=row.name, kind=kind, done=done)

    # -- orphans -----------------------------------------------------------------------------------

    async def gc(self, *, provider: str | None = None, delete: bool = False) -> list[Orphan]:
        """Machines with cloudherd's tags that no infrastructure here accounts for; ``delete`` removes them."""
        from cloudherd.engine.gc import delete_orphans, find_orphans

        orphans = await find_orphans(self.store, provider)
        if delete and orphans:
            await delete_orphans(self.store, orphans)
        return [views.orphan(o) for o in orphans]

    async def adopt(self, ref: str, group: str, ids: Sequence[str]) -> list[str]:
        """Bring orphan machines ``ids`` under ``ref`` as nodes of ``group``; the next ``up`` deploys them."""
        from cloudherd.engine.gc import adopt

        return await adopt(self.store, self.store.resolve(ref), group, ids)

    # -- the manager -------------------------------------------------------------------------------

    async def attach(self, ref: str) -> InfrastructureSummary:
        """Mark ``ref`` as kept alive: ``manage --all`` (and ``serve``) pick it up at their next pass."""
        infra = self.store.resolve(ref)
        if infra.state == "destroyed":
            raise UsageError(f"{infra.name} ({infra.id}) is destroyed: nothing to keep alive")
        self.store.update_infrastructure(infra.id, attached=True)
        self.store.add_event(infra.id, "attach", "attached: kept alive by the manager")
        return views.summary(self.store.infrastructure(infra.id))

    async def detach(self, ref: str) -> InfrastructureSummary:
        """Stop keeping ``ref`` alive (its machines stay as they are)."""
        infra = self.store.resolve(ref)
        self.store.update_infrastructure(infra.id, attached=False)
        self.store.add_event(infra.id, "detach", "detached: no longer kept alive")
        return views.summary(self.store.infrastructure(infra.id))

    async def manage(self, refs: Sequence[str] = (), *, every_attached: bool = False, interval: float = 10.0,
                     once: bool = False, on_event: EventSink | None = None,
                     on_pass: Callable[[PassResult], None] | None = None, stop: asyncio.Event | None = None
                     ) -> list[PassResult]:
        """Reconcile passes every ``interval`` seconds over ``refs`` (or every attached infrastructure) until
        ``stop`` is set, or one round with ``once``; a pass in progress always finishes.  Returns the last
        round's reports.  A second manager of the same infrastructure is refused (BusyError)."""
        from cloudherd.engine.manager import Manager

        _check_limits(interval=interval)
        if not refs and not every_attached:
            raise UsageError("name the infrastructures to manage, or ask for every attached one")
        ids = [self.store.resolve(r).id for r in refs]
        manager = Manager(self.store, ids, every_attached=every_attached, interval=interval, sink=on_event,
                          on_pass=(lambda r: on_pass(views.pass_result(r))) if on_pass else None,
                          stop=stop or asyncio.Event())
        from cloudherd.api import notify

        async with notify.delivering(self.store, enabled=not once):  # the outbox's sender beside the passes
            return [views.pass_result(r) for r in await manager.run(once=once)]

    async def scale(self, ref: str, group: str, change: str | int, *, victims: Sequence[str] = (),
                    wait: float = 600.0, on_event: EventSink | None = None, run_pass: bool = True) -> ScaleResult:
        """Ask for ``group`` to grow (``"+2"``), shrink (``"-1"``, ``victims`` first) or be a size (``"=5"``, ``5``).

        The request is stored and consumed by the manager's next pass; when no manager keeps the
        infrastructure, one pass runs here (waiting up to ``wait`` seconds for another command on it),
        unless ``run_pass`` is False (the caller runs one).
        """
        from cloudherd.engine.scale_requests import scale_target

        kind, amount = _scale_change(change)
        infra = self.store.resolve(ref)
        if infra.state == "destroyed":
            raise UsageError(f"{infra.name} ({infra.id}) is destroyed")
        rows = {g.name: g for g in infra.groups}
        if group not in rows:
            raise UsageError(f"no group '{group}' in {infra.name} (groups: {', '.join(sorted(rows))})")
        victim_ids = self._victim_ids(infra, group, victims)
        low, high, _ = _scaling(infra, self.store).get(group, (None, None, ()))
        before = rows[group].count
        target, note = scale_target(before, kind, amount, low, high)
        if target > self.max_group_size:
            raise UsageError(f"{group} of {infra.name} would have {target} nodes: a group has at most "
                             f"{self.max_group_size} here")
        request_id = self.store.add_scale_request(infra.id, group, kind, amount, victim_ids)
        applied = run_pass and await self._pass_now(infra, "scale", wait, on_event)
        row = self.store.scale_request(request_id)
        return ScaleResult(group=group, before=before, target=target, note=note, applied=applied,
                           outcome=row.outcome if row is not None else None)

    # -- revisions --------------------------------------------------------------------------------

    async def rollback(self, ref: str, revision: int | None = None, *, on_event: EventSink | None = None,
                       connect_timeout: float = 120.0, wait: float = 600.0) -> Revision:
        """Apply an earlier release again (default: the newest applied one before the current), through the
        same path as ``up``; each group keeps its size now.  Returns the revision this made."""
        from cloudherd.engine import revisions
        from cloudherd.engine.apply import up
        from cloudherd.spec.confine import Confinement

        _check_limits(connect_timeout=connect_timeout, wait=wait)
        infra = self.store.resolve(ref)
        if infra.state == InfraState.DESTROYED:
            raise UsageError(f"{infra.name} ({infra.id}) is destroyed: nothing to roll back")
        target = revisions.pick(self.store.revisions(infra.id), revision)
        loaded = revisions.loaded_from(target, {g.name: g.count for g in infra.groups},
                                       within=Confinement.from_record(infra.confined))
        await up(loaded, self.store, on_event=on_event, connect_timeout=connect_timeout, wait=wait,
                 origin=f"rollback to {target.number}")
        return (await self.history(infra.id))[-1]

    async def resume(self, ref: str, *, on_event: EventSink | None = None, connect_timeout: float = 120.0,
                     wait: float = 600.0) -> Rollout:
        """Go on with a paused (or cut short) rollout of the latest release, to the end (no more pauses)."""
        from cloudherd.engine import revisions
        from cloudherd.engine.apply import up
        from cloudherd.spec.confine import Confinement

        _check_limits(connect_timeout=connect_timeout, wait=wait)
        infra = self.store.resolve(ref)
        rows = self.store.revisions(infra.id)
        if infra.state == InfraState.DESTROYED or not rows:
            raise UsageError(f"{infra.name} ({infra.id}) has no rollout to resume")
        latest = rows[-1]
        loaded = revisions.loaded_from(latest, {g.name: g.count for g in infra.groups},
                                       within=Confinement.from_record(infra.confined))
        await up(loaded, self.store, on_event=on_event, connect_timeout=connect_timeout, wait=wait,
                 origin=latest.origin, pause_after=0)
        return await self.rollout(infra.id)

    async def abort(self, ref: str, *, on_event: EventSink | None = None, connect_timeout: float = 120.0,
                    wait: float = 600.0) -> Rollout:
        """Give up the latest release: the fleet goes back to the release before it, through the rolling path."""
        infra = self.store.resolve(ref)
        rows = self.store.revisions(infra.id)
        if not rows or rows[-1].state == RevisionState.APPLIED:
            raise UsageError(f"{infra.name} has no rollout in progress to abort (its latest revision is "
                             f"{'applied' if rows else 'none'}); `cloudherd rollback` goes back to an older one")
        given_up = rows[-1]
        await self.rollback(infra.id, on_event=on_event, connect_timeout=connect_timeout, wait=wait)
        self.store.end_revision(given_up.id, RevisionState.ABORTED, f"aborted at {given_up.state}"
                                + (f" ({given_up.reason})" if given_up.reason else ""))
        return await self.rollout(infra.id)

    # -- users and tokens (the network faces' credentials) -----------------------------------------

    async def add_user(self, name: str) -> User:
        """A user of the server: owns infrastructures and tokens, and sees only their own."""
        from cloudherd.api import auth

        return auth.add_user(self.store, name)

    async def create_token(self, *, user: str | None = None, name: str | None = None, aws: bool = False
                           ) -> IssuedToken:
        """A bearer token (or with ``aws`` an access key pair) for ``user`` (default: you); the secret is in the
        answer and nowhere else."""
        from cloudherd.api import auth

        return auth.create_token(self.store, user=user, name=name, aws=aws)

    async def revoke_token(self, ref: str) -> Token:
        """Revoke a token by id, key id or name."""
        from cloudherd.api import auth

        return auth.revoke_token(self.store, ref)
