"""No state a crash, a refusal or a broken provider leaves is a dead end: the next command settles it,
and `down` can always finish."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli, node_folders, replace_host_key, wait_until, write_spec
from sqlalchemy import select

from cloudherd.api import SyncClient
from cloudherd.providers.local import LocalProvider
from cloudherd.state.models import Infrastructure, Node


def _recorded_by_an_older_version(herd: SyncClient, infra_id: str) -> None:
    """Rewrite the stored spec as an older cloudherd accepted it: a provider of a type that does not exist,
    with one node on it (its machine unknowable)."""
    with herd.aio.store.session() as s, s.begin():
        infra = s.get_one(Infrastructure, infra_id)
        infra.spec_text = infra.spec_text + "providers:\n  ghost:\n    type: nosuch\n"
        real = s.scalars(select(Node).where(Node.infrastructure_id == infra_id)).first()
        assert real is not None
        s.add(Node(infrastructure_id=infra_id, group_name=real.group_name, name="gone-1", index=99,
                   provider="ghost", provider_id="ghost-1", state="ready"))


def test_down_finishes_past_a_provider_that_cannot_be_built(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "d", "name: stuck\ngroups:\n  web:\n    count: 1\n"))
    _recorded_by_an_older_version(herd, infra_id)

    first = cli("down", infra_id)
    assert first.returncode == 1, first.stderr
    last = first.stderr.strip().splitlines()[-1]
    assert "1 node(s) could not be terminated" in last and "ghost" in last and "(--force)" in last
    assert "Traceback" not in first.stderr
    view = herd.infrastructure(infra_id)
    assert {n.name: n.state for n in view.nodes} == {"stuck-web-1": "terminated", "gone-1": "ready"}
    assert view.state == "destroying" and "not terminated" in (view.reason or "")
    assert LocalProvider("local", {"root": str(home / "local")}).settings  # the local node really went:
    assert asyncio.run(LocalProvider("local", {"root": str(home / "local")}).list({})) == []

    forced = cli("down", infra_id, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "forgot 1 node(s)" in forced.stderr and "may still run" in forced.stderr
    view = herd.infrastructure(infra_id)
    assert view.state == "destroyed" and all(n.state == "terminated" for n in view.nodes)


@pytest.mark.scenario
def test_a_killed_script_run_is_settled_by_the_next_command(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "k"
    spec = write_spec(folder, "name: killed\ngroups:\n  web:\n    count: 1\n    scripts: [s.sh]\n",
                      {"s.sh": f"touch {folder}/started; sleep 60\n"})
    up = subprocess.Popen([sys.executable, "-m", "cloudherd", "up", str(spec)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=dict(os.environ), stdin=subprocess.DEVNULL)
    wait_until(lambda: (folder / "started").exists(), 60, "the script to start")
    up.send_signal(signal.SIGKILL)
    up.communicate(timeout=30)

    status = json.loads(cli("status", "killed", "--json").stdout)
    node = status["nodes"][0]
    assert node["state"] == "failed" and "interrupted" in node["reason"]
    logs = json.loads(cli("logs", "killed", "--json").stdout)
    assert logs and all(row["ended_at"] is not None for row in logs)
    assert "interrupted" in logs[-1]["stderr"] and logs[-1]["exit_code"] is None

    (folder / "s.sh").write_text("echo fine\n")
    again = cli("up", str(spec))
    assert again.returncode == 0, again.stderr
    live = [n for n in json.loads(cli("status", "killed", "--json").stdout)["nodes"] if n["state"] != "terminated"]
    assert [n["state"] for n in live] == ["ready"]  # the failed node rolled to the fixed release
    assert cli("down", "killed").returncode == 0


def test_a_refused_converge_leaves_no_node_deploying(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "r"
    text = "name: refused\ngroups:\n  web:\n    count: 3\n    scripts: [s.sh]\n    update: {strategy: recreate}\n"
    spec = write_spec(folder, text, {"s.sh": "echo one\n"})
    herd = SyncClient()
    infra_id = herd.up(spec)
    victim = herd.infrastructure(infra_id).node("refused-web-1")
    provider = LocalProvider("local", {"root": str(home / "local")})
    asyncio.run(provider.stop([victim.provider_id or ""]))
    replace_host_key(node_folders(home)["refused-web-1"], "openssh")
    asyncio.run(provider.start([victim.provider_id or ""]))

    (folder / "s.sh").write_text("sleep 0.5; echo two\n")
    refused = cli("up", str(spec))
    assert refused.returncode == 1 and "refusing to connect" in refused.stderr
    states = {n.name: n.state for n in herd.infrastructure(infra_id).live}
    assert "deploying" not in states.values() and "booting" not in states.values(), states
    assert states["refused-web-1"] == "failed"
    assert all(row.ended_at is not None for row in herd.logs(infra_id))


@pytest.mark.scenario
def test_ssh_refuses_a_changed_host_key_in_one_line_and_repins(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "s", "name: sshkeys\ngroups:\n  web:\n    count: 1\n"))
    node = herd.infrastructure(infra_id).node("sshkeys-web-1")
    assert cli("ssh", infra_id, node.name, "echo", "hi").stdout == "hi\n"
    provider = LocalProvider("local", {"root": str(home / "local")})
    asyncio.run(provider.stop([node.provider_id or ""]))
    new_fp = replace_host_key(node_folders(home)[node.name], "openssh")
    asyncio.run(provider.start([node.provider_id or ""]))

    refused = cli("ssh", infra_id, node.name, "echo", "hi")
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and new_fp in lines[0] and "(--accept-new-host-key)" in lines[0], refused.stderr
    accepted = cli("ssh", infra_id, node.name, "--accept-new-host-key", "echo", "hi")
    assert accepted.returncode == 0 and accepted.stdout == "hi\n", accepted.stderr
    assert cli("ssh", infra_id, node.name, "echo", "again").stdout == "again\n"
    assert cli("exec", infra_id, "true").returncode == 0  # the other commands see the same new pin
    herd.down(infra_id)
