"""What every part of :class:`~cloudherd.api.client.Client` stands on: its state store, its life as a context
manager, spec loading and the views it builds; and the checks and helpers the parts share."""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from cloudherd.api import views
from cloudherd.api.types import Infrastructure
from cloudherd.errors import NotFound, UsageError
from cloudherd.inputs import GROUP_SIZE_LIMIT, whole
from cloudherd.lifecycle import InfraState

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cloudherd.engine.events import EventSink
    from cloudherd.providers.base import Provider
    from cloudherd.remote.pool import ConnectionPool
    from cloudherd.spec import LoadedSpec
    from cloudherd.spec.confine import Confinement
    from cloudherd.spec.model import Group as GroupSpec
    from cloudherd.state.models import Infrastructure as InfraRow
    from cloudherd.state.models import Node as NodeRow
    from cloudherd.state.reader import Reader
    from cloudherd.state.records import InfraRecord, NodeRecord
    from cloudherd.state.repo import Store

Selectable = str | Sequence[str] | None  # one name or several
Tags = dict[str, str] | Sequence[str] | None  # {"k": "v"} or ["k=v"]
PathLike = str | os.PathLike[str]
Specs = PathLike | Sequence[PathLike]  # one spec, or OGC layout files merged left to right


class ClientCore:
    """The state a client holds (its database, its warm connections) and the helpers its methods share."""

    # the most nodes :meth:`scale` may ask a group for; a server sets its own (server.yml's max_group_size)
    max_group_size: int = GROUP_SIZE_LIMIT

    def __init__(self, db_url: str | None = None) -> None:
        self._db_url = db_url
        self._store: Store | None = None
        self._reader: Reader | None = None
        self._reader_tried = False  # and none could be opened: the store reads (see :attr:`reads`)
        self._warm: ConnectionPool | None = None

    def keep_connections(self, pool: ConnectionPool | None) -> None:
        """Run fleet commands over ``pool``, kept open between them (a server's warm connections; host keys
        are still checked on every new connection), or again over fresh ones with None."""
        self._warm = pool

    @property
    def store(self) -> Store:
        """The state store (opened, and migrated, on first use)."""
        if self._store is None:
            from cloudherd.state.repo import Store

            self._store = Store(_open(self._db_url))
        return self._store

    @property
    def reads(self) -> Store | Reader:
        """What reads the state: the lean reader (no SQLAlchemy) where it can, else the store
        (:mod:`cloudherd.state.reader` says when); the store once it is open anyway."""
        if self._store is not None:
            return self._store
        if not self._reader_tried:
            from cloudherd.state.location import database_url
            from cloudherd.state.reader import Reader

            self._reader, self._reader_tried = Reader.open(self._db_url or database_url()), True
        return self._reader or self.store

    async def close(self) -> None:
        """Release the database connections; the client opens them again if used afterwards."""
        if self._reader is not None:
            self._reader.close()
        self._reader, self._reader_tried = None, False
        if self._store is not None:
            self._store.engine.dispose()
            self._store = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    def _node_defs(self) -> dict[str, Any]:
        return self.reads.node_defs()

    def _load(self, spec: Specs, format: str | None, within: Confinement | None = None) -> LoadedSpec:
        from cloudherd.spec.loader import load_specs

        paths = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
        return load_specs(paths, format=format, node_defs=self._node_defs, within=within)

    def _pins(self, infra_id: str) -> dict[str, str]:
        return self.reads.pins(infra_id)

    def _view(self, infra: InfraRow | InfraRecord, nodes: Sequence[NodeRow | NodeRecord]) -> Infrastructure:
        from cloudherd.engine.holders import is_managed

        reads = self.reads
        row = reads.infrastructure(infra.id)
        return views.infrastructure(row, nodes, reads.pins(infra.id), reads.last_actions(infra.id),
                                    _scaling(row, reads), is_managed(reads, row.name), reads.latest_samples(infra.id))

    async def _pass_now(self, infra: InfraRow, what: str, wait: float, on_event: EventSink | None) -> bool:
        """One pass here when no manager keeps the infrastructure (else the manager's next one applies the
        change a command recorded); returns whether it ran."""
        from cloudherd.engine.events import ProgressEvent
        from cloudherd.engine.locks import exclusive, infra_scope, is_managed
        from cloudherd.engine.reconcile import reconcile

        if is_managed(self.store, infra.name):
            return False
        async with exclusive(self.store, infra_scope(infra.name), what, wait=wait,
                             on_wait=(lambda m: on_event(ProgressEvent("info", m))) if on_event else None):
            await reconcile(self.store, infra.id, sink=on_event)
        return True

    def _victim_ids(self, infra: InfraRow, group: str, victims: Sequence[str]) -> list[str]:
        """The live nodes ``victims`` name (the one rule: :meth:`cloudherd.state.repo.Store.resolve_node`)."""
        ids = []
        for victim in victims:
            try:
                row = self.store.resolve_node(victim, infrastructure_id=infra.id)
            except NotFound:  # a bad request of scale's, as before (400, not 404)
                raise UsageError(f"no live node '{victim}' in {infra.name} (by name, id or address)") from None
            if row.group_name != group:
                raise UsageError(f"{victim} is in group {row.group_name}, not {group}")
            ids.append(row.id)
        return ids


class _catalog_provider:
    """A provider of a type configured from the environment, closed after a catalog call."""

    def __init__(self, provider: str, region: str | None) -> None:
        from cloudherd.providers import make_provider

        self.driver: Provider = make_provider(provider, provider, {"region": region} if region else {})

    async def __aenter__(self) -> Provider:
        return self.driver

    async def __aexit__(self, *exc: object) -> None:
        await self.driver.close()


def _scale_change(change: str | int) -> tuple[str, int]:
    """``+2`` / ``-1`` / ``=5`` / ``5`` as (add | remove | set, amount)."""
    text = str(change).strip()
    kind = {"+": "add", "-": "remove", "=": "set"}.get(text[:1], "set")
    digits = text[1:] if text[:1] in "+-=" else text
    shown = text if len(text) <= 40 else f"{text[:30]}… ({len(text)} characters)"
    if not (digits.isascii() and digits.isdigit()) or isinstance(change, bool):
        raise UsageError(f"a scale is +N, -N or =N (or N), got '{shown}'")
    amount = whole(digits)  # None: more digits than any group could have nodes
    if amount is None or amount > GROUP_SIZE_LIMIT:
        raise UsageError(f"a scale is +N, -N or =N (or N) with N at most {GROUP_SIZE_LIMIT} (the most nodes a "
                         f"group may have), got '{shown}'")
    return kind, amount


def _scaling(infra: InfraRow | InfraRecord, reads: Store | Reader) -> dict[str, views.Scaling]:
    """Each group's min and max in force (the spec's as applied, or a scheduled action's since), and its scaling
    policies and schedules, a line each."""
    from cloudherd.engine.context import snapshot
    from cloudherd.engine.policies import describe
    from cloudherd.errors import SpecError

    try:
        spec = snapshot(infra).spec
    except SpecError:
        return {}
    scheduled = reads.scheduled_bounds(infra.id) if any(g.schedules for g in spec.groups.values()) else {}
    limits = {name: scheduled.get(name, (None, None)) for name in spec.groups}
    return {name: (g.min if limits[name][0] is None else limits[name][0],
                   g.max if limits[name][1] is None else limits[name][1],
                   [*(describe(p) for p in g.policies), *(s.describe() for s in g.schedules), *_scale_in_line(g)])
            for name, g in spec.groups.items()}


def _scale_in_line(group: GroupSpec) -> list[str]:
    """How a shrink chooses, when the group says more than the default (the newest first)."""
    if group.termination == ["newest"] and not group.protect_new:
        return []
    order = ", then ".join([*group.termination, *([] if group.termination[-1] == "newest" else ["newest"])])
    return [f"scale-in: {order} first" + ("; new nodes protected" if group.protect_new else "")]


def _key_body(public_key: str) -> str:
    """Algorithm and key data of an OpenSSH public-key line, without its comment."""
    return " ".join(public_key.split()[:2])


def _unmade(infra: Any, owner: str | None) -> bool:
    """A submission of the same owner that no pass has touched yet: sending it again (a retry after a lost
    answer, or after the server died mid-request) takes it over rather than answering "name taken"."""
    return (infra.state == InfraState.CREATING and infra.last_pass_at is None
            and (owner is None or infra.owner_id == owner))


def _check_limits(*, concurrency: int | None = None, wait: float | None = None,
                  **durations: float | None) -> None:
    """Durations are more than 0 seconds, ``wait`` at least 0, ``concurrency`` at least 1: checked before any
    work, so that a ``timeout=0`` is a usage error and not a node made and then failed."""
    from cloudherd.spec.durations import DurationError, positive_seconds

    for name, value in durations.items():
        try:
            if value is not None:
                positive_seconds(value, name)
        except DurationError as exc:
            raise UsageError(str(exc)) from None
    if wait is not None and not wait >= 0:
        raise UsageError(f"wait must be 0 seconds or more (got {wait:g})")
    if concurrency is not None and (isinstance(concurrency, bool) or concurrency < 1):
        raise UsageError(f"concurrency must be at least 1 (got {concurrency})")


def _open(url: str | None) -> Engine:
    from cloudherd.state.db import open_engine

    return open_engine(url)


def _safe_url(url: str | None) -> str:
    from sqlalchemy.engine import make_url

    from cloudherd.state.db import database_url

    return make_url(url or database_url()).render_as_string(hide_password=True)
