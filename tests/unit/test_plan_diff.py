"""The plan's diff without sshd: what to create, destroy or replace per group (``diff_groups`` on plain rows),
and which scripts re-run where (``make_plan`` on an in-memory Store: a script re-runs on a node unless its
last successful run there had the digest of what would run now)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from helpers import recorded_infrastructure, spec_of

from cloudherd.engine.deploy import script_digest
from cloudherd.engine.diff import diff_groups
from cloudherd.engine.plan import make_plan
from cloudherd.remote.scripts import render
from cloudherd.spec import LoadedSpec
from cloudherd.state.models import Group, Node
from cloudherd.state.repo import Store

SPEC = "name: pl\ngroups:\n  web:\n    count: {web}\n{web_extra}    scripts: [a.sh, b.sh]\n  db:\n    count: 1\n"
SCRIPTS = {"a.sh": "echo a\n", "b.sh": "echo b\n"}


def spec(tmp_path: Path, web: int = 2, web_extra: str = "", scripts: dict[str, str] | None = None) -> LoadedSpec:
    return spec_of(tmp_path, SPEC.format(web=web, web_extra=web_extra), scripts or SCRIPTS)


def row(name: str, image: str | None = None, size: str | None = None, provider: str = "local") -> Group:
    return Group(name=name, provider=provider, provider_type="local", image=image, size=size, count=0)


def node(group: str, index: int, state: str = "ready") -> Node:
    return Node(id=f"{group}{index}", name=f"pl-{group}-{index}", group_name=group, index=index, provider="local",
                state=state, address="127.0.0.9", port=22)


def by_name(diffs: list) -> dict:
    return {d.name: d for d in diffs}


def ids(nodes: list[Node]) -> list[str]:
    return [n.id for n in nodes]


# -- the diff -----------------------------------------------------------------------------------------


def test_a_new_group_is_created_whole(tmp_path: Path) -> None:
    diffs = by_name(diff_groups(spec(tmp_path, web=3), [row("db")], [node("db", 1)]))
    assert (diffs["web"].new, diffs["web"].create, diffs["web"].current, diffs["web"].destroy) == (True, 3, 0, [])
    assert (diffs["db"].new, diffs["db"].create, diffs["db"].changes) == (False, 0, False)


def test_missing_nodes_are_created_and_surplus_ones_destroyed_from_the_top(tmp_path: Path) -> None:
    loaded = spec(tmp_path, web=2)
    nodes = [node("web", 3), node("web", 1), node("web", 4), node("web", 2), node("db", 1)]
    web = by_name(diff_groups(loaded, [row("web"), row("db")], nodes))["web"]
    assert (web.current, web.create, ids(web.destroy), web.replace) == (4, 0, ["web3", "web4"], [])
    grow = by_name(diff_groups(spec(tmp_path, web=5), [row("web"), row("db")], nodes))["web"]
    assert (grow.create, grow.destroy, grow.changes) == (1, [], True)


def test_every_state_but_dead_and_terminated_counts_towards_the_size(tmp_path: Path) -> None:
    loaded = spec(tmp_path, web=6)
    counted = [node("web", i, state) for i, state in
               enumerate(("booting", "deploying", "ready", "failed", "pending", "stopped"), 1)]
    web = by_name(diff_groups(loaded, [row("web"), row("db")], [*counted, node("db", 1)]))["web"]
    assert (web.current, web.create, web.destroy, web.changes) == (6, 0, [], False)


def test_dead_nodes_are_destroyed_and_made_anew_terminated_ones_are_history(tmp_path: Path) -> None:
    nodes = [node("web", 1), node("web", 2, "dead"), node("web", 3, "terminated"), node("db", 1)]
    web = by_name(diff_groups(spec(tmp_path, web=2), [row("web"), row("db")], nodes))["web"]
    assert (web.current, web.create, ids(web.destroy)) == (1, 1, ["web2"])
    assert web.reasons == ["1 dead node(s) replaced"]


def test_a_changed_image_size_or_provider_replaces_the_group(tmp_path: Path) -> None:
    nodes = [node("web", 1), node("web", 2), node("web", 3), node("db", 1)]
    loaded = spec(tmp_path, web=2, web_extra="    image: debian-13\n    size: big\n    update: {strategy: recreate}\n")
    web = by_name(diff_groups(loaded, [row("web", image="debian-12", size="big"), row("db")], nodes))["web"]
    assert web.reasons == ["image debian-12 → debian-13"]
    assert (ids(web.replace), ids(web.destroy), web.create) == (["web1", "web2"], ["web3"], 2)
    moved = by_name(diff_groups(loaded, [row("web", image="debian-13", provider="elsewhere"), row("db")], nodes))
    assert moved["web"].reasons == ["provider elsewhere → local", "size - → big"]
    same = by_name(diff_groups(loaded, [row("web", image="debian-13", size="big"), row("db")], nodes[:2]))["web"]
    assert (same.replace, same.create, same.reasons) == ([], 0, [])


def test_by_default_a_changed_image_replaces_nothing_at_once(tmp_path: Path) -> None:
    """The default strategy is rolling: the rollout replaces the nodes batch by batch, so the diff keeps them
    (a changed image is no reason to drop below the group's size)."""
    nodes = [node("web", 1), node("web", 2), node("db", 1)]
    loaded = spec(tmp_path, web=2, web_extra="    image: debian-13\n")
    assert loaded.group("web").update.strategy == "rolling"
    web = by_name(diff_groups(loaded, [row("web", image="debian-12"), row("db")], nodes))["web"]
    assert (web.replace, web.destroy, web.create) == ([], [], 0)


def test_a_shape_change_of_an_empty_group_is_a_plain_create(tmp_path: Path) -> None:
    loaded = spec(tmp_path, web=2, web_extra="    image: debian-13\n")
    web = by_name(diff_groups(loaded, [row("web", image="debian-12"), row("db")], [node("db", 1)]))["web"]
    assert (web.replace, web.create, web.reasons) == ([], 2, [])


def test_a_group_gone_from_the_spec_is_destroyed_whole(tmp_path: Path) -> None:
    nodes = [node("web", 1), node("web", 2), node("db", 1), node("old", 1), node("old", 2, "dead"),
             node("old", 3, "terminated")]
    diffs = by_name(diff_groups(spec(tmp_path), [row("web"), row("db"), row("old"), row("empty")], nodes))
    assert (diffs["old"].removed, diffs["old"].count, ids(diffs["old"].destroy)) == (True, 0, ["old1", "old2"])
    assert "empty" not in diffs  # nothing left to destroy: not in the plan


# -- script re-runs -----------------------------------------------------------------------------------


def record(store: Store, loaded: LoadedSpec, tmp_path: Path, web: int = 2) -> tuple[str, list[Node]]:
    """An infrastructure of ``loaded`` as ``up`` left it: groups and ready nodes (no provider ids, so the plan
    asks no provider)."""
    infra = recorded_infrastructure(store, loaded)
    for position, (name, group) in enumerate(loaded.spec.groups.items()):
        store.add_group(infra.id, name=name, position=position, provider="local", provider_type="local",
                        image=group.image, size=group.size_name, count=group.count)
    store.add_nodes(infra.id, [
        {"group_name": g, "name": f"pl-{g}-{i}", "index": i, "provider": "local", "state": "ready",
         "address": f"127.0.0.{i}"}
        for g, count in (("web", web), ("db", 1)) for i in range(1, count + 1)
    ])
    return infra.id, store.nodes(infra.id)


def ran(store: Store, infra_id: str, node: Node, source: str, content: str, env: dict[str, str] | None = None,
        exit_code: int = 0) -> None:
    """Record a run of ``source`` on ``node`` with the digest of the untemplated ``content`` in its environment."""
    full_env = {**(env or {}), "CLOUDHERD_NODE": node.name, "CLOUDHERD_GROUP": node.group_name,
                "CLOUDHERD_INFRA": infra_id}
    digest = script_digest(source, render(source, content, {}), full_env)
    action = store.start_action(infra_id, node.id, "script", source, digest)
    store.finish_action(action, exit_code, "", "")


def test_a_new_spec_runs_every_script_on_every_node(tmp_path: Path, memory_store: Store) -> None:
    plan = asyncio.run(make_plan(spec(tmp_path, web=2), memory_store))
    assert plan.infrastructure_id is None and plan.changes
    assert plan.totals() == {"create": 3, "destroy": 0, "replace": 0, "script_runs": 4}
    assert by_name(plan.groups)["web"].reruns == {"a.sh": ["pl-web-1", "pl-web-2"], "b.sh": ["pl-web-1", "pl-web-2"]}
    assert by_name(plan.groups)["db"].reruns == {}


def test_unchanged_scripts_are_skipped_changed_or_unrun_ones_rerun(tmp_path: Path, memory_store: Store) -> None:
    loaded = spec(tmp_path, web=3)
    infra_id, nodes = record(memory_store, loaded, tmp_path, web=2)
    web1, web2 = (n for n in nodes if n.group_name == "web")
    ran(memory_store, infra_id, web1, "a.sh", "echo a\n")  # as now
    ran(memory_store, infra_id, web2, "a.sh", "echo old a\n")  # the script changed since
    ran(memory_store, infra_id, web1, "b.sh", "echo b\n", exit_code=1)  # failed: runs again
    ran(memory_store, infra_id, web2, "b.sh", "echo b\n")
    plan = asyncio.run(make_plan(loaded, memory_store))
    web = by_name(plan.groups)["web"]
    assert plan.infrastructure_id == infra_id
    assert web.create == 1
    assert web.reruns == {"a.sh": ["pl-web-2", "pl-web-3"], "b.sh": ["pl-web-1", "pl-web-3"]}
    assert plan.totals() == {"create": 1, "destroy": 0, "replace": 0, "script_runs": 4}


def test_a_later_success_with_the_current_digest_counts(tmp_path: Path, memory_store: Store) -> None:
    loaded = spec(tmp_path, web=1)
    infra_id, nodes = record(memory_store, loaded, tmp_path, web=1)
    web1 = next(n for n in nodes if n.group_name == "web")
    for content in ("echo old a\n", "echo a\n"):
        ran(memory_store, infra_id, web1, "a.sh", content)
    ran(memory_store, infra_id, web1, "b.sh", "echo b\n")
    ran(memory_store, infra_id, web1, "b.sh", "echo newer b\n")  # the last success is what counts
    plan = asyncio.run(make_plan(loaded, memory_store))
    assert by_name(plan.groups)["web"].reruns == {"b.sh": ["pl-web-1"]}
    assert plan.totals()["script_runs"] == 1


def test_a_changed_environment_reruns_the_scripts(tmp_path: Path, memory_store: Store) -> None:
    loaded = spec(tmp_path, web=1, web_extra="    env: {PORT: '8080'}\n")
    infra_id, nodes = record(memory_store, loaded, tmp_path, web=1)
    web1 = next(n for n in nodes if n.group_name == "web")
    ran(memory_store, infra_id, web1, "a.sh", "echo a\n", env={"PORT": "8080"})
    ran(memory_store, infra_id, web1, "b.sh", "echo b\n", env={"PORT": "80"})
    plan = asyncio.run(make_plan(loaded, memory_store))
    assert by_name(plan.groups)["web"].reruns == {"b.sh": ["pl-web-1"]}


def test_nodes_leaving_run_nothing_and_replacements_run_everything(tmp_path: Path, memory_store: Store) -> None:
    loaded = spec(tmp_path, web=1)
    infra_id, nodes = record(memory_store, loaded, tmp_path, web=3)
    for n in nodes:
        if n.group_name == "web":
            for source, content in SCRIPTS.items():
                ran(memory_store, infra_id, n, source, content)
    plan = asyncio.run(make_plan(loaded, memory_store))
    web = by_name(plan.groups)["web"]
    assert [n.name for n in web.destroy] == ["pl-web-2", "pl-web-3"] and web.reruns == {}
    assert not by_name(plan.groups)["db"].changes

    replaced = spec(tmp_path / "v2", web=2, web_extra="    image: debian-13\n    update: {strategy: recreate}\n")
    plan = asyncio.run(make_plan(replaced, memory_store))
    web = by_name(plan.groups)["web"]
    assert [n.name for n in web.replace] == ["pl-web-1", "pl-web-2"] and web.create == 2
    assert web.reruns == {"a.sh": ["pl-web-4", "pl-web-5"], "b.sh": ["pl-web-4", "pl-web-5"]}  # the new ones, new names
    assert plan.totals() == {"create": 2, "destroy": 1, "replace": 2, "script_runs": 4}


def test_a_recorded_node_its_provider_no_longer_has_is_dead_and_replaced(
    tmp_path: Path, memory_store: Store, home: Path
) -> None:
    """Liveness comes from one list call per provider: here the local provider's (empty) folder of nodes."""
    loaded = spec(tmp_path, web=2)
    infra_id, nodes = record(memory_store, loaded, tmp_path, web=2)
    web2 = next(n for n in nodes if n.name == "pl-web-2")
    memory_store.update_node(web2.id, provider_id="vanished")
    plan = asyncio.run(make_plan(loaded, memory_store))
    web = by_name(plan.groups)["web"]
    assert ([n.name for n in web.destroy], web.create, web.reasons) == (["pl-web-2"], 1, ["1 dead node(s) replaced"])
    assert memory_store.nodes(infra_id)[-1].state == "ready"  # a plan writes nothing
