"""One run's set-up, written once: who we are, the providers, the leftovers settled, the connections, the pins.

Every command that works on an infrastructure's machines (``up``, a manager's pass, ``down``, ``deploy``,
``exec`` / ``push`` / ``pull``) runs inside one::

    async with RunSession(store, infra, loaded, sink=on_event, connect_timeout=60.0) as run:
        seen = await run.observe()           # one read of the infrastructure; what a killed command left settled
        ...run.providers, run.pool, run.reach...

(``await run.settle()`` settles without the snapshot, for a run that reads what it needs itself.)

On the way out the host keys nodes presented are pinned (one transaction), the connections closed (unless the
pool is the caller's), then the providers.  The pins are read when ``reach`` is first used, so after ``settle``
(whose adoptions pin the keys the providers reported), or taken from the snapshot :meth:`RunSession.observe` read
after it.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from types import TracebackType

from cloudherd.engine import journal
from cloudherd.engine.context import Identity, Providers, ensure_identity
from cloudherd.engine.events import EventSink
from cloudherd.engine.reach import Reach
from cloudherd.engine.recover import recover
from cloudherd.remote.pool import ConnectionPool
from cloudherd.spec import LoadedSpec
from cloudherd.state.models import Group, Infrastructure
from cloudherd.state.repo import Store
from cloudherd.state.snapshot import Snapshot


class RunSession:
    """The identity, providers, connection pool and host-key pins of one run over ``infra``.

    ``loaded``: the spec whose providers the run uses (None: a run that asks no provider); ``identity``: when the
    caller has it already (else the infrastructure's key's); ``pool``: a pool that outlives the run (the server's
    warm connections), else one is made with ``handshakes`` and ``connect_timeout`` and closed at the end;
    ``groups``: the group rows as just read, when the caller has them (the nodes' logins are read from them)."""

    def __init__(self, store: Store, infra: Infrastructure, loaded: LoadedSpec | None = None, *,
                 identity: Identity | None = None, key_path: str | os.PathLike[str] | None = None,
                 sink: EventSink | None = None, connect_timeout: float = 120.0, handshakes: int | None = None,
                 accept_new_host_key: Collection[str] = (), pool: ConnectionPool | None = None,
                 groups: Sequence[Group] | None = None) -> None:
        self.store = store
        self.infra = infra
        self.sink = sink
        self._loaded = loaded
        self._identity = identity
        self._key_path = key_path
        self._connect = (handshakes, connect_timeout)
        self._accept_new = accept_new_host_key
        self._groups = groups
        self._given_pool = pool
        self._pool: ConnectionPool | None = None
        self._reach: Reach | None = None
        self._pins: dict[str, str] | None = None  # as a snapshot read them, for the reach
        self._providers: Providers | None = None
        self._hung_up = False

    async def __aenter__(self) -> RunSession:
        if self._identity is None:
            self._identity = ensure_identity(self.store, self._key_path or self.infra.ssh_key_path)
        if self._loaded is not None:
            self._providers = Providers(self._loaded)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self.hang_up()
        finally:
            if self._providers is not None:
                await self._providers.close()

    @property
    def identity(self) -> Identity:
        assert self._identity is not None, "a RunSession is used inside its `async with`"
        return self._identity

    @property
    def providers(self) -> Providers:
        assert self._providers is not None, "a RunSession without a spec has no providers"
        return self._providers

    @property
    def pool(self) -> ConnectionPool:
        if self._pool is None:
            handshakes, timeout = self._connect
            self._pool = self._given_pool or ConnectionPool(self.identity.key, handshakes=handshakes,
                                                            connect_timeout=timeout)
        return self._pool

    @property
    def reach(self) -> Reach:
        if self._reach is None:
            self._reach = Reach(self.store, self.infra, self.identity, self._accept_new, self._groups, self._pins)
        return self._reach

    def check_reach(self) -> Reach:
        """Make ``reach`` now: the pins read, the nodes to re-pin checked (an unknown one is a usage error before
        any work is done)."""
        return self.reach

    async def observe(self) -> Snapshot:
        """The infrastructure as this run starts from it, read once (:class:`~cloudherd.state.snapshot.Snapshot`),
        with what a killed command left settled first (read again only when there was something); its pins are
        the reach's."""
        seen = self.store.snapshot(self.infra.id)
        if seen.leftovers and await self.settle(seen):
            seen = self.store.snapshot(self.infra.id)
        self.use_pins(seen.pins)
        return seen

    def use_pins(self, pins: dict[str, str]) -> None:
        """The pins as the caller has just read them (a snapshot's, after any settling), for the reach."""
        if self._reach is None:
            self._pins = pins

    async def settle(self, seen: Snapshot | None = None) -> bool:
        """Settle what a killed command left: unfinished actions and nodes stuck mid-deploy, then its open cloud
        calls (the journal).  ``seen``: the infrastructure as just read, when the caller has it (else what is
        needed is read).  Returns whether anything was there to settle (then what was read before is stale)."""
        if seen is None:
            stale = recover(self.store, self.infra, self.sink) > 0
            intents = bool(self.store.open_intents(self.infra.id))
        else:
            stale = recover(self.store, self.infra, self.sink, seen.nodes, unfinished=seen.unfinished_actions) > 0
            intents = bool(seen.open_intents)
        if intents:
            await journal.resolve(self.store, self.infra, self.providers, self.sink)
            stale = True
        return stale

    async def hang_up(self, forget: Collection[str] = ()) -> None:
        """Pin the host keys the nodes presented, then close the connections (a caller's pool stays open: the
        ``forget`` nodes' sightings are dropped from it).  Done once; the session's exit does it otherwise."""
        if self._hung_up:
            return
        self._hung_up = True
        if self._pool is None:
            return
        try:
            if self._reach is not None:
                self._reach.record(self._pool)
        finally:
            if self._given_pool is None:
                await self._pool.close()
            elif forget:
                self._pool.forget_seen(list(forget))
