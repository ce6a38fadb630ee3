"""OGC's own published spec files and scripts (github adam-stokes/ogc, every 2.x and 3.0 release), brought up on
local nodes with their provider switched to ``local`` and nothing else changed; and OGC's documented features
one by one in files written as OGC's docs write them.

The published files are read from a clone of OGC's repository (``CLOUDHERD_OGC_REPO``, by default the one
``fetch github:adam-stokes/ogc`` leaves in ``/work/.mirror``).  Their scripts install Elastic's agent from the
network, with ``sudo`` and ``wget``; a node here has neither network nor ``sudo``, so the test stands in for
those two commands and for the two downloads (pacapt, the agent's tarball) with a few lines of shell, shared
into the nodes' sandboxes (``CLOUDHERD_LOCAL_SHARED``) at the paths the scripts use.  The scripts themselves run
as published: Mako-rendered with OGC's names, their teardown at ``down``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from helpers import cli, require_sandbox

REPO = Path(os.environ.get("CLOUDHERD_OGC_REPO", "/work/.mirror/adam-stokes+ogc/repo"))
SPEC_FILES = ("ogc.yml", "ogc.toml", "tests/fixtures/spec.yml", "tests/fixtures/spec.toml",
              "tests/fixtures/spec-interpolated.toml")
AGENT = {"OGC_ELASTIC_AGENT_VERSION": "8.1.0", "OGC_ELASTIC_AGENT_SHA": "abc123",
         "OGC_FLEET_URL": "http://fleet.example", "OGC_FLEET_ENROLLMENT_TOKEN": "enroll-secret-42"}


def git(*args: str) -> str:
    if not (REPO / ".git").exists() and not (REPO / "HEAD").exists():
        pytest.skip(f"no clone of OGC's repository at {REPO} (fetch github:adam-stokes/ogc; CLOUDHERD_OGC_REPO)")
    return subprocess.run(["git", f"--git-dir={REPO / '.git' if (REPO / '.git').exists() else REPO}", *args],
                          check=True, capture_output=True, text=True).stdout


def release(tag: str, into: Path) -> Path:
    """The release's files (``git archive``), each spec's provider switched to local."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", f"--git-dir={REPO / '.git' if (REPO / '.git').exists() else REPO}",
                              "archive", tag], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    for name in SPEC_FILES:
        spec = into / name
        if spec.is_file():
            text = spec.read_text()
            spec.write_text(re.sub(r"^(\s*provider\s*[:=]\s*)\"?(aws|google)\"?", r'\1"local"', text, flags=re.M))
    return into


def published() -> list[tuple[str, str]]:
    """(release, file) for every distinct spec file of OGC's 2.x and 3.0 releases."""
    seen: dict[str, tuple[str, str]] = {}
    tags = [t for t in git("tag").split() if re.match(r"^[23]\.", t)]
    for tag in sorted(tags, key=lambda t: [int(p) if p.isdigit() else -1 for p in re.split(r"[.-]", t)]):
        for name in SPEC_FILES:
            blob = subprocess.run(["git", f"--git-dir={REPO / '.git' if (REPO / '.git').exists() else REPO}",
                                   "rev-parse", "--verify", "-q", f"{tag}:{name}"], capture_output=True, text=True)
            if blob.returncode == 0:
                seen.setdefault(blob.stdout.strip(), (tag, name))
    return list(seen.values())


def test_every_published_spec_file_validates(home: Path, tmp_path: Path) -> None:
    files = published()
    assert files, "no spec file found in OGC's releases"
    failures = []
    for tag, name in files:
        root = tmp_path / tag if (tmp_path / tag).is_dir() else release(tag, tmp_path / tag)
        checked = cli("validate", name, env=AGENT, cwd=root)
        if checked.returncode != 0:
            failures.append((tag, name, checked.stderr.strip()))
        else:
            assert checked.stdout.startswith(f"{name}: ok ("), checked.stdout
    for tag, name, error in failures:  # only what OGC itself could not run: a script its repository lacks
        missing = re.search(r"no such file or folder: (\S+)", error)
        assert missing, f"{tag} {name}: {error}"
        listed = git("ls-tree", "-r", "--name-only", tag).split()
        assert not any(path == missing.group(1) or path.startswith(missing.group(1) + "/") for path in listed), error
    assert len(failures) < len(files)


def stand_ins(folder: Path) -> dict[str, str]:
    """``sudo`` and ``wget`` for the nodes, pacapt and the agent's tarball as wget's downloads, and a folder
    where the stand-ins write down what the scripts made them do; as CLOUDHERD_LOCAL_SHARED shares them."""
    for part in ("bin", "mirror", "record", "usrlocal", "build"):
        (folder / part).mkdir(parents=True)
    record = folder / "record"
    (folder / "bin" / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (folder / "bin" / "wget").write_text(
        '#!/bin/sh\n[ "$1" = "-O" ] || exit 2\n'
        f'src="{folder / "mirror"}/$(basename "$3")"\n'
        '[ -f "$src" ] || { echo "wget: $3: 404 Not Found" >&2; exit 8; }\ncp "$src" "$2"\n')
    (folder / "mirror" / "pacapt").write_text(f'#!/bin/sh\necho "pacapt $*" >> {record}/pacapt-$CLOUDHERD_NODE\n')
    agent = folder / "build" / f"elastic-agent-{AGENT['OGC_ELASTIC_AGENT_VERSION']}-linux-x86_64"
    agent.mkdir()
    (agent / "elastic-agent").write_text(
        '#!/bin/sh\ncase "$1" in\n'
        f'  install) cp "$0" /usr/local/bin/elastic-agent; echo "$*" > {record}/enrolled-$CLOUDHERD_NODE;;\n'
        f'  uninstall) echo "$*" > {record}/uninstalled-$CLOUDHERD_NODE;;\nesac\n')
    for script in [*(folder / "bin").iterdir(), folder / "mirror" / "pacapt", agent / "elastic-agent"]:
        script.chmod(0o755)
    with tarfile.open(folder / "mirror" / f"{agent.name}.tar.gz", "w:gz") as tar:
        tar.add(agent, arcname=agent.name)
    shared = [f"{folder / 'bin'}:/usr/local/sbin", f"{folder / 'usrlocal'}:/usr/local/bin",
              str(folder / "mirror"), str(record)]
    return {"CLOUDHERD_LOCAL_SHARED": ",".join(shared)}


@pytest.mark.scenario
def test_ogc_2_1_7_spec_comes_up_installs_the_agent_and_tears_it_down(home: Path, tmp_path: Path) -> None:
    require_sandbox()
    git("rev-parse", "2.1.7")
    root = release("2.1.7", tmp_path / "ogc")
    env = {**AGENT, **stand_ins(tmp_path / "standins")}
    up = cli("up", "ogc.yml", env=env, cwd=root)
    assert up.returncode == 0, up.stderr
    record = tmp_path / "standins" / "record"
    node = "ci-elastic-agent-debian-1"
    # 02-elastic-agent, rendered with functions.mako's defs and env: pacapt set up, rsync installed, the agent
    # downloaded, unpacked and installed with the fleet's URL and token
    assert (record / f"pacapt-{node}").read_text() == "pacapt install --noconfirm rsync\n"
    assert (record / f"enrolled-{node}").read_text() == \
        f"install -f --url={AGENT['OGC_FLEET_URL']} --enrollment-token={AGENT['OGC_FLEET_ENROLLMENT_TOKEN']}\n"
    assert not (record / f"uninstalled-{node}").exists()  # the teardown did not run at deploy
    logs = cli("logs", "ci", env=env).stdout
    assert "== ci-elastic-agent-debian-1 teardown" not in logs
    assert AGENT["OGC_FLEET_ENROLLMENT_TOKEN"] not in logs  # set -x echoed it: masked
    # the spec's folder was copied to remote-path (without .git, .venv, artifacts: its exclude)
    listed = cli("exec", "ci", "ls -a /home/ubuntu/ogc", env=env).stdout
    assert "fixtures" in listed and "ogc.yml" in listed
    down = cli("down", "ci", env=env)
    assert down.returncode == 0, down.stderr
    assert (record / f"uninstalled-{node}").read_text() == "uninstall -f\n"  # OGC's teardown, at the end


@pytest.mark.scenario
@pytest.mark.parametrize("tag", ["2.1.10", "3.0.0"])
def test_ogc_toml_comes_up_and_its_scripts_see_every_node(home: Path, tmp_path: Path, tag: str) -> None:
    require_sandbox()
    git("rev-parse", tag)
    root = release(tag, tmp_path / "ogc")
    up = cli("up", "ogc.toml", env=AGENT, cwd=root)
    assert up.returncode == 0, up.stderr
    status = json.loads(cli("status", "ci", "--json").stdout)
    names = sorted(n["name"] for n in status["nodes"])
    assert names and all(n["state"] == "ready" for n in status["nodes"])
    # 01-show-metadata: db.get_nodes().unwrap() lists every node, and writes its layout's tags when it has some
    # (3.0's layout has tags = [] and its labels apart: `% if obj.layout.tags:` is false there)
    import tomllib

    written = tomllib.loads((root / "ogc.toml").read_text())["layouts"]["elastic-agent-ubuntu"]["tags"]
    tags = {r["node"]: r for r in json.loads(cli("exec", "ci", "cat $HOME/tags.txt", "--json").stdout)}
    assert sorted(tags) == names
    for result in tags.values():
        assert (result["stdout"] == ", ".join(written) + "\n") if written else result["exit_code"] == 1
    logs = cli("logs", "ci").stdout
    for name in names:
        assert f"Name: {name} || Connection: ubuntu@" in logs and "|| Provider: local" in logs
    down = cli("down", "ci")
    assert down.returncode == 0, down.stderr
    assert "Im tore down!" in cli("logs", "ci").stdout  # the release's scripts/teardown, run at down
