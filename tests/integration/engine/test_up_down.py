"""`cloudherd up / status / exec / logs / down` end to end on real local nodes, and rollback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HELLO, cli, node_processes, wait_until


def _node_folders(home: Path) -> list[Path]:
    root = home / "local"
    return sorted(root.iterdir()) if root.is_dir() else []


@pytest.mark.scenario
def test_hello_up_exec_down(home: Path, server: str) -> None:
    up = cli("up", str(HELLO))
    assert up.returncode == 0, up.stderr
    infra_id = up.stdout.strip().splitlines()[-1]

    status = json.loads(cli("status", infra_id, "--json").stdout)
    assert status["state"] == "ready"
    assert [n["state"] for n in status["nodes"]] == ["ready"] * 3
    assert all(n["last_action"]["name"] == "scripts/20-configure.sh" for n in status["nodes"])

    # Each script's effect is on each node: rendered with the node's own name and its siblings.
    folders = _node_folders(home)
    assert len(folders) == 3
    names = {n["name"] for n in status["nodes"]}
    seen = set()
    for folder in folders:
        meta = json.loads((folder / "node.json").read_text())
        index = (folder / "work" / "site" / "index.html").read_text()
        assert index == f"Hello from cloudherd: {meta['name']} ({meta['address']})\n"
        peers = (folder / "work" / "peers.txt").read_text().split("\n")
        assert sorted(line.split()[0] for line in peers if line) == sorted(names)
        seen.add(meta["name"])
    assert seen == names

    # A name or a unique id prefix works wherever an id does.
    listed = json.loads(cli("ls", "--json").stdout)
    assert [row["id"] for row in listed] == [infra_id]
    by_name = cli("exec", "hello", "echo $CLOUDHERD_WORK")
    assert by_name.returncode == 0, by_name.stderr
    assert "3 ok, 0 failed, 0 unreachable" in by_name.stderr
    for folder in folders:
        assert f"| {folder / 'work'}" in by_name.stdout

    exec_json = json.loads(cli("exec", infra_id[:6], "hostname", "--json").stdout)
    assert len(exec_json) == 3 and all(r["exit_code"] == 0 and r["ok"] for r in exec_json)
    if server == "openssh" and os.geteuid() == 0:  # own UTS namespace per node
        assert {r["stdout"].strip() for r in exec_json} == names

    failing = cli("exec", infra_id, "test $CLOUDHERD_NODE != hello-web-2", "--group", "web")
    assert failing.returncode == 1
    assert "2 ok, 1 failed, 0 unreachable" in failing.stderr

    if shutil.which("ssh"):  # OpenSSH's client against the node, with the pinned host key
        via_ssh = cli("ssh", infra_id, "hello-web-1", "echo", "via-ssh:$CLOUDHERD_WORK")
        assert via_ssh.returncode == 0, via_ssh.stderr
        assert via_ssh.stdout.startswith("via-ssh:/") and via_ssh.stdout.strip().endswith("/work")

    logs = json.loads(cli("logs", infra_id, "hello-web-1", "--json").stdout)
    kinds = [(row["kind"], row["name"], row["exit_code"]) for row in logs]
    assert kinds[:2] == [("script", "scripts/10-install.sh", 0), ("script", "scripts/20-configure.sh", 0)]
    assert logs[0]["stdout"] == "installed on hello-web-1\n"

    pids = [json.loads((f / "node.json").read_text())["pid"] for f in folders]
    down = cli("down", infra_id)
    assert down.returncode == 0, down.stderr
    assert _node_folders(home) == []
    assert node_processes(home / "local") == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    teardown = [row for row in json.loads(cli("logs", infra_id, "--json").stdout) if row["kind"] == "teardown"]
    assert sorted(row["stdout"] for row in teardown) == sorted(f"goodbye from {n}\n" for n in names)
    assert json.loads(cli("ls", "--json").stdout) == []
    assert json.loads(cli("ls", "--all", "--json").stdout)[0]["state"] == "destroyed"


def _spec(tmp_path: Path, script: str, count: int = 3) -> Path:
    (tmp_path / "setup.sh").write_text(script)
    spec = tmp_path / "spec.yml"
    spec.write_text(f"name: roll\ngroups:\n  app:\n    count: {count}\n    scripts: [setup.sh]\n")
    return spec


def _infra_state(home: Path) -> tuple[str, str]:
    with sqlite3.connect(home / "state.db") as db:
        row = db.execute("SELECT state, reason FROM infrastructures").fetchone()
    return row[0], row[1]


def test_failing_script_rolls_back_everything(tmp_path: Path, home: Path) -> None:
    spec = _spec(tmp_path, 'if [ "$CLOUDHERD_NODE" = roll-app-2 ]; then echo broken >&2; exit 7; fi\necho fine\n')
    result = cli("up", str(spec))
    assert result.returncode == 1
    assert "roll-app-2: setup.sh exited 7: broken" in result.stderr
    assert "Traceback" not in result.stderr
    assert _node_folders(home) == []
    assert node_processes(home / "local") == []
    state, reason = _infra_state(home)
    assert state == "failed" and "exited 7" in reason and "rolled back" in reason


def test_keep_on_failure_keeps_the_nodes(tmp_path: Path, home: Path) -> None:
    spec = _spec(tmp_path, "exit 3\n", count=2)
    result = cli("up", str(spec), "--keep-on-failure")
    assert result.returncode == 1
    assert len(_node_folders(home)) == 2
    assert _infra_state(home)[0] == "failed"
    assert cli("down", "roll").returncode == 0
    assert _node_folders(home) == []


def test_sigint_during_deploy_rolls_back(tmp_path: Path, home: Path) -> None:
    marker = tmp_path / "started"
    spec = _spec(tmp_path, f"touch {marker}-$CLOUDHERD_NODE\nsleep 60\n")
    process = subprocess.Popen([sys.executable, "-m", "cloudherd", "up", str(spec)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        def all_started() -> bool:
            assert process.poll() is None, process.communicate()  # up ended before the scripts started
            return len(list(tmp_path.glob("started-*"))) == 3

        wait_until(all_started, timeout=60, what="the script to start on all 3 nodes")
        assert len(_node_folders(home)) == 3
        process.send_signal(signal.SIGINT)
        try:
            _out, err = process.communicate(timeout=180)  # generous: CI machines can be very busy
        except subprocess.TimeoutExpired:
            process.kill()
            _out, err = process.communicate()
            raise AssertionError(f"up did not end after SIGINT; its stderr: {err[-3000:]}") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert _node_folders(home) == []
    assert node_processes(home / "local") == []
    state, reason = _infra_state(home)
    assert state == "failed" and reason.startswith("interrupted")


def test_connect_gives_up_in_bounded_time_with_a_clear_error() -> None:
    """A node that accepts TCP but never speaks SSH, and one that refuses: the wait ends at its own timeout
    with a clear error (an outer deadline far beyond it turns a wait that never ends into a failure)."""
    import asyncio
    import socket

    import asyncssh

    from cloudherd.remote.ssh import Target, UnreachableError, connect

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    key = asyncssh.generate_private_key("ssh-ed25519")
    try:
        for sock, why in ((silent, "Timeout"), (refused, "refused")):
            port = sock.getsockname()[1]
            with pytest.raises(UnreachableError) as caught:  # not TimeoutError: connect gave up by itself
                asyncio.run(asyncio.wait_for(connect(Target("n1", "127.0.0.1", port, "root"), key, timeout=1.5),
                                             timeout=120))
            message = str(caught.value)
            assert message.startswith(f"node n1 (127.0.0.1:{port}) did not accept SSH within 1.5s: ")
            assert why.lower() in message.lower()
    finally:
        silent.close()
        refused.close()


@pytest.mark.parametrize("command", [["status", "nope"], ["down", "nope"], ["exec", "nope", "true"]])
def test_unknown_infrastructure_is_a_one_line_error(home: Path, command: list[str]) -> None:
    result = cli(*command)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: no infrastructure matches 'nope' (see `cloudherd ls --all`)"


def test_catalog_of_the_local_provider(home: Path) -> None:
    result = cli("sizes", "local", "--json")
    assert result.returncode == 0, result.stderr
    sizes = {size["name"]: size for size in json.loads(result.stdout)}
    assert sizes["host"]["default"] is True and sizes["host"]["cpus"] >= 1  # the default: no limits
    assert (sizes["small"]["cpus"], sizes["small"]["memory_mb"]) == (1, 1024)
    assert [s["name"] for s in json.loads(cli("sizes", "local", "^med", "--json").stdout)] == ["medium"]
    assert json.loads(cli("sizes", "local", "nomatch", "--json").stdout) == []
    unknown = cli("sizes", "nowhere")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().startswith("error: unknown provider type 'nowhere'")
