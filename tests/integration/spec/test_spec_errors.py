"""Spec errors are one line, FILE:LINE: path: message, exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import HELLO, cli

from cloudherd.errors import SpecError
from cloudherd.spec import load_spec


def write(folder: Path, text: str, name: str = "spec.yml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\ngroups:\n  web: {count: [1\n",
         "spec.yml:4: invalid YAML: expected ',' or ']', but got '<stream end>'"),
        ("name: x\ngroups:\n  web:\n    count: 3\n    cont: 2\n",
         "spec.yml:5: groups.web.cont: unknown key (did you mean 'count'?)"),
        ("name: x\ngroups:\n  web:\n    count: three\n", "spec.yml:4: groups.web.count: must be an integer"),
        ("name: x\ngroups:\n  web:\n    count: -1\n", "spec.yml:4: groups.web.count: must be ≥ 0"),
        ("name: x\ngroups: {}\n", "spec.yml:2: groups: needs at least one group"),
        ("groups:\n  web: {}\n", "spec.yml:1: name: is required"),
        ("name: Bad_Name\ngroups:\n  web: {}\n",
         "spec.yml:1: name: must be lower-case letters, digits and '-' (at most 40), e.g. web-stack"),
        ("name: x\ngroups:\n  web:\n    provider: nowhere\n",
         "spec.yml:4: groups.web.provider: unknown provider 'nowhere' (known: aws, gce, local)"),
        ("name: x\ngroups:\n  web:\n    scripts: [missing.sh]\n",
         "spec.yml:4: groups.web.scripts[0]: no such file or folder: missing.sh"),
        ("name: x\ngroups:\n  web:\n    image: ${NOT_SET_ANYWHERE_42}\n",
         "spec.yml:4: groups.web.image: environment variable NOT_SET_ANYWHERE_42 is not set "
         "(set it, or add it to .env beside the spec)"),
        ("- just\n- a list\n", "spec.yml:1: a spec must be a mapping with at least 'name' and 'groups'"),
    ],
)
@pytest.mark.scenario
def test_bad_spec_is_one_line_and_exit_2(tmp_path: Path, home: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    for command in ("validate", "up"):
        result = cli(command, str(path))
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines == [expected.replace("spec.yml", str(path))], result.stderr
        assert "Traceback" not in result.stderr + result.stdout
    assert not (home / "local").exists() or not any((home / "local").iterdir())


def test_missing_file_is_a_clear_error(tmp_path: Path, home: Path) -> None:
    result = cli("up", str(tmp_path / "nope.yml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"{tmp_path / 'nope.yml'}: no such file"


def test_template_syntax_error_names_the_script_line(tmp_path: Path) -> None:
    (tmp_path / "s.sh").write_text("echo ok\necho {{ broken\n")
    path = write(tmp_path, "name: x\ngroups:\n  web:\n    scripts: s.sh\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    # the script as the user can open it: beside the spec as the spec was named, with the line
    assert str(caught.value).startswith(f"{tmp_path / 's.sh'}:2: template error:")


def test_variables_come_from_env_and_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("IMAGE_FROM_DOTENV=debian-12\nAPI_TOKEN=s3cr3t-value\nSIZE=small\n")
    path = write(tmp_path, "name: x\nvariables: {token: '${API_TOKEN}'}\ngroups:\n  web:\n"
                           "    image: ${IMAGE_FROM_DOTENV}\n    size: ${SIZE}\n    tags: {owner: '${OWNER:-ops}'}\n")
    loaded = load_spec(path, environ={"SIZE": "large"})
    group = loaded.spec.groups["web"]
    assert group.image == "debian-12"
    assert group.size == "large"  # the process environment wins over .env
    assert group.tags == {"owner": "ops"}
    assert loaded.spec.variables["token"] == "s3cr3t-value"
    assert "s3cr3t-value" in loaded.secrets  # named like a secret: masked wherever it is stored


def test_folder_of_scripts_runs_in_name_order() -> None:
    loaded = load_spec(HELLO)
    assert [s.name for s in loaded.scripts["web"]] == ["10-install.sh", "20-configure.sh"]
    teardown = loaded.teardown["web"]
    assert teardown is not None and teardown.name == "goodbye.sh"
