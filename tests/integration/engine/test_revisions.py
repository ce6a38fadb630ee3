"""Revisions: every up that changes a release records one; `history` lists them; `rollback` applies an older one
from what was stored (nothing from the disk), each group keeping its size.  Real local nodes, the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from helpers import cli

from cloudherd.api import SyncClient
from cloudherd.spec.loader import load_spec_text

SPEC = """\
name: rel
groups:
  web:
    count: {count}
    env: {{TOKEN: "${{API_TOKEN}}"}}
    scripts: [app/deploy.sh]
    update: {{strategy: {strategy}, min_healthy_seconds: 0s}}  # revisions, not the gate, are tested here
"""


def _release(folder: Path, version: str, count: int = 2, strategy: str = "rolling") -> Path:
    (folder / "app").mkdir(parents=True, exist_ok=True)
    (folder / "app" / "deploy.sh").write_text(f"echo {version} > version.txt\n")
    (folder / ".env").write_text("API_TOKEN=tok-5ecret-v4lue\n")
    path = folder / "cloudherd.yml"
    path.write_text(SPEC.format(count=count, strategy=strategy))
    return path


def _versions(infra: str) -> dict[str, str]:
    result = cli("exec", infra, "cat version.txt", "--json")
    assert result.returncode == 0, result.stderr
    return {row["node"]: row["stdout"].strip() for row in json.loads(result.stdout)}


def _history(infra: str) -> list[dict[str, object]]:
    result = cli("history", infra, "--json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def test_history_and_rollback_from_what_was_stored(home: Path, tmp_path: Path) -> None:
    spec = _release(tmp_path / "src", "v1")
    up = cli("up", str(spec))
    assert up.returncode == 0, up.stderr
    assert cli("up", str(spec)).returncode == 0  # the same release again: no new revision
    _release(tmp_path / "src", "v2", count=3)  # a new script and a new size
    assert cli("up", str(spec)).returncode == 0
    assert cli("scale", "rel", "web", "+1").returncode == 0  # sizes are not releases
    assert set(_versions("rel").values()) == {"v2"}

    history = _history("rel")
    assert [(r["number"], r["origin"], r["state"], r["current"]) for r in history] == [
        (1, "up", "applied", False), (2, "up", "applied", True)]
    assert history[0]["scripts"] == ["web: app/deploy.sh"] and history[0]["digest"] != history[1]["digest"]

    shutil.rmtree(tmp_path / "src")  # a rollback needs neither the spec nor its scripts on the disk …
    refused = cli("rollback", "rel")  # … but secrets are never stored: the environment gives them again
    assert refused.returncode == 2 and "environment variable API_TOKEN is not set" in refused.stderr
    assert [r["number"] for r in _history("rel")] == [1, 2]
    back = cli("rollback", "rel", env={"API_TOKEN": "tok-5ecret-v4lue"})
    assert back.returncode == 0, back.stderr
    assert "revision 3 (rollback to 1) is applied" in back.stderr
    versions = _versions("rel")
    assert sorted(versions.values()) == ["v1"] * 4  # every node runs v1 again, and the group kept its 4 nodes
    history = _history("rel")
    assert [(r["number"], r["origin"]) for r in history][-1] == (3, "rollback to 1")
    assert history[2]["digest"] == history[0]["digest"]

    again = cli("rollback", "rel", env={"API_TOKEN": "x"})  # the default toggles: the newest applied one before
    assert again.returncode == 0, again.stderr
    assert set(_versions("rel").values()) == {"v2"}
    assert _history("rel")[-1]["origin"] == "rollback to 2"

    table = cli("history", "rel")
    assert table.returncode == 0 and "rollback to 2" in table.stdout and "4 *" in table.stdout

    database = (home / "state.db").read_bytes() + b"".join(
        p.read_bytes() for p in home.glob("state.db-wal"))
    assert b"tok-5ecret-v4lue" not in database  # the stored release holds the spec as written, not secrets


def test_bad_rollbacks_are_one_line_and_change_nothing(home: Path, tmp_path: Path) -> None:
    spec = _release(tmp_path, "v1")
    assert cli("up", str(spec)).returncode == 0
    for args, words in ((("rel",), "no earlier applied revision"), (("rel", "9"), "no revision 9 (there are 1 to 1"),
                        (("nosuch",), "no infrastructure matches 'nosuch'")):
        result = cli("rollback", *args)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], result.stderr
        assert "Traceback" not in result.stderr
    assert [r["number"] for r in _history("rel")] == [1]


def test_a_failed_release_is_recorded_and_skipped_by_rollback(home: Path, tmp_path: Path) -> None:
    """All at once (recreate): a failed release is left as it failed, recorded, and a rollback skips it."""
    spec = _release(tmp_path, "v1", strategy="recreate")
    assert cli("up", str(spec)).returncode == 0
    (tmp_path / "app" / "deploy.sh").write_text("echo v2 > version.txt; exit 3\n")
    failed = cli("up", str(spec))
    assert failed.returncode != 0
    history = _history("rel")
    assert [(r["number"], r["state"]) for r in history] == [(1, "applied"), (2, "failed")]
    assert "exit" in str(history[1]["reason"])
    back = cli("rollback", "rel")  # back to 1: the failed release is current, and 1 is the last good one
    assert back.returncode == 0, back.stderr
    assert set(_versions("rel").values()) == {"v1"}
    assert [(r["number"], r["origin"], r["state"]) for r in _history("rel")][-1] == (3, "rollback to 1", "applied")


def test_the_digest_is_of_the_release_not_of_its_size(tmp_path: Path) -> None:
    from cloudherd.engine.revisions import release_digest

    def digest(count: int, script: str, token: str) -> str:
        (tmp_path / "app").mkdir(exist_ok=True)
        (tmp_path / "app" / "deploy.sh").write_text(script)
        text = SPEC.format(count=count, strategy="rolling")
        return release_digest(load_spec_text(text, tmp_path / "cloudherd.yml", environ={"API_TOKEN": token}))

    base = digest(2, "echo v1\n", "secret-a")
    assert digest(7, "echo v1\n", "secret-a") == base  # a size is no release
    assert digest(2, "echo v2\n", "secret-a") != base  # a script is
    assert digest(2, "echo v1\n", "secret-b") == base  # secrets are masked before the digest


def test_the_python_api_lists_and_rolls_back(home: Path, tmp_path: Path) -> None:
    spec = _release(tmp_path, "v1")
    with SyncClient() as herd:
        infra = herd.up(spec)
        _release(tmp_path, "v2")
        herd.up(spec)
        assert [r.number for r in herd.history(infra)] == [1, 2]
        made = herd.rollback(infra, 1)
        assert (made.number, made.origin, made.state, made.current) == (3, "rollback to 1", "applied", True)
