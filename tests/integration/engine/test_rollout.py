"""Rolling updates on real local nodes: a good release rolls batch by batch and the healthy count, sampled from
outside all along (each node's web server asked directly), never drops below the group's size;
a bad release stops at its first batch and rolls back; --no-rollback stops and keeps; a kill mid-rollout is
resumed by the next up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import cli, wait_until

SPEC = """\
name: roll
groups:
  web:
    count: 6
    scripts: [app/deploy.sh]
    health: {urls: ["http://{{ node.address }}:8080/"], ssh: false, interval: 0.2s, grace: 0s, timeout: 2s,
             unhealthy_after: 2}
    update: {strategy: rolling, max_surge: 1, min_healthy_seconds: 0.5s, timeout: 60s}
"""
# the release: a file saying which, and a small web server on the node answering 200 while it says "good"
# (500 otherwise); it carries the node's marker, so terminating the node stops it
DEPLOY = """\
echo "{text}" > release.txt
cat > serve.py <<'PY'
import http.server
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        good = open("release.txt").read().startswith("good")
        self.send_response(200 if good else 500)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("{{{{ node.address }}}}", 8080), Answer).serve_forever()
PY
nohup python3 serve.py > serve.log 2>&1 < /dev/null &
# ready means serving: the script ends once its server listens (a busy machine starts python slowly, and the
# group's health gate, 2 checks 0.2 s apart, would fail a node whose server is still starting)
python3 - <<'PY'
import socket, sys, time
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        socket.create_connection(("{{{{ node.address }}}}", 8080), 0.5).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit("the server did not listen within 30 s")
PY
"""


def _release(folder: Path, text: str, update: str = "", unhealthy_after: str = "2") -> Path:
    (folder / "app").mkdir(parents=True, exist_ok=True)
    (folder / "app" / "deploy.sh").write_text(DEPLOY.format(text=text))
    path = folder / "cloudherd.yml"
    path.write_text(SPEC.replace("timeout: 60s}", f"timeout: 60s{update}}}")
                    .replace("unhealthy_after: 2", f"unhealthy_after: {unhealthy_after}"))
    return path


def _healthy_from_outside(home: Path) -> dict[str, str]:
    """Node name -> its release, for each node whose web server answers 200 (asked directly, not through
    cloudherd)."""
    found = {}
    root = home / "local"
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            meta = json.loads((folder / "node.json").read_text())
            release = (folder / "work" / "release.txt").read_text().strip()
            with urllib.request.urlopen(f"http://{meta['address']}:8080/", timeout=0.5) as answer:
                healthy = answer.status == 200
        except (OSError, ValueError, KeyError):  # refused, 500 (HTTPError), half-written files
            continue
        if healthy:
            found[meta["name"]] = release
    return found


class Sampler:
    """Counts the healthy nodes from outside every few milliseconds while a rollout runs."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.counts: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.counts.append(len(_healthy_from_outside(self.home)))
            self._stop.wait(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def fleet(home: Path, tmp_path: Path) -> Iterator[Path]:
    """Six healthy nodes of release v1."""
    spec = _release(tmp_path, "good v1")
    up = cli("up", str(spec))
    assert up.returncode == 0, up.stderr
    # each node's web server is started in the background by its script: up may end before the last one listens
    wait_until(lambda: len(_healthy_from_outside(home)) == 6, timeout=60, what="six healthy nodes of v1")
    yield spec


def _history(ref: str = "roll") -> list[tuple[int, str, str]]:
    rows = json.loads(cli("history", ref, "--json").stdout)
    return [(r["number"], r["origin"], r["state"]) for r in rows]


def test_a_good_release_rolls_and_never_drops_below_six(home: Path, tmp_path: Path, fleet: Path) -> None:
    before = set(_healthy_from_outside(home))
    _release(tmp_path, "good v2")
    plan = json.loads(cli("plan", str(fleet), "--json").stdout)["groups"][0]
    assert (sorted(plan["rolling"]), plan["surge"], plan["scripts"]) == (sorted(before), 1, {})  # replaced, not re-run
    shown = cli("plan", str(fleet)).stdout
    assert "roll 6 in 6 batch(es) of 1" in shown and "rolling, 1 at a time, new nodes beside the old" in shown
    with Sampler(home) as sampler:
        up = cli("up", str(fleet))
    assert up.returncode == 0, up.stderr
    assert len(sampler.counts) > 20 and min(sampler.counts) >= 6, sampler.counts
    assert max(sampler.counts) <= 7  # max_surge 1: one new node beside the six at a time
    after = _healthy_from_outside(home)
    assert sorted(after.values()) == ["good v2"] * 6
    assert not set(after) & before  # every node was replaced, none re-run in place
    assert "batch 6/6" in up.stderr
    assert _history() == [(1, "up", "applied"), (2, "up", "applied")]


@pytest.mark.parametrize("unhealthy_after", ["2", "0.5s"])  # failed checks in a row, or failing that long
def test_a_bad_release_stops_at_its_first_batch_and_rolls_back(home: Path, tmp_path: Path, fleet: Path,
                                                                 unhealthy_after: str) -> None:
    before = _healthy_from_outside(home)
    _release(tmp_path, "bad v2", unhealthy_after=unhealthy_after)
    with Sampler(home) as sampler:
        up = cli("up", str(fleet))
    assert up.returncode == 1
    lines = up.stderr.strip().splitlines()
    assert lines[-1].startswith("error: up of roll failed: web: batch 1 failed its health gate: roll-web-7: ")
    assert lines[-1].endswith("; rolled back to revision 1")
    assert "batch 2/" not in up.stderr  # it stopped at the first batch
    assert min(sampler.counts) >= 6, sampler.counts
    assert _healthy_from_outside(home) == before  # the same six nodes of v1, untouched
    assert _history() == [(1, "up", "applied"), (2, "up", "failed"), (3, "rollback to 1 (automatic)", "applied")]
    status = json.loads(cli("status", "roll", "--json").stdout)
    assert status["state"] == "ready" and len([n for n in status["nodes"] if n["state"] == "ready"]) == 6


def test_no_rollback_stops_and_keeps(home: Path, tmp_path: Path, fleet: Path) -> None:
    before = _healthy_from_outside(home)
    _release(tmp_path, "bad v2")
    up = cli("up", str(fleet), "--no-rollback")
    assert up.returncode == 1
    assert "stopped there (--no-rollback)" in up.stderr.strip().splitlines()[-1]
    assert _healthy_from_outside(home) == before  # the failed batch's node went; the old ones stay
    assert _history() == [(1, "up", "applied"), (2, "up", "failed")]
    status = json.loads(cli("status", "roll", "--json").stdout)
    assert status["state"] == "failed"
    _release(tmp_path, "good v3")  # the fix goes out over what was kept
    fixed = cli("up", str(fleet))
    assert fixed.returncode == 0, fixed.stderr
    assert sorted(_healthy_from_outside(home).values()) == ["good v3"] * 6


def test_a_rollout_killed_midway_is_resumed_by_the_next_up(home: Path, tmp_path: Path, fleet: Path) -> None:
    _release(tmp_path, "good v2")
    started = subprocess.Popen([sys.executable, "-m", "cloudherd", "up", str(fleet)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        wait_until(lambda: "v2" in " ".join(_healthy_from_outside(home).values())
                   and len(_healthy_from_outside(home)) >= 6, timeout=60, what="the first v2 node")
        wait_until(lambda: sum(v == "good v2" for v in _healthy_from_outside(home).values()) >= 2, timeout=60,
                   what="a second batch")
    finally:
        started.send_signal(signal.SIGKILL)  # the CLI alone, by its pid: the nodes live in sessions of their own
        started.wait(timeout=30)
    mixed = _healthy_from_outside(home)
    assert 6 <= len(mixed) <= 7 and {"good v1", "good v2"} == set(mixed.values())
    resumed = cli("up", str(fleet))
    assert resumed.returncode == 0, resumed.stderr
    after = _healthy_from_outside(home)
    assert sorted(after.values()) == ["good v2"] * 6
    live = [n for n in json.loads(cli("status", "roll", "--json").stdout)["nodes"] if n["state"] != "terminated"]
    assert len(live) == 6  # nothing leaked by the kill, nothing made twice
    folders = [f for f in (home / "local").iterdir() if (f / "node.json").exists()]
    assert len(_healthy_from_outside(home)) == len(folders)


def test_a_canary_pauses_then_resumes_or_aborts(home: Path, tmp_path: Path, fleet: Path) -> None:
    _release(tmp_path, "good v2")
    paused = cli("up", str(fleet), "--pause-after", "2")
    assert paused.returncode == 0, paused.stderr
    assert "roll is paused at revision 2: paused after 2 node(s), 4 to go" in paused.stderr
    assert sorted(_healthy_from_outside(home).values()) == ["good v1"] * 4 + ["good v2"] * 2
    state = json.loads(cli("rollout", "roll", "--json").stdout)
    assert (state["revision"], state["state"]) == (2, "paused")
    assert [(len(g["updated"]), len(g["behind"])) for g in state["groups"]] == [(2, 4)]
    assert "4 behind (4 batch(es) of 1)" in cli("rollout", "roll").stdout

    manage = cli("manage", "roll", "--once")  # a manager's pass neither goes on nor undoes a paused rollout
    assert manage.returncode == 0, manage.stderr
    assert sorted(_healthy_from_outside(home).values()) == ["good v1"] * 4 + ["good v2"] * 2

    resumed = cli("rollout", "roll", "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(_healthy_from_outside(home).values()) == ["good v2"] * 6
    assert json.loads(cli("rollout", "roll", "--json").stdout)["state"] == "applied"

    _release(tmp_path, "good v3", update=", pause_after: 1")  # the canary written in the spec this time
    assert "paused after 1 node(s), 5 to go" in cli("up", str(fleet)).stderr
    aborted = cli("rollout", "roll", "abort")
    assert aborted.returncode == 0, aborted.stderr
    assert sorted(_healthy_from_outside(home).values()) == ["good v2"] * 6
    assert _history()[-2:] == [(3, "up", "aborted"), (4, "rollback to 2", "applied")]
    again = cli("rollout", "roll", "abort")
    assert again.returncode != 0 and "no rollout in progress to abort" in again.stderr


def test_a_release_through_the_server_rolls_under_its_manager(home: Path, tmp_path: Path) -> None:
    """`up` through a server submits; the server's manager rolls the release on, with the same gates; history,
    rollout and rollback go over the server's routes."""
    from server_harness import Served, write_config

    (tmp_path / "server").mkdir()
    served = Served(home, write_config(tmp_path / "server", {"local": "local"}, interval=1)).start()
    try:
        env = {"CLOUDHERD_HOME": str(tmp_path / "client-home"), "CLOUDHERD_SERVER": served.url,
               "CLOUDHERD_TOKEN": served.token()}
        spec = _release(tmp_path / "src", "good v1")
        made = cli("up", str(spec), env=env, timeout=300)
        assert made.returncode == 0, made.stderr
        wait_until(lambda: len(_healthy_from_outside(home)) == 6, timeout=120, what="six v1 nodes")
        _release(tmp_path / "src", "good v2")
        with Sampler(home) as sampler:
            assert cli("up", str(spec), env=env, timeout=300).returncode == 0
            wait_until(lambda: sorted(_healthy_from_outside(home).values()) == ["good v2"] * 6, timeout=180,
                       what="the server's manager rolling v2 out")
        assert min(sampler.counts) >= 6, sampler.counts
        state = json.loads(cli("rollout", "roll", "--json", env=env).stdout)
        assert (state["revision"], state["state"]) == (2, "applied")
        history = json.loads(cli("history", "roll", "--json", env=env).stdout)
        assert [(r["number"], r["origin"], r["state"]) for r in history] == [(1, "submit", "applied"),
                                                                             (2, "submit", "applied")]
        back = cli("rollback", "roll", "1", env=env, timeout=300)
        assert back.returncode == 0, back.stderr
        assert sorted(_healthy_from_outside(home).values()) == ["good v1"] * 6
        assert cli("down", "roll", env=env, timeout=300).returncode == 0
    finally:
        served.stop()


def test_in_place_batches_re_run_scripts_and_roll_back_in_place(home: Path, tmp_path: Path, fleet: Path) -> None:
    """max_unavailable: 2 and only the scripts changed: the same six nodes take the release two at a time; a bad
    one fails its first batch, and those two nodes run the release before again."""
    before = _healthy_from_outside(home)
    _release(tmp_path, "good v2", update=", max_unavailable: 2")
    assert "rolling, 2 at a time, in place" in cli("plan", str(fleet)).stdout
    with Sampler(home) as sampler:
        up = cli("up", str(fleet))
    assert up.returncode == 0, up.stderr
    assert "batch 3/3: in place on" in up.stderr and "batch 4/" not in up.stderr
    after = _healthy_from_outside(home)
    assert set(after) == set(before) and sorted(after.values()) == ["good v2"] * 6  # same nodes, new release
    assert min(sampler.counts) >= 4, sampler.counts  # at most max_unavailable out at once

    _release(tmp_path, "bad v3", update=", max_unavailable: 2")
    bad = cli("up", str(fleet))
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].endswith("; rolled back to revision 2")
    assert "batch 2/" not in bad.stderr
    rolled = _healthy_from_outside(home)
    assert set(rolled) == set(before) and sorted(rolled.values()) == ["good v2"] * 6
    assert _history()[-2:] == [(3, "up", "failed"), (4, "rollback to 2 (automatic)", "applied")]
