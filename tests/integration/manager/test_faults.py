"""Faults on demand (``cloudherd local fault NODE crash|hang|partition|heal``) and what the manager does
about each: a crash is replaced; a hang or a partition turns the node unhealthy and, past the bound,
replaced — unless it heals first; when most of a group is cut off the circuit breaker replaces none."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import cli, node_folders, node_processes, write_spec
from manager_helpers import passes_until, ready_names

from cloudherd.api import SyncClient
from cloudherd.providers.local import sandbox as local_sandbox

FAST = "    health: {interval: 0.1s, grace: 0s, timeout: 1s, unhealthy_after: 2}\n"


@pytest.fixture
def nft(home: object) -> None:
    """Partitions need root and nftables (CI has both)."""
    if os.geteuid() != 0 or not (shutil.which("nft") or os.access("/usr/sbin/nft", os.X_OK)):
        if os.environ.get("CI"):
            pytest.fail("CI must run the partition tests: they need root and nftables' nft")
        pytest.skip("partitions need root and nft")


def _fault(node: str, kind: str) -> str:
    done = cli("local", "fault", node, kind)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _fault_events(herd: SyncClient, name: str) -> list[str]:
    return [e.message for e in herd.events(name) if e.kind == "fault"]


def test_a_crashed_node_is_replaced(home: object, tmp_path: os.PathLike[str]) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "c", "name: crashy\ngroups:\n  web:\n    count: 2\n" + FAST))
    said = _fault("crashy-web-1", "crash")
    assert "crashy-web-1 (crashy): crashed" in said
    view = passes_until(herd, "crashy", lambda v: ready_names(v) == {"crashy-web-2", "crashy-web-3"},
                        what="crashy-web-1 to be replaced")
    assert "crashy-web-1" not in {n.name for n in view.live}
    assert _fault_events(herd, "crashy")[0].startswith("crashy-web-1: crash: crashed")
    herd.down("crashy")


@pytest.mark.parametrize("kind", ["hang", "partition"])
def test_a_cut_off_node_turns_unhealthy_then_is_replaced(home: object, tmp_path: os.PathLike[str], kind: str,
                                                         request: pytest.FixtureRequest) -> None:
    if kind == "partition":
        request.getfixturevalue("nft")
    herd = SyncClient()
    herd.up(write_spec(tmp_path / kind, f"name: cut-{kind}\ngroups:\n  web:\n    count: 3\n" + FAST))
    name = f"cut-{kind}"
    _fault(f"{name}-web-2", kind)
    view = passes_until(herd, name, lambda v: v.node(f"{name}-web-2").state == "unhealthy",
                        what=f"the {kind} node to turn unhealthy")
    assert view.node(f"{name}-web-2").health == "unhealthy"
    view = passes_until(herd, name, lambda v: ready_names(v) == {f"{name}-web-1", f"{name}-web-3", f"{name}-web-4"},
                        what=f"the {kind} node to be replaced")
    messages = [e.message for e in herd.events(name) if e.node == f"{name}-web-2"]
    assert any("unhealthy" in m for m in messages) and any(m.startswith(f"{name}-web-2: {kind}:") for m in messages)
    if kind == "partition":
        assert "cloudherd_ln_" not in subprocess.run(["nft", "list", "tables"], capture_output=True,
                                                      text=True).stdout  # the replaced node's rule went with it
    herd.down(name)


def test_a_node_healed_before_the_bound_is_kept(home: object, tmp_path: os.PathLike[str]) -> None:
    health = "    health: {interval: 0.1s, grace: 0s, timeout: 1s, unhealthy_after: 10m}\n"
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "k", "name: kept\ngroups:\n  web:\n    count: 2\n" + health))
    _fault("kept-web-1", "hang")
    passes_until(herd, "kept", lambda v: v.node("kept-web-1").state == "unhealthy", what="the hung node unhealthy")
    assert "healed: resumed" in _fault("kept-web-1", "heal")
    view = passes_until(herd, "kept", lambda v: v.node("kept-web-1").state == "ready", what="the node to recover")
    assert {n.name for n in view.live} == {"kept-web-1", "kept-web-2"}  # nothing replaced
    assert [m.split(":")[1].strip() for m in _fault_events(herd, "kept")] == ["hang", "heal"]
    nodes = json.loads(cli("status", "kept", "--json").stdout)["nodes"]
    assert all("fault" not in (n["machine"] or "") for n in nodes)
    herd.down("kept")


def test_most_of_a_group_partitioned_trips_the_circuit_breaker(home: object, tmp_path: os.PathLike[str],
                                                               nft: None) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "b", "name: split\ngroups:\n  web:\n    count: 5\n" + FAST))
    cut = [f"split-web-{i}" for i in (1, 2, 3)]
    for node in cut:
        _fault(node, "partition")
    passes_until(herd, "split", lambda v: sum(n.state == "failed" for n in v.live) == 3, what="three nodes to fail")
    for _ in range(3):
        herd.manage(["split"], once=True)
    view = herd.status("split")
    assert {n.name for n in view.live} == {f"split-web-{i}" for i in range(1, 6)}  # nothing replaced
    breaker = [e.message for e in herd.events("split") if e.kind == "circuit-breaker"]
    assert len(breaker) == 1 and "3 of 5 nodes unhealthy" in breaker[0]
    for node in cut[:2]:
        _fault(node, "heal")
    view = passes_until(herd, "split", lambda v: len(ready_names(v)) == 5 and "split-web-3" not in ready_names(v),
                        what="the one node still cut off to be replaced")
    assert "split-web-6" in ready_names(view)
    herd.down("split")


def test_fault_errors_are_clear(home: object, tmp_path: os.PathLike[str]) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "e", "name: errs\ngroups:\n  web:\n    count: 1\n"))
    for args, message in ((["nosuch", "crash"], "no live node 'nosuch'"),
                          (["errs-web-1", "melt"],
                           "unknown fault 'melt' (known: crash, hang, partition, heal, interrupt)")):
        refused = cli("local", "fault", *args)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr, refused
    assert "nothing to heal" in _fault("errs-web-1", "heal")
    herd.down("errs")


def test_sandboxed_nodes_die_as_a_whole_on_a_crash(home: object, tmp_path: os.PathLike[str]) -> None:
    """A daemon a script started (left the tree, as daemons do) dies with its node's crash."""
    if local_sandbox.unavailable():
        pytest.skip(local_sandbox.unavailable() or "")
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "d", "name: daemons\ngroups:\n  web:\n    count: 1\n    scripts: [d.sh]\n",
                       {"d.sh": "setsid sleep 600 < /dev/null > /dev/null 2>&1 &\necho started\n"}))
    [before] = herd.exec("daemons", "pgrep -x sleep")
    assert before.ok and before.stdout.strip()
    folder = node_folders(Path(str(home)))["daemons-web-1"]
    assert node_processes(folder)  # the daemon carries its node's marker
    _fault("daemons-web-1", "crash")
    assert node_processes(folder) == []
    [listed] = herd.status("daemons").nodes
    assert listed.state in ("dead", "failed")
    herd.down("daemons")
