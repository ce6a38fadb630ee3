"""`plan` and `up --dry-run` show the diff between the spec and reality and change nothing; `up` then
does what the plan said (create, destroy, replace, re-run changed scripts, replace dead nodes)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from helpers import cli

from cloudherd.api import SyncClient

SPEC = ("name: pl\ngroups:\n  web:\n    count: {web}\n    scripts: [s.sh]\n    update: {{strategy: recreate}}\n"
        "  db:\n    count: 1\n    update: {{strategy: recreate}}\n{db_extra}")


def write(folder: Path, web: int = 2, db_extra: str = "", script: str = "echo {{ node.name }} > me.txt\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "s.sh").write_text(script)
    spec = folder / "cloudherd.yml"
    spec.write_text(SPEC.format(web=web, db_extra=db_extra))
    return spec


def plan(spec: Path) -> dict:
    run = cli("plan", str(spec), "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def groups(data: dict) -> dict[str, dict]:
    return {g["name"]: g for g in data["groups"]}


def test_plan_of_a_new_spec_makes_nothing(home: Path, tmp_path: Path) -> None:
    spec = write(tmp_path / "pl")
    data = plan(spec)
    assert data["infrastructure"] is None
    assert data["totals"] == {"create": 3, "destroy": 0, "replace": 0, "script_runs": 2}
    dry = cli("up", str(spec), "--dry-run")
    assert dry.returncode == 0 and "plan: 3 to create" in dry.stdout
    assert not (home / "local").exists() or not list((home / "local").glob("*/node.json"))
    assert json.loads(cli("ls", "--json").stdout) == []


@pytest.mark.scenario
def test_plan_then_up_converges_as_shown(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    folder = tmp_path / "pl"
    spec = write(folder)
    infra_id = herd.up(spec)
    assert plan(spec)["changes"] is False
    assert "no changes" in cli("plan", str(spec)).stdout

    write(folder, web=3, script="echo v2 {{ node.name }} > me.txt\n")  # grow, and change the script
    shown = groups(plan(spec))
    assert shown["web"]["create"] == 1
    assert shown["web"]["scripts"] == {"s.sh": ["pl-web-1", "pl-web-2", "pl-web-3"]}
    before = {n.id: n.state for n in herd.infrastructure(infra_id).nodes}
    assert {n.id: n.state for n in herd.infrastructure(infra_id).nodes} == before  # plan changed nothing
    herd.up(spec)
    outputs = {r.node: r.stdout for r in herd.exec(infra_id, "cat me.txt", group="web")}
    assert outputs == {f"pl-web-{i}": f"v2 pl-web-{i}\n" for i in (1, 2, 3)}
    assert plan(spec)["changes"] is False

    write(folder, web=1, db_extra="    image: debian-13\n")  # shrink web, replace db (its image changed)
    shown = groups(plan(spec))
    assert shown["web"]["destroy"] == ["pl-web-2", "pl-web-3"]
    assert shown["db"]["replace"] == ["pl-db-1"] and "image - → debian-13" in shown["db"]["reasons"][0]
    old_db = next(n.provider_id for n in herd.infrastructure(infra_id).nodes if n.name == "pl-db-1"
                  and n.state == "ready")
    herd.up(spec)
    live = {n.name: n.provider_id for n in herd.infrastructure(infra_id).nodes if n.state == "ready"}
    assert sorted(live) == ["pl-db-2", "pl-web-1"] and live["pl-db-2"] != old_db  # a replacement's name is new
    assert len(list((home / "local").glob("*/node.json"))) == 2
    herd.down(infra_id)


def test_dead_node_is_planned_and_replaced(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    spec = write(tmp_path / "pl")
    infra_id = herd.up(spec)
    victim = next(n for n in herd.infrastructure(infra_id).nodes if n.name == "pl-web-2")
    folder = home / "local" / (victim.provider_id or "")
    # the machine crashes: its SSH server dies (the node's supervisor then ends too)
    os.kill(int((folder / "sshd.pid").read_text().split()[0]), signal.SIGKILL)
    shown = groups(plan(spec))
    assert shown["web"]["destroy"] == ["pl-web-2"] and shown["web"]["create"] == 1
    assert "1 dead node(s) replaced" in shown["web"]["reasons"]
    herd.up(spec)
    ready = {n.name for n in herd.infrastructure(infra_id).nodes if n.state == "ready"}
    assert ready == {"pl-web-1", "pl-web-3", "pl-db-1"}  # the dead pl-web-2's name is never reused
    assert all(r.ok for r in herd.exec(infra_id, "cat me.txt", group="web"))
    herd.down(infra_id)
