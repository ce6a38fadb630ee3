"""Lifecycle hooks on real local nodes: a launch hook holds a new node out of service until it is completed (by a
user, by its command, or by its timeout's default), a terminate hook holds a leaving node's machine until then;
every hold and its end are events."""

from __future__ import annotations

from pathlib import Path

from helpers import cli, wait_until, write_spec

from cloudherd.api import SyncClient


def spec(count: int, hooks: str) -> str:
    return f"name: hooked\ngroups:\n  web:\n    count: {count}\n    min: 0\n    max: 4\n    hooks:\n{hooks}"


def states(herd: SyncClient) -> dict[str, str]:
    return {n.name: n.state for n in herd.status("hooked").live}


def hook_events(herd: SyncClient) -> list[str]:
    return [e.message for e in herd.events("hooked") if e.kind == "hook"]


def test_a_launch_hook_holds_a_node_until_a_user_completes_it(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", spec(1, "      - {name: warm, on: launch}\n")))
    assert states(herd) == {"hooked-web-1": "waiting"}  # scripts done, out of service
    [hold] = herd.hooks("hooked")
    assert (hold.node, hold.hook, hold.transition, hold.result) == ("hooked-web-1", "warm", "launch", None)
    assert herd.status("hooked").groups[0].healthy == 0
    shown = cli("hook", "ls", "hooked")
    assert "hooked-web-1  launch hook warm: open until" in shown.stdout, shown.stdout

    done = cli("hook", "complete", "hooked", "hooked-web-1")
    assert done.returncode == 0 and "launch hook warm: CONTINUE" in done.stdout, done.stdout + done.stderr
    assert states(herd) == {"hooked-web-1": "ready"}
    assert herd.hooks("hooked") == []
    refused = cli("hook", "complete", "hooked", "hooked-web-1")
    assert refused.returncode == 2 and "is not held by any hook now" in refused.stderr
    assert hook_events(herd) == ["hooked-web-1: waiting for launch hook(s) warm",
                                 "hooked-web-1: launch hook warm: CONTINUE (completed by a user)",
                                 "hooked-web-1: in service (launch hooks completed)"]
    herd.down("hooked")


def test_a_command_hook_decides_and_an_abandoned_launch_is_replaced(home: Path, tmp_path: Path) -> None:
    flag = tmp_path / "ok"
    herd = SyncClient()
    hooks = f"      - {{name: check, on: launch, command: 'test -f {flag}'}}\n"
    herd.up(write_spec(tmp_path / "p", spec(1, hooks)))  # the command runs at once: no flag, ABANDON
    assert states(herd) == {"hooked-web-1": "failed"}
    flag.write_text("yes\n")
    herd.manage(["hooked"], once=True)  # the failed node is replaced; its successor's command says CONTINUE
    assert states(herd) == {"hooked-web-2": "ready"}
    [action] = [a for a in herd.logs("hooked", "hooked-web-2") if a.kind == "hook"]
    assert action.name == "launch hook check" and action.exit_code == 0
    assert "hooked-web-1: failed: launch hook check: ABANDON (it is replaced)" in hook_events(herd)
    herd.down("hooked")


def test_a_timeout_applies_the_default_and_a_heartbeat_moves_it_on(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", spec(1, "      - {name: slow, on: launch, timeout: 2s, default: continue}\n")))
    [hold] = herd.hooks("hooked")
    [beat] = herd.heartbeat_hook("hooked", "hooked-web-1", "slow")
    assert beat.deadline > hold.deadline

    def passed() -> bool:
        herd.manage(["hooked"], once=True)
        return states(herd) == {"hooked-web-1": "ready"}

    wait_until(passed, timeout=60, what="the hold's default applied at its deadline")
    assert "hooked-web-1: launch hook slow timed out: CONTINUE" in hook_events(herd)
    herd.down("hooked")


def test_a_terminate_hook_holds_the_leaving_node_until_completed(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "p", spec(2, "      - {name: drain, on: terminate}\n")))
    herd.scale("hooked", "web", "=1")
    assert states(herd) == {"hooked-web-1": "ready", "hooked-web-2": "draining"}  # its machine still runs
    [result] = herd.exec("hooked", "echo draining", node="hooked-web-2")
    assert result.stdout.strip() == "draining"
    herd.manage(["hooked"], once=True)  # held: not replaced, not counted, not ended
    assert states(herd) == {"hooked-web-1": "ready", "hooked-web-2": "draining"}
    herd.complete_hook("hooked", "hooked-web-2")
    assert states(herd) == {"hooked-web-1": "ready"}
    herd.scale("hooked", "web", "=0")  # held again; down runs no hook and ends it
    assert [h.node for h in herd.hooks("hooked")] == ["hooked-web-1"]
    herd.down("hooked")
    assert states(herd) == {} and herd.hooks("hooked") == []


def test_a_terminate_hook_command_runs_before_the_machine_goes(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    hook = "      - {name: bye, on: terminate, command: 'echo bye from $CLOUDHERD_NODE'}\n"
    herd.up(write_spec(tmp_path / "p", spec(2, hook)))
    herd.scale("hooked", "web", "-1")
    assert states(herd) == {"hooked-web-1": "ready"}
    [action] = [a for a in herd.logs("hooked") if a.kind == "hook"]
    assert action.stdout.strip() == "bye from hooked-web-2" and action.name == "terminate hook bye"
    herd.down("hooked")
