"""Remote work at fleet scale, on real local nodes (OpenSSH sshd and the built-in asyncssh server):
pooled connections counted on the server side, pipelined deploy proven by order, digest skips,
host-key pinning and re-pinning, exec summaries, push / pull, selectors, templates, artifacts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from pathlib import Path

import asyncssh
import pytest
from helpers import async_wait_until, cli, logins, node_folders, process_gone, replace_host_key, wait_until, write_spec
from sqlalchemy import select

from cloudherd.api import Client, SyncClient
from cloudherd.engine.events import ProgressEvent
from cloudherd.state.models import Action, HostKey

pytestmark = pytest.mark.usefixtures("home")


def script_actions(herd: SyncClient, infra_id: str) -> list[Action]:
    with herd.aio.store.session() as s:
        return list(s.scalars(select(Action).where(Action.infrastructure_id == infra_id, Action.kind == "script")
                              .order_by(Action.id)))


@pytest.fixture
def herd() -> SyncClient:
    return SyncClient()


def test_pool_opens_one_connection_per_node_per_command(server: str, home: Path, tmp_path: Path,
                                                          herd: SyncClient) -> None:
    scripts = {f"scripts/{i}0-step.sh": f"echo step {i} >> steps.txt\n" for i in range(1, 4)}
    spec = write_spec(tmp_path / "pool", "name: pool\ngroups:\n  n:\n    count: 3\n    scripts: [scripts/]\n", scripts)
    infra_id = herd.up(spec)
    folders = node_folders(home)
    assert len(folders) == 3
    # three scripts per node ran over one login per node
    assert {name: logins(f) for name, f in folders.items()} == {name: 1 for name in folders}
    results = herd.exec(infra_id, "cat steps.txt")
    assert all(r.ok and r.stdout.splitlines() == ["step 1", "step 2", "step 3"] for r in results), results
    assert {name: logins(f) for name, f in folders.items()} == {name: 2 for name in folders}
    herd.down(infra_id)


def test_deploy_is_pipelined_a_slow_node_does_not_hold_the_others(server: str, home: Path, tmp_path: Path) -> None:
    scripts = {"scripts/10-a.sh": "echo a\n", "scripts/20-b.sh": "echo b\n"}
    spec = write_spec(tmp_path / "pipe", "name: pipe\ngroups:\n  n:\n    count: 4\n    scripts: [scripts/]\n", scripts)
    slow_name = "pipe-n-1"
    stopped: list[int] = []
    ready: set[str] = set()

    def resume() -> None:
        while stopped:
            os.kill(stopped.pop(), signal.SIGCONT)

    safety = threading.Timer(20.0, resume)  # a deploy that waited for the slow node would fail, not hang

    def on_event(event: ProgressEvent) -> None:
        if event.node == slow_name and event.state == "booting" and not stopped:
            pid_file = node_folders(home)[slow_name] / "sshd.pid"
            wait_until(pid_file.exists, timeout=30, what=f"{pid_file} to be written")
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGSTOP)  # accepts TCP (kernel backlog) but never answers: slow to accept SSH
            stopped.append(pid)
            safety.start()
        if event.state == "ready" and event.node != slow_name:
            ready.add(event.node or "")
            if len(ready) == 3:
                resume()

    async def main() -> str:
        return await Client().up(spec, on_event=on_event, connect_timeout=60)

    try:
        infra_id = asyncio.run(main())
    finally:
        resume()
        safety.cancel()
    herd = SyncClient()
    nodes = {n.id: n.name for n in herd.infrastructure(infra_id).nodes}
    actions = script_actions(herd, infra_id)
    slow_first_start = min(a.started_at for a in actions if nodes[a.node_id] == slow_name)
    others_last_end = max(a.ended_at for a in actions if nodes[a.node_id] != slow_name and a.ended_at)
    assert len(actions) == 8
    assert others_last_end < slow_first_start
    herd.down(infra_id)


def test_rerun_skips_unchanged_scripts_and_reruns_changed_ones(home: Path, tmp_path: Path, herd: SyncClient) -> None:
    folder = tmp_path / "skip"
    scripts = {"scripts/10-a.sh": "echo a >> ran.txt\n", "scripts/20-b.sh": "echo b{{ variables.v }} >> ran.txt\n"}
    text = "name: skip\nvariables: {v: 1}\ngroups:\n  n:\n    count: 2\n    scripts: [scripts/]\n" \
           "    update: {strategy: recreate}\n"  # all at once: changed scripts re-run where they stand
    spec = write_spec(folder, text, scripts)
    infra_id = herd.up(spec)
    assert len(script_actions(herd, infra_id)) == 4

    assert herd.up(spec) == infra_id  # same name: converged, nothing to do
    assert len(script_actions(herd, infra_id)) == 4
    assert all(r.stdout == "a\nb1\n" for r in herd.exec(infra_id, "cat ran.txt"))

    spec.write_text(text.replace("{v: 1}", "{v: 2}"))  # only b's rendered text changes
    herd.up(spec)
    rerun = script_actions(herd, infra_id)[4:]
    assert [a.name for a in rerun] == ["scripts/20-b.sh", "scripts/20-b.sh"]
    assert all(r.stdout == "a\nb1\nb2\n" for r in herd.exec(infra_id, "cat ran.txt"))

    run = cli("up", str(spec), "--force")
    assert run.returncode == 0, run.stderr
    assert len(script_actions(herd, infra_id)) == 10
    herd.down(infra_id)


def test_up_converges_counts(home: Path, tmp_path: Path, herd: SyncClient) -> None:
    text = "name: grow\ngroups:\n  n:\n    count: {count}\n    scripts: [s.sh]\n"
    spec = write_spec(tmp_path / "grow", text.format(count=2), {"s.sh": "hostname > me.txt\n"})
    infra_id = herd.up(spec)
    spec.write_text(text.format(count=3))
    herd.up(spec)
    live = [n for n in herd.infrastructure(infra_id).nodes if n.state == "ready"]
    assert sorted(n.name for n in live) == ["grow-n-1", "grow-n-2", "grow-n-3"]
    assert len(script_actions(herd, infra_id)) == 3  # only the new node ran the script
    spec.write_text(text.format(count=1))
    herd.up(spec)
    states = {n.name: n.state for n in herd.infrastructure(infra_id).nodes}
    assert states == {"grow-n-1": "ready", "grow-n-2": "terminated", "grow-n-3": "terminated"}
    assert len(node_folders(home)) == 1
    herd.down(infra_id)


@pytest.mark.scenario
def test_host_key_mismatch_is_refused_and_repin_works(server: str, home: Path, tmp_path: Path,
                                                      herd: SyncClient) -> None:
    spec = write_spec(tmp_path / "keys", "name: keys\ngroups:\n  n:\n    count: 2\n")
    infra_id = herd.up(spec)
    infra = herd.infrastructure(infra_id)
    victim = next(n for n in infra.nodes if n.name == "keys-n-1")
    with herd.aio.store.session() as s:
        old_fp = s.scalar(select(HostKey.fingerprint).where(HostKey.node_id == victim.id))
    assert old_fp and old_fp.startswith("SHA256:")

    from cloudherd.providers.local import LocalProvider

    provider = LocalProvider("local", {"root": str(home / "local")})
    asyncio.run(provider.stop([victim.provider_id or ""]))
    new_fp = replace_host_key(node_folders(home)["keys-n-1"], server)
    asyncio.run(provider.start([victim.provider_id or ""]))

    refused = cli("exec", infra_id, "echo hi")
    assert refused.returncode == 1
    assert "1 ok, 0 failed, 1 unreachable" in refused.stderr
    message = next(line for line in refused.stderr.splitlines() if line.startswith("keys-n-1:"))
    assert old_fp in message and new_fp in message and "--accept-new-host-key keys-n-1" in message
    assert "Traceback" not in refused.stderr

    repinned = cli("exec", infra_id, "echo hi", "--accept-new-host-key", "keys-n-1")
    assert repinned.returncode == 0, repinned.stderr
    again = cli("exec", infra_id, "echo hi")  # the new pin holds without the flag
    assert again.returncode == 0, again.stderr
    with herd.aio.store.session() as s:
        rows = list(s.scalars(select(HostKey).where(HostKey.node_id == victim.id).order_by(HostKey.id)))
    assert [(r.fingerprint, r.replaced_at is None) for r in rows] == [(old_fp, False), (new_fp, True)]
    assert rows[1].source == "re-pinned"
    herd.down(infra_id)


def test_first_contact_records_the_host_key(home: Path, tmp_path: Path, herd: SyncClient) -> None:
    """A node whose provider reports no host key is trusted on first contact, and pinned from then on."""
    spec = write_spec(tmp_path / "tofu", "name: tofu\ngroups:\n  n:\n    count: 1\n")
    infra_id = herd.up(spec)
    with herd.aio.store.session() as s, s.begin():  # as if the provider had not reported it
        for row in s.scalars(select(HostKey).where(HostKey.infrastructure_id == infra_id)):
            s.delete(row)
        from cloudherd.state.models import Node

        for node in s.scalars(select(Node).where(Node.infrastructure_id == infra_id)):
            node.host_key = None
    assert all(r.ok for r in herd.exec(infra_id, "true"))
    actual = asyncssh.read_public_key(str(next(iter(node_folders(home).values())) / "ssh_host_ed25519_key.pub"))
    with herd.aio.store.session() as s:
        rows = list(s.scalars(select(HostKey).where(HostKey.infrastructure_id == infra_id)))
    assert [(r.source, r.fingerprint) for r in rows] == [("first-contact", actual.get_fingerprint())]
    herd.down(infra_id)


@pytest.mark.scenario
def test_exec_summary_json_and_selectors(home: Path, tmp_path: Path, herd: SyncClient) -> None:
    text = (
        "name: sel\ngroups:\n  web:\n    count: 2\n    tags: {tier: front}\n"
        "  db:\n    count: 1\n    tags: {tier: back}\n"
    )
    infra_id = herd.up(write_spec(tmp_path / "sel", text))
    run = cli("exec", infra_id, 'echo "$CLOUDHERD_NODE"; test "$CLOUDHERD_NODE" != sel-web-2 || exit 3')
    assert run.returncode == 1
    assert "2 ok, 1 failed, 0 unreachable" in run.stderr
    assert "sel-db-1  | sel-db-1" in run.stdout  # names padded to the longest
    assert "sel-web-2: exit 3" in run.stderr
    data = {r["node"]: r for r in json.loads(cli("exec", infra_id, "echo $CLOUDHERD_GROUP", "--json").stdout)}
    assert set(data) == {"sel-web-1", "sel-web-2", "sel-db-1"}
    assert data["sel-db-1"]["stdout"] == "db\n" and data["sel-db-1"]["exit_code"] == 0
    assert isinstance(data["sel-db-1"]["seconds"], float)

    def picked(*args: str) -> set[str]:
        out = cli("exec", infra_id, "true", "--json", *args)
        return {r["node"] for r in json.loads(out.stdout)}

    assert picked("--group", "web") == {"sel-web-1", "sel-web-2"}
    assert picked("--tag", "tier=back") == {"sel-db-1"}
    assert picked("--node", "sel-web-1", "--node", "sel-db-1") == {"sel-web-1", "sel-db-1"}
    assert picked("--group", "web", "--tag", "tier=back") == set()
    bad = cli("exec", infra_id, "true", "--group", "nope")
    assert bad.returncode == 2 and "no group 'nope'" in bad.stderr
    herd.down(infra_id)


@pytest.mark.scenario
def test_push_pull_round_trip_to_five_nodes(server: str, home: Path, tmp_path: Path, herd: SyncClient) -> None:
    infra_id = herd.up(write_spec(tmp_path / "copy", "name: copy\ngroups:\n  n:\n    count: 5\n"))
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(300_000))
    run = cli("push", infra_id, str(payload), "inbox/")
    assert run.returncode == 0, run.stderr
    assert "5 ok, 0 failed" in run.stderr
    digests = herd.exec(infra_id, "sha256sum inbox/payload.bin | cut -d' ' -f1")
    import hashlib

    assert {r.stdout.strip() for r in digests} == {hashlib.sha256(payload.read_bytes()).hexdigest()}
    herd.exec(infra_id, 'echo "from $CLOUDHERD_NODE" > inbox/note.txt')
    back = tmp_path / "back"
    run = cli("pull", infra_id, "inbox/*", str(back))
    assert run.returncode == 0, run.stderr
    for i in range(1, 6):
        assert (back / f"copy-n-{i}" / "payload.bin").read_bytes() == payload.read_bytes()
        assert (back / f"copy-n-{i}" / "note.txt").read_text() == f"from copy-n-{i}\n"
    missing = cli("pull", infra_id, "nothing-here/*", str(back), "--node", "copy-n-1")
    assert missing.returncode == 1 and "nothing matches" in missing.stderr
    herd.down(infra_id)


def test_templates_reach_sibling_groups(home: Path, tmp_path: Path, herd: SyncClient) -> None:
    scripts = {"web.sh": "echo '{{ getip(\"db\") }} {{ getprivip(\"db\") }} {{ getipall(\"web\") | join(\",\") }}'"
               " > peers.txt\n"}
    text = "name: tmpl\ngroups:\n  db:\n    count: 1\n  web:\n    count: 2\n    scripts: [web.sh]\n"
    infra_id = herd.up(write_spec(tmp_path / "tmpl", text, scripts))
    view = herd.status(infra_id).nodes
    db = next(n.address for n in view if n.group == "db")
    web = ",".join(str(n.address) for n in sorted(view, key=lambda n: n.name) if n.group == "web")
    results = herd.exec(infra_id, "cat peers.txt", group="web")
    assert [r.stdout for r in results] == [f"{db} {db} {web}\n"] * 2
    herd.down(infra_id)


def test_unknown_group_in_template_fails_clearly(home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "bad", "name: bad\ngroups:\n  n:\n    scripts: [s.sh]\n",
                      {"s.sh": "echo {{ getip('nope') }}\n"})
    run = cli("up", str(spec))
    assert run.returncode == 2  # found before anything is made: a usage error, with the script's line
    assert "s.sh:1: template error: no group 'nope'" in run.stderr and "Traceback" not in run.stderr
    assert not (home / "local").is_dir() or not list((home / "local").glob("*/node.json"))


def test_artifacts_are_pulled_before_teardown(home: Path, tmp_path: Path, herd: SyncClient) -> None:
    text = ("name: arts\ngroups:\n  n:\n    count: 2\n    scripts: [s.sh]\n    teardown: t.sh\n"
            "    artifacts: ['out/*.log']\n")
    scripts = {"s.sh": "mkdir -p out && echo built on $CLOUDHERD_NODE > out/build.log\n",
               "t.sh": "echo torn down > out/teardown.log\n"}
    infra_id = herd.up(write_spec(tmp_path / "arts", text, scripts))
    dest = tmp_path / "collected"
    run = cli("down", infra_id, "--artifacts", str(dest))
    assert run.returncode == 0, run.stderr
    for i in (1, 2):
        assert (dest / f"arts-n-{i}" / "build.log").read_text() == f"built on arts-n-{i}\n"
        assert not (dest / f"arts-n-{i}" / "teardown.log").exists()  # pulled before the teardown ran
        assert (dest / f"arts-n-{i}").stat().st_mode & 0o777 == 0o700
    assert dest.stat().st_mode & 0o777 == 0o700  # a fleet's outputs are its owner's alone


def test_pool_reconnects_once_when_a_connection_dropped(home: Path, tmp_path: Path, herd: SyncClient) -> None:
    """A connection that died between two steps (here: its sshd session process killed) is re-opened."""
    if not any(os.access(p, os.X_OK) for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd")):
        pytest.skip("needs OpenSSH's sshd (one process per connection)")
    os.environ["CLOUDHERD_LOCAL_SERVER"] = "openssh"
    try:
        infra_id = herd.up(write_spec(tmp_path / "drop", "name: drop\ngroups:\n  n:\n    count: 1\n"))
    finally:
        del os.environ["CLOUDHERD_LOCAL_SERVER"]
    from cloudherd.engine.context import ensure_identity
    from cloudherd.engine.reach import Reach
    from cloudherd.remote.pool import ConnectionPool

    infra = herd.aio.store.infrastructure(infra_id)  # the engine's rows: this test drives the pool directly
    node = herd.aio.store.nodes(infra_id)[0]
    identity = ensure_identity(herd.aio.store, infra.ssh_key_path)
    target = Reach(herd.aio.store, infra, identity).target(node)
    listener = int((node_folders(home)["drop-n-1"] / "sshd.pid").read_text().split()[0])

    async def scenario() -> tuple[str, str, int]:
        async with ConnectionPool(identity.key) as pool:
            first = await pool.run(target, "echo one")
            conn = await pool.connection(target)  # the pooled one (no new handshake)
            killed = []
            for entry in Path("/proc").iterdir():  # the session processes of our one connection
                try:
                    if entry.name.isdigit() and (entry / "stat").read_text().rsplit(")", 1)[-1].split()[1] == str(
                            listener):
                        os.kill(int(entry.name), signal.SIGKILL)
                        killed.append(int(entry.name))
                except OSError:
                    continue
            assert killed, "found no session process to kill"
            await async_wait_until(lambda: all(process_gone(pid) for pid in killed), timeout=30,
                                   what=f"the killed session processes {killed} to exit")
            await async_wait_until(conn.is_closed, timeout=30, what="the client to see its connection dropped")
            second = await pool.run(target, "echo two")
            return first.stdout, second.stdout, pool.opened

    assert asyncio.run(scenario()) == ("one\n", "two\n", 2)
    herd.down(infra_id)
