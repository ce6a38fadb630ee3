"""Fencing: work that holds an infrastructure's lease checks it before every cloud call that changes
something; a holder that lost it meanwhile (paused past its TTL, then taken over) stops before acting."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import recorded_infrastructure, spec_of

from cloudherd.engine import journal
from cloudherd.engine.locks import FencedOut, exclusive, infra_scope
from cloudherd.providers.base import CreateRequest
from cloudherd.providers.local import LocalProvider
from cloudherd.state.repo import Store


def test_a_holder_that_lost_its_lease_makes_nothing(memory_store: Store, tmp_path: Path) -> None:
    loaded = spec_of(tmp_path / "spec", "name: fenced\ngroups:\n  web: {count: 1}\n")
    infra = recorded_infrastructure(memory_store, loaded)
    rows = memory_store.add_nodes(infra.id, [{"group_name": "web", "name": "fenced-web-1", "index": 1,
                                              "provider": "local"}])
    provider = LocalProvider("local", {"root": str(tmp_path / "nodes")})
    request = CreateRequest(count=1, image=None, size=None, tags={}, ssh_user="me", ssh_public_key="ssh-ed25519 AAAA x",
                            names=["fenced-web-1"], token="t1")

    async def run() -> None:
        async with exclusive(memory_store, infra_scope("fenced"), "manage", wait=0) as held:
            # another manager takes the lease over, as if this one had been paused past its TTL
            lease = memory_store.lease(held.scope)
            assert lease is not None
            taken, _ = memory_store.take_lease(held.scope, "someone-else", "manage", {"pid": 1}, 30,
                                               steal_from=lease.owner)
            assert taken
            with pytest.raises(FencedOut, match="lost its lease"):
                await journal.create(memory_store, infra, provider, rows, request, "me")
            with pytest.raises(FencedOut):
                await journal.terminate(memory_store, infra, provider, ["x"], rows)

    asyncio.run(run())
    assert asyncio.run(provider.list({})) == []  # nothing was made
    assert memory_store.intents(infra.id) == []  # nor journaled


def test_every_write_of_a_holder_is_fenced_on_both_backends(db_url: str, tmp_path: Path) -> None:
    """Not only cloud calls: any write the holder makes to the state, once the lease moved on or lapsed, is
    refused inside its own transaction, and what it tried to write is not there."""
    from cloudherd.state.db import open_engine

    store = Store(open_engine(db_url))
    infra = recorded_infrastructure(store, spec_of(tmp_path / "spec", "name: fenced\ngroups:\n  web: {count: 1}\n"))

    async def run() -> None:
        async with exclusive(store, infra_scope("fenced"), "manage", wait=0, ttl=30) as held:
            store.add_event(infra.id, "note", "written while held")  # still ours: allowed
            lease = store.lease(held.scope)
            assert lease is not None
            assert store.take_lease(held.scope, "another", "manage", {"pid": 1}, 30, steal_from=lease.owner)[0]
            with pytest.raises(FencedOut, match="another holder took it"):
                store.add_event(infra.id, "note", "written after the takeover")
            with pytest.raises(FencedOut):
                store.update_infrastructure(infra.id, last_pass="stale")
            store.release_lease(held.scope, "another")
        async with exclusive(store, infra_scope("fenced"), "manage", wait=0, ttl=30) as held:
            held._beat.cancel()  # type: ignore[union-attr]  # as if paused: no renewal...
            assert store.renew_lease(held.scope, held.owner, -1)  # ...past its TTL: the lease has lapsed
            with pytest.raises(FencedOut, match="lapsed"):
                await asyncio.to_thread(store.add_event, infra.id, "note", "written after the lapse")

    asyncio.run(run())
    notes = [e.message for e in store.events(infra.id) if e.kind == "note"]
    assert notes == ["written while held"]
    assert store.infrastructure(infra.id).last_pass != "stale"
    store.engine.dispose()
