"""The saved plan is the contract, as a user meets it on the command line: `plan --out` saves what `up
--plan-file` then executes exactly, and a plan whose infrastructure changed since is refused, changing nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from helpers import HELLO, cli


def _spec(tmp_path: Path) -> Path:
    folder = tmp_path / "hello"
    shutil.copytree(HELLO.parent, folder)
    return folder / "cloudherd.yml"


def test_up_executes_the_saved_plan_and_refuses_a_stale_one(home: Path, tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    saved = tmp_path / "hello.plan"
    planned = cli("plan", str(spec), "--out", str(saved))
    assert planned.returncode == 0, planned.stderr
    assert "3 to create" in planned.stdout and f"up --plan-file {saved}" in planned.stderr
    assert saved.stat().st_mode & 0o077 == 0  # it names the fleet: its owner's only

    made = cli("up", "--plan-file", str(saved), timeout=300)  # the spec is the plan's own
    assert made.returncode == 0, made.stderr
    infra_id = made.stdout.strip().splitlines()[-1]
    status = json.loads(cli("status", infra_id, "--json").stdout)
    assert [n["state"] for n in status["nodes"]] == ["ready"] * 3

    again = cli("up", "--plan-file", str(saved), timeout=120)  # the state it was computed from is gone
    assert again.returncode == 2, again.stderr
    assert "changed since the plan was computed" in again.stderr and "Traceback" not in again.stderr
    assert len(json.loads(cli("status", infra_id, "--json").stdout)["nodes"]) == 3  # nothing was done

    fresh = tmp_path / "fresh.plan"
    assert cli("plan", str(spec), "--out", str(fresh)).returncode == 0
    spec.write_text(spec.read_text().replace("count: 3", "count: 4"))
    edited = cli("up", str(spec), "--plan-file", str(fresh), timeout=120)
    assert edited.returncode == 2 and "spec of hello changed" in edited.stderr, edited.stderr
    assert cli("down", infra_id, timeout=300).returncode == 0


def test_a_saved_plan_is_refused_through_a_server(tmp_path: Path) -> None:
    env = {"CLOUDHERD_HOME": str(tmp_path / "home"), "CLOUDHERD_SERVER": "http://127.0.0.1:9",
           "CLOUDHERD_TOKEN": "chd_anything"}
    refused = cli("plan", str(HELLO), "--out", str(tmp_path / "p"), env=env)
    assert refused.returncode == 2 and "beside the state it fingerprints" in refused.stderr, refused.stderr
    assert not (tmp_path / "p").exists()
