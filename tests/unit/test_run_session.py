"""One run's set-up (:class:`RunSession`), without sshd: it settles what a killed command left and says whether
there was anything; it reads the pins when reach is first wanted and checks the nodes to re-pin there; a pool that
is the caller's stays open, one it made is closed; the providers are closed on the way out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import recorded_infrastructure, spec_of

from cloudherd.engine.session import RunSession
from cloudherd.errors import UsageError
from cloudherd.remote.pool import ConnectionPool
from cloudherd.state.repo import Store

SPEC = "name: rs\ngroups:\n  web:\n    count: 1\n"


def setup(tmp_path: Path, store: Store, state: str = "ready") -> str:
    loaded = spec_of(tmp_path, SPEC)
    infra = recorded_infrastructure(store, loaded)
    store.add_group(infra.id, name="web", position=0, provider="local", provider_type="local", image=None,
                    size=None, count=1)
    store.add_nodes(infra.id, [{"group_name": "web", "name": "rs-web-1", "index": 1, "provider": "local",
                                "state": state, "address": "127.0.0.1"}])
    return infra.id


def test_settle_says_whether_a_killed_command_left_something(tmp_path: Path, memory_store: Store,
                                                             home: Path) -> None:
    infra_id = setup(tmp_path, memory_store, state="deploying")
    loaded = spec_of(tmp_path, SPEC)

    async def run() -> tuple[bool, bool]:
        infra = memory_store.infrastructure(infra_id)
        async with RunSession(memory_store, infra, loaded) as session:
            first = await session.settle()
            second = await session.settle()
        return first, second

    assert asyncio.run(run()) == (True, False)
    node = memory_store.nodes(infra_id)[0]
    assert node.state == "failed" and "deploy was interrupted" in (node.reason or "")


def test_reach_is_made_on_demand_and_checks_the_nodes_to_re_pin(tmp_path: Path, memory_store: Store,
                                                                home: Path) -> None:
    infra_id = setup(tmp_path, memory_store)

    async def run(accept: tuple[str, ...]) -> None:
        async with RunSession(memory_store, memory_store.infrastructure(infra_id),
                              accept_new_host_key=accept) as session:
            assert session.check_reach().target(memory_store.nodes(infra_id)[0]).accept_new_host_key == bool(accept)

    asyncio.run(run(("rs-web-1",)))
    asyncio.run(run(()))
    with pytest.raises(UsageError, match="no such node in rs"):
        asyncio.run(run(("rs-web-9",)))


def test_a_callers_pool_stays_open_one_it_made_is_closed(tmp_path: Path, memory_store: Store, home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    infra_id = setup(tmp_path, memory_store)
    closed: list[ConnectionPool] = []
    close = ConnectionPool.close

    async def counted(self: ConnectionPool) -> None:
        closed.append(self)
        await close(self)

    monkeypatch.setattr(ConnectionPool, "close", counted)

    async def run() -> tuple[ConnectionPool, ConnectionPool]:
        infra = memory_store.infrastructure(infra_id)
        async with RunSession(memory_store, infra) as session:
            made = session.pool
            given = ConnectionPool(session.identity.key)
        async with RunSession(memory_store, infra, pool=given) as session:
            assert session.pool is given
        return made, given

    made, given = asyncio.run(run())
    assert closed == [made] and given not in closed  # the caller's pool outlives the run (warm connections)
