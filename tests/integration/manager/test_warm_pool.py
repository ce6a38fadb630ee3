"""A warm pool on real local nodes: nodes set up ahead and stopped (no process; folder and host key kept), taken
first by a scale-out (started, their scripts not run again), the pool filled again behind; pool nodes are not
counted, and `down` ends them too."""

from __future__ import annotations

from pathlib import Path

from helpers import write_spec

from cloudherd.api import SyncClient

SPEC = """\
name: warm
groups:
  web:
    count: 1
    min: 0
    max: 4
    scripts:
      - {name: setup.sh, content: "echo set up >> setup.log"}
    warm_pool: {size: 2}
"""


def nodes(herd: SyncClient) -> dict[str, tuple[str, bool]]:
    return {n.name: (n.state, n.warm) for n in herd.status("warm").live}


def script_runs(herd: SyncClient, node: str) -> int:
    return sum(a.kind == "script" for a in herd.logs("warm", node))


def test_a_scale_out_takes_from_the_warm_pool_and_the_pool_fills_again(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", SPEC))
    assert nodes(herd) == {"warm-web-1": ("ready", False), "warm-web-2": ("stopped", True),
                           "warm-web-3": ("stopped", True)}
    [web] = herd.status("warm").groups
    assert (web.count, web.actual, web.healthy) == (1, 1, 1)  # the pool is not counted
    assert script_runs(herd, "warm-web-2") == 1  # set up before it was stopped
    host_key = herd.node("warm", "warm-web-2").host_key

    herd.scale("warm", "web", "+1")  # taken from the pool: started, not made
    assert nodes(herd) == {"warm-web-1": ("ready", False), "warm-web-2": ("ready", False),
                           "warm-web-3": ("stopped", True), "warm-web-4": ("stopped", True)}
    assert script_runs(herd, "warm-web-2") == 1  # its scripts were done: not run again
    assert herd.node("warm", "warm-web-2").host_key == host_key
    [said] = herd.exec("warm", "cat setup.log", node="warm-web-2")
    assert said.stdout.strip() == "set up"
    events = [e.message for e in herd.events("warm") if e.kind == "warm-pool"]
    assert "web: warm-web-2 taken from the warm pool" in events
    assert "web: warm-web-4 set up and stopped in the warm pool" in events

    herd.scale("warm", "web", "=1")  # a shrink ends an in-service node; the pool stays as it is
    assert nodes(herd) == {"warm-web-1": ("ready", False), "warm-web-3": ("stopped", True),
                           "warm-web-4": ("stopped", True)}
    herd.down("warm")
    assert nodes(herd) == {}


def test_a_node_taken_from_the_pool_passes_the_launch_hooks(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    hooked = SPEC.replace("    warm_pool: {size: 2}\n", "    warm_pool: {size: 1}\n    hooks:\n"
                                                          "      - {name: check, on: launch, command: 'true'}\n")
    herd.up(write_spec(tmp_path / "p", hooked))
    assert nodes(herd) == {"warm-web-1": ("ready", False), "warm-web-2": ("stopped", True)}
    herd.scale("warm", "web", "+1")
    assert nodes(herd) == {"warm-web-1": ("ready", False), "warm-web-2": ("ready", False),
                           "warm-web-3": ("stopped", True)}
    held = [e.message for e in herd.events("warm") if e.kind == "hook"]
    assert "warm-web-2: waiting for launch hook(s) check" in held  # held on its way into service, not into the pool
    assert "warm-web-3: waiting for launch hook(s) check" not in held
    herd.down("warm")


def test_a_new_release_sets_the_pool_up_again(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", SPEC.replace("{size: 2}", "{size: 1}")))
    assert nodes(herd) == {"warm-web-1": ("ready", False), "warm-web-2": ("stopped", True)}
    newer = SPEC.replace("{size: 2}", "{size: 1}").replace("echo set up", "echo set up again")
    plan = herd.plan(write_spec(tmp_path / "q", newer))
    assert "warm pool: 1 node(s) set up for an older release ended" in plan.groups[0].reasons
    herd.up(write_spec(tmp_path / "q", newer))  # the pool node of the old release is ended, one of the new made
    pool = {name: state for name, (state, warm) in nodes(herd).items() if warm}
    assert list(pool.values()) == ["stopped"] and "warm-web-2" not in nodes(herd)
    [fresh] = pool
    herd.scale("warm", "web", "+1")
    assert nodes(herd)[fresh] == ("ready", False)
    [said] = herd.exec("warm", "cat setup.log", node=fresh)
    assert said.stdout.splitlines() == ["set up again"] and script_runs(herd, fresh) == 1
    herd.down("warm")
