"""A user who is not root gets nodes that are machines of their own too: a user namespace (the node's root is
that user outside), a copy-on-write root, a network of its own (slirp4netns).  Run through the CLI as a
throw-away account the session makes (see tests/support/user_harness.py); what the host sees checked as root."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import CHROOT_ESCAPE, require
from user_harness import User, made_user, run_spec, unavailable

from cloudherd.providers.local import sandbox as local_sandbox

SPEC = """\
name: {name}
groups:
  web:
    count: {count}
    scripts: [scripts/]
"""
SCRIPT = "#!/bin/sh\necho node-only > /etc/{marker}\n"


@pytest.fixture(scope="module", params=["openssh", "builtin"])
def user(request: pytest.FixtureRequest) -> Iterator[User]:
    """An account with subordinate ids (its nodes run OpenSSH, privilege separation under the mapping) and
    one without (its nodes run cloudherd's own SSH server)."""
    missing = [tool for tool in local_sandbox.ROOTLESS_TOOLS if shutil.which(tool) is None]
    if request.param == "openssh":
        missing += [tool for tool in ("newuidmap", "sshd") if shutil.which(tool) is None
                    and not Path(f"/usr/sbin/{tool}").exists()]
    require(unavailable() or (f"{', '.join(missing)} not installed" if missing else None), "the rootless tests")
    with made_user(subordinate_ids=request.param == "openssh") as made:
        yield made


@pytest.fixture(scope="module")
def fleet(user: User) -> Iterator[tuple[User, Path, str]]:
    """Two rootless nodes, up for the module's tests; each wrote a marker in its /etc."""
    home = user.folder("fleet")
    marker = f"cloudherd-rootless-{uuid.uuid4().hex[:8]}"
    spec = run_spec(user, home, "rl", SPEC.format(name="rl", count=2), {"scripts/10.sh": SCRIPT.format(marker=marker)})
    made = user.cloudherd(home, "up", str(spec))
    assert made.returncode == 0, made.stdout + made.stderr
    assert "not isolated" not in made.stdout + made.stderr
    try:
        yield user, home, marker
    finally:
        user.cloudherd(home, "down", "rl")


def _exec(fleet: tuple[User, Path, str], command: str, node: str = "rl-web-1") -> str:
    user, home, _ = fleet
    done = user.cloudherd(home, "exec", "rl", "--node", node, command)
    return done.stdout + done.stderr


def test_a_node_is_a_machine_of_its_own(fleet: tuple[User, Path, str]) -> None:
    user, home, marker = fleet
    assert not Path("/etc", marker).exists(), "a rootless node's write to /etc landed on the host"
    seen = _exec(fleet, f"hostname; id -u; cat /etc/{marker}")
    assert "rl-web-1" in seen and "node-only" in seen, seen
    assert "\n0\n" in seen.replace("rl-web-1 | ", ""), f"the node's user is not its root: {seen}"
    # root inside a node is the user outside: every process of the node is the account's
    servers = [line for line in user.processes() if str(home) in line and (
        "[listener]" in line or ("python" in line.split()[1] and "local_server" in line))]
    assert len(servers) == 2, user.processes()
    for line in servers:
        pid = line.split()[0]
        uid = next(row.split()[1] for row in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if row.startswith("Uid:"))
        assert int(uid) == user.uid


def test_the_user_s_own_files_and_cloudherd_s_are_out_of_sight(fleet: tuple[User, Path, str]) -> None:
    user, home, _ = fleet
    (home / "secret.txt").write_text("the user's own")
    os.chown(home / "secret.txt", user.uid, user.gid)
    seen = _exec(fleet, f"cat {home}/secret.txt; umount -l {home / 'cloudherd'}; ls -A {home / 'cloudherd'}")
    assert "the user's own" not in seen and "state.db" not in seen and "keys" not in seen, seen


def test_a_chroot_escape_finds_no_way_out(fleet: tuple[User, Path, str]) -> None:
    user, _home, _ = fleet
    # a folder of the account on the host (the node's /tmp is its own): only an escape reaches it
    outside = user.folder("outside")
    marker = outside / "escaped"
    script = user.write(outside / "escape.py", CHROOT_ESCAPE)
    share_free = f"python3 - {marker} <<'EOF'\n{script.read_text()}EOF"
    _exec(fleet, share_free)
    assert not marker.exists(), "a rootless node's root wrote a file on the host"


def test_kernel_and_disks_are_out_of_reach(fleet: tuple[User, Path, str]) -> None:
    knob = Path("/proc/sys/net/ipv4/ip_default_ttl")
    before = knob.read_text()
    seen = _exec(fleet, f"echo 77 > {knob} && echo wrote-sysctl; ls /dev; "
                        "mount /dev/vda /mnt 2>&1 && echo mounted; "
                        "echo 0 > /sys/fs/cgroup/cgroup.procs 2>&1 && echo moved; "
                        "grep CapBnd /proc/self/status")
    assert knob.read_text() == before and "wrote-sysctl" not in seen, seen
    assert "mounted" not in seen and "moved" not in seen, seen
    bounding = int(next(line for line in seen.splitlines() if "CapBnd" in line).split()[-1], 16)
    assert not bounding & (1 << 21), "CAP_SYS_ADMIN is still in a node's bounding set"
    devices = {word for line in seen.splitlines() for word in line.split("|")[-1].split()}
    assert not {"vda", "sda", "mem", "kmsg"} & devices, seen


def test_host_loopback_services_are_out_of_reach(fleet: tuple[User, Path, str]) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        seen = _exec(fleet, f"python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{port}/', "
                            "timeout=3).status)\" 2>&1 | tail -1; python3 -c \"import urllib.request as u; "
                            f"print(u.urlopen('http://10.0.2.2:{port}/', timeout=3).status)\" 2>&1 | tail -1")
    finally:
        server.shutdown()
        server.server_close()
    assert "200" not in seen, seen


def test_apt_get_installs_inside_a_node_and_nowhere_else(fleet: tuple[User, Path, str]) -> None:
    try:
        urllib.request.urlopen("http://deb.debian.org/debian/dists/bookworm/Release", timeout=5).close()
    except OSError as exc:
        pytest.skip(f"the Debian mirror is out of reach from this computer ({exc})")
    if Path("/usr/games/sl").exists():
        pytest.skip("the host has sl installed already")
    seen = _exec(fleet, "apt-get update -qq && apt-get install -y -qq sl >/dev/null 2>&1; ls /usr/games/sl")
    assert "/usr/games/sl" in seen and "No such file" not in seen, seen
    assert not Path("/usr/games/sl").exists(), "apt-get in a rootless node installed on the host"


def test_down_leaves_nothing_running_and_a_killed_node_takes_its_network(user: User) -> None:
    home = user.folder("gone")
    spec = run_spec(user, home, "gone", SPEC.format(name="gone", count=1), {"scripts/10.sh": "#!/bin/sh\ntrue\n"})
    assert user.cloudherd(home, "up", str(spec)).returncode == 0
    status = json.loads(user.cloudherd(home, "status", "gone", "--json").stdout)
    [node] = status["nodes"]
    mine = [line for line in user.processes() if str(home) in line or node["name"] in line]
    assert any("slirp4netns" in line for line in mine), mine
    # killed as a crash would (cloudherd not asked): slirp4netns sees its exit pipe close and ends too
    for line in mine:
        if line.split()[1] == "unshare" and node["name"] in line:
            os.kill(int(line.split()[0]), 9)
    for line in mine:
        if "hostname" in line and node["name"] in line:
            os.kill(int(line.split()[0]), 9)
    deadline = time.monotonic() + 30
    def slirp_left() -> list[str]:
        return [line for line in user.processes() if "slirp4netns" in line and str(home) in line]

    while slirp_left() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not slirp_left(), user.processes()
    done = user.cloudherd(home, "down", "gone")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [line for line in user.processes() if str(home) in line], user.processes()
