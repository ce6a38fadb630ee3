"""Template errors are found by `validate`, `plan` and `up` before any machine exists, with the script's
file and line; teardowns are checked like scripts."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import cli, write_spec

SPEC = "name: tpl\ngroups:\n  web:\n    count: 2\n    scripts: [a.sh]\n    teardown: t.sh\n"
BROKEN = [
    ("echo ok\n\necho {{ nosuch }}\n", "echo bye\n", "a.sh:3", "'nosuch' is undefined"),
    ("echo {{ getip('db') }}\n", "echo bye\n", "a.sh:1", "no group 'db'"),
    ("#!/bin/sh\necho {{ 1 // 0 }}\n", "echo bye\n", "a.sh:2", "division"),
    ("echo {% if %}\n", "echo bye\n", "a.sh:1", "template error"),
    ("echo {{ node.name }}\n", "echo\necho {{ undefined_x }}\n", "t.sh:2", "'undefined_x' is undefined"),
]


def _machines(home: Path) -> list[Path]:
    root = home / "local"
    return sorted(root.glob("*/node.json")) if root.is_dir() else []


@pytest.mark.parametrize(("script", "teardown", "where", "what"), BROKEN)
@pytest.mark.scenario
def test_validate_plan_and_up_find_template_errors_first(home: Path, tmp_path: Path, script: str, teardown: str,
                                                         where: str, what: str) -> None:
    spec = write_spec(tmp_path / "t", SPEC, {"a.sh": script, "t.sh": teardown})
    for command in ("validate", "plan", "up"):
        result = cli(command, str(spec))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (command, result.stderr)
        assert len(lines) == 1 and where in lines[0] and what in lines[0], (command, result.stderr)
        assert "Traceback" not in result.stderr
    assert _machines(home) == []  # nothing was made
    assert cli("ls", "--all", "--json").stdout.strip() == "[]"


def test_a_converge_with_a_broken_template_makes_nothing_new(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    spec = write_spec(folder, SPEC, {"a.sh": "echo {{ getipall('web') | join(',') }}\n", "t.sh": "true\n"})
    assert cli("up", str(spec)).returncode == 0
    before = _machines(home)
    spec.write_text(SPEC.replace("count: 2", "count: 4"))
    (folder / "a.sh").write_text("echo {{ getip('cache') }}\n")
    plan = cli("plan", str(spec))
    assert plan.returncode == 2 and "a.sh:1" in plan.stderr and "no group 'cache'" in plan.stderr
    up = cli("up", str(spec))
    assert up.returncode != 0 and "no group 'cache'" in up.stderr
    assert _machines(home) == before
    assert cli("down", "tpl").returncode == 0
