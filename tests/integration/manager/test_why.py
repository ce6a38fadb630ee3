"""Why does this node exist? On real local nodes: a node the manager made to replace a crashed one follows from the
retirement, which follows from what found it gone, all in the manager's pass; a node a `cloudherd scale` added
follows from the scale, which follows from the request the command wrote; a node of the first `up` follows from
that up.  `cloudherd why NODE` prints the chain a user reads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from helpers import cli, write_spec

from cloudherd.api import SyncClient
from cloudherd.engine.manager import Manager
from cloudherd.state.repo import Store

SPEC = """name: causal
groups:
  web:
    count: 2
"""


def manager_pass(infra_id: str) -> None:
    store = Store()

    async def run() -> None:
        await Manager(store, ids=[infra_id]).pass_over(store.infrastructure(infra_id))

    asyncio.run(run())


def why(node: str) -> dict:
    done = cli("why", node, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_replacement_follows_from_the_crash_that_ended_the_node_it_replaces(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "p", SPEC))
    first = sorted(n.name for n in herd.status(infra_id).live)
    answer = why(first[0])  # a node of the first up: made by that up
    assert [e["kind"] for e in answer["chain"]] == ["made", "up"]
    assert answer["chain"][1]["message"] == "up of causal started" and not answer["inferred"]

    assert cli("local", "fault", first[0], "crash").returncode == 0
    manager_pass(infra_id)
    [new] = sorted({n.name for n in herd.status(infra_id).live} - set(first))
    answer = why(new)
    kinds = [e["kind"] for e in answer["chain"]]
    assert kinds == ["made", "retired", "health"], answer
    assert answer["chain"][1]["message"].startswith(f"{first[0]} retired (dead")
    assert answer["chain"][2]["message"].startswith(f"{first[0]}: dead")
    assert all(e["origin"].startswith("manager pass (fence ") for e in answer["chain"])

    shown = cli("why", new)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{new} (ready, causal) exists because:"
    assert "made" in lines[1] and f"{new} made and deployed" in lines[1]
    assert "in manager pass (fence " in shown.stdout
    assert cli("down", "causal").returncode == 0


def test_a_node_a_scale_added_follows_from_the_request_of_the_command(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "p", SPEC))
    before = {n.name for n in herd.status(infra_id).live}
    scaled = cli("scale", "causal", "web", "+1")
    assert scaled.returncode == 0, scaled.stderr
    [new] = sorted({n.name for n in herd.status(infra_id).live} - before)
    answer = why(new)
    assert [e["kind"] for e in answer["chain"]] == ["made", "scale", "request"], answer
    assert answer["chain"][2]["message"] == "web: add 1 requested"
    assert answer["chain"][2]["origin"].startswith("cloudherd scale (by ")
    missing = cli("why", "no-such-node")
    assert missing.returncode != 0 and "no live node named 'no-such-node'" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert cli("down", "causal").returncode == 0
