"""The engine reads what an operation needs once and hands it down: an ``up`` that changes nothing reads one snapshot
of the infrastructure (groups, nodes, open intents, unfinished actions, pins), then again only what its own writes
changed (the infrastructure after the group rows, the nodes after the deploy), not once per helper; ``plan`` reads
four things and writes nothing; a manager's pass reads one snapshot and writes the checks' outcomes together."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import spec_of

from cloudherd.engine.apply import up
from cloudherd.engine.destroy import down
from cloudherd.engine.plan import make_plan
from cloudherd.engine.reconcile import reconcile
from cloudherd.engine.session import RunSession
from cloudherd.lifecycle import NodeState
from cloudherd.state.db import open_engine
from cloudherd.state.repo import Store
from cloudherd.state.snapshot import Snapshot

SPEC = "name: rd\ngroups:\n  web:\n    count: 3\n    scripts: [a.sh]\n  db:\n    count: 1\n    scripts: [a.sh]\n"


def counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the Store's methods as the engine calls them, in order."""
    calls: list[str] = []
    for name in dir(Store):
        method = getattr(Store, name)
        if name.startswith("_") or name in ("reading", "session") or not callable(method):
            continue

        def wrapped(self: Store, *args: Any, _method: Callable[..., Any] = method, _name: str = name,
                    **kwargs: Any) -> Any:
            calls.append(_name)
            return _method(self, *args, **kwargs)

        monkeypatch.setattr(Store, name, wrapped)
    return calls


@pytest.mark.scenario
def test_an_up_that_changes_nothing_reads_each_thing_once_or_twice(home: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = spec_of(tmp_path / "spec", SPEC, {"a.sh": "echo {{ node.name }} > me.txt\n"})
    store = Store(open_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    infra_id = asyncio.run(up(loaded, store))
    calls = counting(monkeypatch)
    assert asyncio.run(up(spec_of(tmp_path / "spec", SPEC, {"a.sh": "echo {{ node.name }} > me.txt\n"}),
                          store)) == infra_id
    seen = Counter(calls)
    # one snapshot (the infrastructure, its groups and nodes, open intents, unfinished actions, pins) settles,
    # reaches and plans; the infrastructure is read again after the group rows are written, the nodes after the deploy
    assert (seen["snapshot"], seen["infrastructure"], seen["nodes"], seen["script_digests"]) == (1, 1, 1, 1), calls
    assert not {"host_keys", "pins", "open_intents", "close_unfinished_actions"} & set(seen), calls
    assert seen["update_groups"] == 1 and "update_group" not in seen, calls  # the groups written together
    assert "add_nodes" not in seen  # nothing to make: no write for it

    calls.clear()
    plan = asyncio.run(make_plan(loaded, store))
    assert not plan.changes
    assert sorted(calls) == ["active_named", "infrastructure", "revisions", "script_digests"]

    calls.clear()
    report = asyncio.run(reconcile(store, infra_id))
    assert report.checked == 4 and report.error is None, report
    seen = Counter(calls)
    assert seen["snapshot"] == 1 and "infrastructure" not in seen, calls  # read once, its groups and nodes with it
    assert not {"host_keys", "pins", "open_intents", "close_unfinished_actions"} & set(seen), calls
    assert "update_node" not in seen  # the first checks' outcomes: one statement for all, not one each
    monkeypatch.undo()
    asyncio.run(down(store, store.infrastructure(infra_id)))
    store.engine.dispose()


def test_a_run_observes_once_and_settles_what_a_killed_command_left(home: Path, tmp_path: Path) -> None:
    """A killed command left a script run unfinished and a node mid-deploy: the run's one snapshot shows it, the
    run settles it and reads the snapshot again (only then), and its reach holds the pins that snapshot read."""
    loaded = spec_of(tmp_path / "spec", "name: obs\ngroups:\n  web:\n    count: 2\n", {})
    store = Store(open_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    infra_id = asyncio.run(up(loaded, store))
    infra = store.infrastructure(infra_id)
    stuck = store.nodes(infra_id)[0]
    store.start_action(infra_id, stuck.id, "script", "a.sh")
    store.update_node(stuck.id, state=NodeState.DEPLOYING)

    seen = store.snapshot(infra_id)
    assert seen.leftovers and seen.unfinished_actions and not seen.open_intents
    assert [n.id for n in seen.nodes] == [n.id for n in store.nodes(infra_id)]
    assert seen.pins == store.pins(infra_id) != {}

    async def observe() -> tuple[Snapshot, dict[str, str]]:
        async with RunSession(store, infra) as run:
            return await run.observe(), dict(run.reach.pins)

    after, pins = asyncio.run(observe())
    assert not after.leftovers and not store.has_leftovers(infra_id)
    assert {n.id: n.state for n in after.nodes}[stuck.id] == NodeState.FAILED
    assert pins == store.pins(infra_id)
    assert "recovered" in [event.kind for event in store.events(infra_id)]
    asyncio.run(down(store, store.infrastructure(infra_id)))
    store.engine.dispose()
