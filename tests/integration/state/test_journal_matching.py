"""The journal without sshd: matching what a create made to the node rows it was for (by name, then in order;
surplus and rows left over), and settling intents a crashed run left open — what carries a create intent's
tag is adopted into its pending rows, what is surplus or not running is terminated, a terminate is re-issued.

The cloud is libcloud's in-memory Dummy (through the ordinary provider factory), the state an in-memory Store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from helpers import recorded_infrastructure, spec_of

from cloudherd.engine.context import Providers
from cloudherd.engine.journal import _assign, resolve
from cloudherd.providers.base import TAG_INTENT, CreateRequest, Instance
from cloudherd.spec import LoadedSpec
from cloudherd.state.models import Infrastructure, Intent, Node
from cloudherd.state.repo import Store


@pytest.fixture
def memory_store(any_store: Store) -> Store:
    """The journal's tests run on SQLite and on PostgreSQL."""
    return any_store


# -- matching instances to rows -------------------------------------------------------------------------


def row(index: int) -> Node:
    return Node(id=f"row{index}", name=f"j-web-{index}", group_name="web", index=index, provider="cloud",
                state="pending")


def instance(id: str, name: str, state: str = "running", ssh_user: str | None = None) -> Instance:
    return Instance(id=id, name=name, state=state, address=f"127.0.1.{id[-1]}", private_address="10.0.0.1",
                    ssh_user=ssh_user, host_key=None, workdir="/w")


def matched(updates: Sequence[tuple[str, dict]]) -> dict[str, str]:
    return {node_id: fields["provider_id"] for node_id, fields in updates}


def test_instances_match_rows_by_name_whatever_their_order() -> None:
    rows = [row(1), row(2), row(3)]
    made = [instance("i3", "j-web-3"), instance("i1", "j-web-1", ssh_user="admin"), instance("i2", "j-web-2")]
    updates, surplus, left = _assign(rows, made, "deploy")
    assert matched(updates) == {"row1": "i1", "row2": "i2", "row3": "i3"}
    assert (surplus, left) == ([], [])
    fields = dict(updates)
    assert fields["row1"]["state"] == "booting" and fields["row1"]["address"] == "127.0.1.1"
    assert fields["row1"]["private_address"] == "10.0.0.1" and fields["row1"]["workdir"] == "/w"
    assert (fields["row1"]["ssh_user"], fields["row2"]["ssh_user"]) == ("admin", "deploy")  # the instance's first
    assert fields["row1"]["reason"] is None


def test_instances_a_provider_could_not_name_go_to_the_other_rows_in_order() -> None:
    rows = [row(1), row(2), row(3)]
    made = [instance("i7", "cloud-7"), instance("i2", "j-web-2"), instance("i8", "cloud-8")]
    updates, surplus, left = _assign(rows, made, None)
    assert matched(updates) == {"row1": "i7", "row2": "i2", "row3": "i8"}
    assert (surplus, left) == ([], [])


def test_more_instances_than_rows_leave_surplus_and_fewer_leave_rows() -> None:
    updates, surplus, left = _assign([row(1), row(2)], [instance("i1", "j-web-1"), instance("i9", "x"),
                                                        instance("i2", "j-web-2")], None)
    assert matched(updates) == {"row1": "i1", "row2": "i2"}
    assert [i.id for i in surplus] == ["i9"] and left == []
    updates, surplus, left = _assign([row(1), row(2), row(3)], [instance("i2", "j-web-2")], None)
    assert matched(updates) == {"row2": "i2"} and surplus == []
    assert [r.id for r in left] == ["row1", "row3"]
    updates, surplus, left = _assign([row(1)], [], None)
    assert (updates, surplus, [r.id for r in left]) == ([], [], ["row1"])


# -- settling open intents --------------------------------------------------------------------------------

SPEC = """name: j
providers:
  cloud: {type: libcloud, driver: "libcloud_wire:BulkDummyDriver", key: 0}
groups:
  web: {provider: cloud, image: Ubuntu 9.10, count: 3}
"""


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedSpec:
    return spec_of(tmp_path, SPEC)


def pending_rows(store: Store, infra: Infrastructure, count: int = 3) -> list[Node]:
    store.add_nodes(infra.id, [{"group_name": "web", "name": f"j-web-{i}", "index": i, "provider": "cloud"}
                               for i in range(1, count + 1)])
    return store.nodes(infra.id)


def crashed_create(store: Store, infra: Infrastructure, providers: Providers, rows: Sequence[Node],
                   names: Sequence[str]) -> tuple[str, list[Instance]]:
    """A run that committed its create intent, made instances named ``names`` with its tag, and died before
    writing down what it got."""
    intent = store.open_intent(infra.id, "cloud", "create", group_name="web", count=len(rows),
                               tags={TAG_INTENT: "pending"}, node_ids=[r.id for r in rows])
    request = CreateRequest(count=len(names), image="Ubuntu 9.10", size=None, tags={TAG_INTENT: intent.id},
                            ssh_user="deploy", ssh_public_key="ssh-ed25519 AAAA test", names=list(names))
    return intent.id, asyncio.run(providers.get("cloud").create(request))


def listed(providers: Providers, intent_id: str) -> list[str]:
    return sorted(i.name for i in asyncio.run(providers.get("cloud").list({TAG_INTENT: intent_id})))


def intent_of(store: Store, infra: Infrastructure, intent_id: str) -> Intent:
    return next(i for i in store.intents(infra.id) if i.id == intent_id)


def test_what_a_crashed_create_made_is_adopted_and_surplus_terminated(loaded: LoadedSpec,
                                                                       memory_store: Store) -> None:
    infra = recorded_infrastructure(memory_store, loaded, state="creating")
    rows = pending_rows(memory_store, infra)
    providers = Providers(loaded)
    intent_id, made = crashed_create(memory_store, infra, providers, rows,
                                     ["j-web-2", "j-web-1", "j-web-3", "j-web-4"])  # one more than asked
    assert asyncio.run(resolve(memory_store, infra, providers)) == 1
    ids = {i.name: i.id for i in made}
    nodes = {n.name: n for n in memory_store.nodes(infra.id)}
    assert {name: (n.state, n.provider_id) for name, n in nodes.items()} == {
        f"j-web-{i}": ("booting", ids[f"j-web-{i}"]) for i in (1, 2, 3)}
    assert nodes["j-web-1"].address == next(i.address for i in made if i.name == "j-web-1")
    assert listed(providers, intent_id) == ["j-web-1", "j-web-2", "j-web-3"]  # the surplus one is gone
    intent = intent_of(memory_store, infra, intent_id)
    assert intent.state == "resolved"
    assert intent.outcome == "adopted 3, terminated 1 surplus, 0 never made"
    assert sorted(intent.provider_ids["ids"]) == sorted(ids.values())
    assert [e.message for e in memory_store.events(infra.id) if e.kind == "journal"] == [
        f"intent {intent_id} (create): adopted 3, terminated 1 surplus, 0 never made"]
    assert memory_store.open_intents(infra.id) == []
    assert asyncio.run(resolve(memory_store, infra, providers)) == 0  # settled once
    asyncio.run(providers.close())


def test_not_running_instances_are_terminated_and_rows_never_made_stay_pending(loaded: LoadedSpec,
                                                                                memory_store: Store) -> None:
    infra = recorded_infrastructure(memory_store, loaded, state="creating")
    rows = pending_rows(memory_store, infra)
    providers = Providers(loaded)
    intent_id, made = crashed_create(memory_store, infra, providers, rows, ["j-web-1", "j-web-2"])
    asyncio.run(providers.get("cloud").stop([made[1].id]))  # j-web-2 is there but not running
    assert asyncio.run(resolve(memory_store, infra, providers)) == 1
    assert {n.name: n.state for n in memory_store.nodes(infra.id)} == {
        "j-web-1": "booting", "j-web-2": "pending", "j-web-3": "pending"}
    assert listed(providers, intent_id) == ["j-web-1"]
    assert intent_of(memory_store, infra, intent_id).outcome == "adopted 1, terminated 1 surplus, 2 never made"
    asyncio.run(providers.close())


def test_only_pending_rows_are_adopted(loaded: LoadedSpec, memory_store: Store) -> None:
    """A row settled since (here: rolled back) is not revived by a late-found instance: that one is surplus."""
    infra = recorded_infrastructure(memory_store, loaded, state="creating")
    rows = pending_rows(memory_store, infra, count=2)
    providers = Providers(loaded)
    intent_id, _ = crashed_create(memory_store, infra, providers, rows, ["j-web-1", "j-web-2"])
    memory_store.update_node(rows[0].id, state="terminated", reason="rolled back")
    asyncio.run(resolve(memory_store, infra, providers))
    assert {n.name: n.state for n in memory_store.nodes(infra.id)} == {"j-web-1": "terminated",
                                                                      "j-web-2": "booting"}
    assert listed(providers, intent_id) == ["j-web-2"]
    asyncio.run(providers.close())


def test_an_open_terminate_is_issued_again_and_its_nodes_marked(loaded: LoadedSpec, memory_store: Store) -> None:
    infra = recorded_infrastructure(memory_store, loaded)
    rows = pending_rows(memory_store, infra, count=2)
    providers = Providers(loaded)
    create_id, made = crashed_create(memory_store, infra, providers, rows, ["j-web-1", "j-web-2"])
    asyncio.run(resolve(memory_store, infra, providers))
    intent = memory_store.open_intent(infra.id, "cloud", "terminate", count=1, provider_ids=[made[0].id],
                                      node_ids=[rows[0].id])  # committed; the call never happened
    assert asyncio.run(resolve(memory_store, infra, providers)) == 1
    assert {n.name: n.state for n in memory_store.nodes(infra.id)} == {"j-web-1": "terminated",
                                                                      "j-web-2": "booting"}
    assert listed(providers, create_id) == ["j-web-2"]
    assert intent_of(memory_store, infra, intent.id).state == "resolved"
    asyncio.run(providers.close())


def test_an_intent_whose_cloud_cannot_answer_stays_open(loaded: LoadedSpec, memory_store: Store) -> None:
    infra = recorded_infrastructure(memory_store, loaded)
    intent = memory_store.open_intent(infra.id, "nowhere", "terminate", provider_ids=["x"])
    providers = Providers(loaded)
    assert asyncio.run(resolve(memory_store, infra, providers)) == 0
    assert [i.id for i in memory_store.open_intents(infra.id)] == [intent.id]
    asyncio.run(providers.close())


def test_a_node_being_terminated_keeps_why_it_was_retired(loaded: LoadedSpec, memory_store: Store) -> None:
    """Whoever lists the machines while a terminate call is in flight (a status, the dashboard, another
    pass) must not call the node dead 'the provider no longer lists it' over the reason it was retired for:
    CI's dashboard test saw exactly that with both cores busy."""
    from cloudherd.engine import journal
    from cloudherd.engine.liveness import observe, record

    infra = recorded_infrastructure(memory_store, loaded)
    rows = pending_rows(memory_store, infra, count=2)
    providers = Providers(loaded)
    crashed_create(memory_store, infra, providers, rows, ["j-web-1", "j-web-2"])
    asyncio.run(resolve(memory_store, infra, providers))
    retired = "health check failed 3 time(s): ssh: timed out"
    memory_store.update_node(rows[0].id, state="failed", reason=retired)
    victim = next(n for n in memory_store.nodes(infra.id) if n.id == rows[0].id)
    cloud = providers.get("cloud")
    real_terminate = cloud.terminate
    seen: list[str] = []

    async def terminate_then_someone_looks(ids: Sequence[str]) -> None:
        await real_terminate(ids)  # the machine is gone; the intent is not closed yet
        nodes = memory_store.nodes(infra.id)
        record(memory_store, infra.id, nodes, await observe(providers, infra.id, nodes))
        seen.extend(n.state for n in memory_store.nodes(infra.id) if n.id == victim.id)

    cloud.terminate = terminate_then_someone_looks  # type: ignore[method-assign]
    asyncio.run(journal.terminate(memory_store, infra, cloud, [victim.provider_id or ""], [victim]))
    after = next(n for n in memory_store.nodes(infra.id) if n.id == victim.id)
    assert seen == ["terminating"]
    assert (after.state, after.reason) == ("terminated", retired)
    assert not [e.message for e in memory_store.events(infra.id) if e.message.startswith(f"{victim.name}: dead")]
    asyncio.run(providers.close())
