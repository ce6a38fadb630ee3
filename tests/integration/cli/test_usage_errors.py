"""Bad arguments are usage errors (exit 2, one line, naming what is wrong) before any work starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli, write_spec

from cloudherd.api import SyncClient
from cloudherd.errors import UsageError

RANGES = [
    ("exec", ["X", "true", "--timeout", "0"]), ("exec", ["X", "true", "--timeout", "-5"]),
    ("exec", ["X", "true", "--command-timeout", "0"]), ("exec", ["X", "true", "--concurrency", "0"]),
    ("exec", ["X", "true", "-c", "-1"]), ("push", ["X", "a", "b", "--timeout", "-1"]),
    ("pull", ["X", "a", "b", "--concurrency", "0"]), ("up", ["SPEC", "--connect-timeout", "-1"]),
    ("up", ["SPEC", "--connect-timeout", "0"]), ("up", ["SPEC", "--wait", "-1"]), ("down", ["X", "--wait", "-3"]),
]


@pytest.mark.parametrize(("command", "args"), RANGES)
def test_out_of_range_numbers_are_refused_before_any_work(home: Path, tmp_path: Path, command: str,
                                                         args: list[str]) -> None:
    spec = write_spec(tmp_path / "r", "name: ranges\ngroups:\n  web:\n    count: 1\n")
    result = cli(command, *[str(spec) if a == "SPEC" else a for a in args])
    assert result.returncode == 2, result.stderr
    assert "Invalid value for" in result.stderr and "Traceback" not in result.stderr
    assert not (home / "local").is_dir() or not list((home / "local").glob("*/node.json"))  # nothing made


def test_the_api_checks_the_same_ranges(home: Path) -> None:
    herd = SyncClient()
    for call in (lambda: herd.exec("x", "true", timeout=0), lambda: herd.exec("x", "true", concurrency=0),
                 lambda: herd.pull("x", "a", "b", timeout=-1), lambda: herd.down("x", wait=-1),
                 lambda: herd.up("nosuch.yml", connect_timeout=-1)):
        with pytest.raises(UsageError, match="must be"):
            call()


@pytest.mark.scenario
def test_fleet_commands_on_bad_targets(home: Path, tmp_path: Path) -> None:
    text = "name: fleet\ngroups:\n  web:\n    count: 1\n    env: {API_TOKEN: 'tok-3141592653'}\n"
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "f", text))

    empty = cli("exec", infra_id, "  ")
    assert empty.returncode == 2 and "the command is empty" in empty.stderr

    # exec sees the group's env; the command text is stored masked like the output
    seen = json.loads(cli("exec", infra_id, "echo $API_TOKEN; echo tok-3141592653 >/dev/null", "--json").stdout)
    assert seen[0]["stdout"] == "***\n"
    logs = [a for a in herd.logs(infra_id) if a.kind == "exec"]
    assert logs and "tok-3141592653" not in logs[-1].name and "***" in logs[-1].name

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    into_file = cli("pull", infra_id, "*", str(a_file))
    assert into_file.returncode == 2 and str(a_file) in into_file.stderr and "is a file" in into_file.stderr

    assert cli("exec", infra_id, "touch blocker").returncode == 0
    blocked = cli("push", infra_id, str(a_file), "blocker/sub/")  # a file stands where a folder should be
    assert blocked.returncode == 1
    failure = next(line for line in blocked.stderr.splitlines() if line.startswith("fleet-web-1:"))
    assert "blocker/sub" in failure, blocked.stderr

    herd.down(infra_id)
    for args in (("exec", infra_id, "true"), ("push", infra_id, str(a_file), "x"), ("pull", infra_id, "x", "d")):
        gone = cli(*args)
        assert gone.returncode == 2 and "is destroyed" in gone.stderr, gone.stderr


def test_a_reader_that_goes_away_silences_the_output_not_the_command(home: Path, tmp_path: Path) -> None:
    """``cloudherd exec … | head``: the command finishes, with no traceback, once its reader is gone."""
    import os
    import subprocess
    import sys

    spec = write_spec(tmp_path / "p", "name: piped\ngroups:\n  web:\n    count: 1\n")
    assert cli("up", str(spec)).returncode == 0
    run = subprocess.Popen([sys.executable, "-m", "cloudherd", "exec", "piped", "seq 1 200000; echo done > seen"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    assert run.stdout is not None and run.stdout.readline()  # the first line, then the reader goes
    run.stdout.close()
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0 and b"Traceback" not in stderr, stderr.decode()[-2000:]
    assert cli("exec", "piped", "cat seen").stdout.strip().endswith("done")  # the command ran to its end
