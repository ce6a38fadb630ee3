"""Local nodes as separate machines: what a script writes stays on its node, ``ps`` sees only the node, a
memory hog is stopped at its size, and where no sandbox can be made ``up`` says so (or refuses)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from helpers import cli, node_folders, node_processes, write_spec

from cloudherd.api import SyncClient


def _probe_deb(folder: Path) -> Path:
    """A real (tiny) Debian package, built here: installing it is what ``apt-get install`` does on a node,
    without a network."""
    root = folder / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: cloudherd-probe\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.invalid>\n"
        "Description: a probe\n")
    tool = root / "usr" / "bin" / "cloudherd-probe"
    tool.write_text("#!/bin/sh\necho probe-installed\n")
    tool.chmod(0o755)
    deb = folder / "cloudherd-probe.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True,
                   capture_output=True)
    shutil.rmtree(root)
    return deb


def test_what_a_script_writes_stays_on_its_node_and_goes_with_it(sandboxed: Path, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    deb = _probe_deb(tmp_path)
    script = (f"echo probe > /etc/cloudherd-probe-{tag}\necho x > /tmp/x-{tag}\necho y > ~/x-{tag}\n"
              f"dpkg -i {deb}\n")  # the package file is in the test's folder, shared with the nodes
    spec = write_spec(tmp_path / "iso", "name: iso\ngroups:\n  one:\n    count: 1\n    scripts: [probe.sh]\n"
                      "  other:\n    count: 1\n", {"probe.sh": script})
    herd = SyncClient()
    herd.up(spec)
    host_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    paths = [f"/etc/cloudherd-probe-{tag}", f"/tmp/x-{tag}", f"~/x-{tag}", "/usr/bin/cloudherd-probe"]
    check = " && ".join(f"test -f {p}" for p in paths) + " && cloudherd-probe && dpkg -s cloudherd-probe"

    # on its node: all of it, in a new SSH session
    [mine] = herd.exec("iso", check, node="iso-one-1")
    assert mine.ok and "probe-installed" in mine.stdout and "Status: install ok installed" in mine.stdout, mine
    # on the host and on the sibling: none of it
    for path in [Path(f"/etc/cloudherd-probe-{tag}"), Path(f"/tmp/x-{tag}"), host_home / f"x-{tag}",
                 Path("/usr/bin/cloudherd-probe")]:
        assert not path.exists(), path
    assert subprocess.run(["dpkg", "-s", "cloudherd-probe"], capture_output=True).returncode != 0
    [sibling] = herd.exec("iso", " || ".join(f"test -e {p}" for p in paths) + " || dpkg -s cloudherd-probe",
                          node="iso-other-1")
    assert not sibling.ok, sibling
    # nor the user's own home (credentials, shell start-up): a node's home is its own
    secret = host_home / f".cloudherd-host-only-{tag}"
    secret.write_text("host\n")
    try:
        [home_seen] = herd.exec("iso", f"test -e ~/{secret.name} || echo unseen", node="iso-one-1")
        assert home_seen.stdout == "unseen\n", home_seen
    finally:
        secret.unlink()
    # a node sees neither cloudherd's folder (database, keys) nor the other nodes
    [hidden] = herd.exec("iso", f"ls -a {sandboxed}; ls {sandboxed / 'local'}", node="iso-one-1")
    folder = node_folders(sandboxed)["iso-one-1"]
    assert set(hidden.stdout.split()) <= {".", "..", "local", folder.name}, hidden.stdout
    assert "cloudherd.db" not in hidden.stdout and "id_ed25519" not in hidden.stdout

    status = cli("status", "iso", "--json")
    assert all("isolated" in (n["machine"] or "") for n in json.loads(status.stdout)["nodes"])
    folders = list(node_folders(sandboxed).values())
    herd.down("iso")
    assert not any(f.exists() for f in folders)  # its upper layer (everything it wrote) went with it
    assert node_processes(sandboxed / "local") == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert not any(str(f) in mounts for f in folders)


def test_a_node_sees_only_its_own_processes_and_host_name(sandboxed: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "ps", "name: ps\ngroups:\n  n:\n    count: 2\n")
    herd = SyncClient()
    herd.up(spec)
    for name in ("ps-n-1", "ps-n-2"):
        [seen] = herd.exec("ps", "hostname; ps -e -o pid=,comm=", node=name)
        assert seen.ok, seen
        host_name, *processes = seen.stdout.splitlines()
        assert host_name == name
        commands = [line.split(None, 1)[1] for line in processes]
        # the node's init (its supervisor), its sshd and this session: nothing of the host, nor of the sibling
        assert processes[0].split()[0] == "1" and commands.count("sshd") <= 3, processes
        assert len(processes) < 10 and not {"pytest", "python", "python3"} & set(commands), processes
    herd.down("ps")


def test_a_memory_hog_is_stopped_at_its_size_and_status_reports_limits(sandboxed: Path, tmp_path: Path) -> None:
    text = ("name: hog\ngroups:\n  tight:\n    count: 1\n    size: {cpus: 0.5, memory: 64M}\n"
            "  roomy:\n    count: 1\n    size: small\n")
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "hog", text))
    hog = "head -c 300M /dev/zero | tail > /dev/null && echo survived"  # tail keeps a line-less input in memory
    [tight] = herd.exec("hog", hog, node="hog-tight-1")
    assert not tight.ok and "survived" not in tight.stdout, tight
    [roomy] = herd.exec("hog", hog, node="hog-roomy-1")  # 300M is within small's 1 GiB
    assert roomy.ok and "survived" in roomy.stdout, roomy
    [alive] = herd.exec("hog", "echo still-here", node="hog-tight-1")  # the node itself goes on
    assert alive.ok and alive.stdout == "still-here\n"
    machines = {n.name: n.machine or "" for n in herd.status("hog").nodes}
    assert "0.5 cpu, 64 MiB" in machines["hog-tight-1"] and "1 cpu, 1 GiB" in machines["hog-roomy-1"]
    text_status = cli("status", "hog").stdout
    assert "64 MiB" in text_status and "isolated" in text_status
    herd.down("hog")


def test_shared_folders_are_the_one_way_out(sandboxed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDHERD_LOCAL_SHARED")
    outside = tmp_path / "exchange"
    outside.mkdir()
    text = (f"name: shared\nproviders:\n  local: {{type: local, shared: ['{outside}:/srv/exchange']}}\n"
            "groups:\n  n:\n    count: 2\n    scripts: [w.sh]\n")
    spec = write_spec(tmp_path / "sh", text, {"w.sh": "hostname > /srv/exchange/$(hostname)\n"
                                                      f"echo no > {tmp_path}/leak\n"})
    herd = SyncClient()
    herd.up(spec)
    assert sorted(p.name for p in outside.iterdir()) == ["shared-n-1", "shared-n-2"]
    assert (outside / "shared-n-1").read_text() == "shared-n-1\n"
    assert not (tmp_path / "leak").exists()  # the test's folder is not shared here
    herd.down("shared")
    bad = write_spec(tmp_path / "bad", "name: bad\nproviders:\n  local: {type: local, shared: ['/no/such:/x']}\n"
                     "groups:\n  n:\n    count: 1\n")
    refused = cli("up", str(bad))
    assert refused.returncode != 0 and "is not a folder on this computer" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_without_a_sandbox_up_says_so_once_and_required_refuses(home: Path, tmp_path: Path) -> None:
    """The built-in SSH server runs on the host: a real case where nodes cannot be isolated."""
    spec = write_spec(tmp_path / "open", "name: open\nproviders:\n  local: {type: local, server: builtin}\n"
                      "groups:\n  n:\n    count: 2\n")
    said = cli("up", str(spec))
    assert said.returncode == 0, said.stderr
    told = (said.stdout + said.stderr).count("local nodes are not isolated")
    assert told == 1 and "scripts run on this computer" in said.stdout + said.stderr
    assert cli("down", "open").returncode == 0

    quiet = write_spec(tmp_path / "quiet", "name: quiet\nproviders:\n  local: {type: local, server: builtin, "
                       "isolation: none}\ngroups:\n  n:\n    count: 1\n")
    shown = cli("up", str(quiet))
    assert shown.returncode == 0 and "not isolated" not in shown.stdout + shown.stderr
    assert cli("down", "quiet").returncode == 0

    strict = write_spec(tmp_path / "strict", "name: strict\nproviders:\n  local: {type: local, server: builtin, "
                        "isolation: required}\ngroups:\n  n:\n    count: 1\n")
    refused = cli("up", str(strict))
    assert refused.returncode != 0 and "isolation: required" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert node_folders(home) == {}  # nothing made, nothing left
    typo = write_spec(tmp_path / "typo", "name: typo\nproviders:\n  local: {type: local, isolation: maybe}\n"
                      "groups:\n  n:\n    count: 1\n")
    bad = cli("validate", str(typo))
    assert bad.returncode == 2 and "typo" not in bad.stdout and ":3:" in bad.stderr and "isolation" in bad.stderr


WEB = Path(__file__).resolve().parents[3] / "examples" / "web" / "cloudherd.yml"


def test_the_web_example_serves_nginx_from_three_nodes_and_installs_nothing_here(sandboxed: Path) -> None:
    """examples/web: ``apt-get install nginx`` on three isolated nodes (from the distribution's mirror, as on
    a cloud machine); each answers on its own address; after ``down`` the host has no nginx."""
    def host_has_nginx() -> tuple[bool, bool, bool]:
        installed = subprocess.run(["dpkg", "-s", "nginx"], capture_output=True).returncode == 0
        return installed, Path("/etc/nginx").exists(), Path("/usr/sbin/nginx").exists()

    before = host_has_nginx()
    up = cli("up", str(WEB), timeout=600)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    nodes = json.loads(cli("status", "web", "--json").stdout)["nodes"]
    assert len(nodes) == 3 and all(n["state"] == "ready" and "isolated" in n["machine"] for n in nodes)
    for node in nodes:
        page = httpx.get(f"http://{node['address']}/", timeout=10)
        assert page.status_code == 200 and page.text == f"hello from {node['name']} ({node['name']})\n"
        assert "nginx" in page.headers.get("server", "")
    assert host_has_nginx() == before  # while it runs, too
    down = cli("down", "web")
    assert down.returncode == 0, down.stderr
    assert host_has_nginx() == before
    assert node_processes(sandboxed / "local") == []
