"""Input that used to be taken silently and wrong is now an error at its line; what is right still loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudherd.errors import SpecError
from cloudherd.spec import load_spec, load_spec_text
from cloudherd.spec.interpolate import InterpolationError, interpolate


def load(folder: Path, text: str, environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = folder / "spec.yml"
    path.write_text(text)
    return load_spec(path, environ=environ or {})


def error(folder: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(SpecError) as caught:
        load(folder, text, environ)
    message = str(caught.value)
    assert "\n" not in message
    return message.removeprefix(str(folder / "spec.yml"))


WEB = "name: x\ngroups:\n  web:\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    count: true\n", ":4: groups.web.count: must be a number, not true/false"),
        ("    count: '3'\n", ":4: groups.web.count: must be an integer"),
        ("    count: 3.5\n", ":4: groups.web.count: must be a whole number"),
        ("    count: 3.0\n", ":4: groups.web.count: must be a whole number"),
        ("    ports: [80, '443']\n", ":4: groups.web.ports[1]: must be an integer"),
        ("    ports: [true]\n", ":4: groups.web.ports[0]: must be a number, not true/false"),
        ("    placement: [{provider: local, max: false}]\n",
         ":4: groups.web.placement[0].max: must be a number, not true/false"),
        ("    count: 2\n    policy: {min_count: 5}\n",
         ":5: groups.web.policy.min_count: must be ≤ the group's count (2): 5 nodes can never exist"),
        ("    policy: {min_count: yes}\n", ":4: groups.web.policy.min_count: must be an integer"),
        ("    size: {cpus: true}\n", ":4: groups.web.size.cpus: must be a number, not true/false"),
        ("    size: {cpus: .inf}\n", ":4: groups.web.size.cpus: must be a finite number"),
        ("    size: {memory: true}\n", ":4: groups.web.size.memory: must be an amount of memory like 8G or 512M"),
        ("    size: {memory: -1}\n",
         ":4: groups.web.size.memory: '-1' is not an amount of memory (write it like 8G or 512M)"),
        ("    size: {memory: .inf}\n",
         ":4: groups.web.size.memory: 'inf' is not an amount of memory (write it like 8G or 512M)"),
        ("    env: {VERSION: 1.10}\n", ":4: groups.web.env.VERSION: 1.1 is a number that YAML may have changed "
                                      "(1.10 reads as 1.1): quote it, e.g. \"1.10\""),
        ("    tags: {~: a}\n", ":4: groups.web.tags: a key must be text, not null (quote it)"),
        ("    tags: {true: a}\n", ":4: groups.web.tags: a key must be text, not true/false (quote it)"),
        ("    tags: {1: a, '1': b}\n", ":4: groups.web.tags.1: duplicate key"),
        ("    image: ${UNSET\n", ":4: groups.web.image: ${UNSET is not closed with } "
                                 "(write ${NAME} or ${NAME:-default}, and $$ for a literal $)"),
        ("    image: ${}\n", ":4: groups.web.image: ${} names no variable "
                             "(write ${NAME} or ${NAME:-default}, and $$ for a literal $)"),
        ("    image: a-${1X}\n", ":4: groups.web.image: '${1X}…' is not a variable reference: a name is "
                                 "letters, digits and _, not starting with a digit "
                                 "(write ${NAME} or ${NAME:-default}, and $$ for a literal $)"),
        ("    image: ${A-b}\n", ":4: groups.web.image: '${A-' is not supported "
                                "(write ${NAME} or ${NAME:-default}, and $$ for a literal $)"),
        ("    image: ${A:-x\n", ":4: groups.web.image: a ${NAME:-default} is not closed with } "
                                "(write ${NAME} or ${NAME:-default}, and $$ for a literal $)"),
        ("    count: ${COUNT}\n", ":4: groups.web.count: must be an integer (the environment gave 'three')"),
        ("    count: ${FLAG}\n", ":4: groups.web.count: must be an integer (the environment gave 'true')"),
    ],
)
def test_wrong_values_are_errors_at_their_line(tmp_path: Path, body: str, expected: str) -> None:
    assert error(tmp_path, WEB + body, {"COUNT": "three", "FLAG": "true"}) == expected


def test_port_of_ssh_is_strict(tmp_path: Path) -> None:
    assert error(tmp_path, "name: x\nssh: {port: true}\ngroups: {web: {}}\n") == \
        ":2: ssh.port: must be a number, not true/false"


def test_numbers_from_the_environment_are_numbers(tmp_path: Path) -> None:
    """The environment is text: ``${VAR}`` in a numeric field is read as a number, as in compose."""
    loaded = load(tmp_path, WEB + "    count: ${COUNT}\n    ports: ['${PORT}']\n    size: {cpus: '${CPUS}'}\n"
                  "    policy: {min_count: '${MIN:-1}'}\n", {"COUNT": "3", "PORT": "8080", "CPUS": "1.5"})
    group = loaded.spec.groups["web"]
    assert (group.count, group.ports, group.size.cpus, group.policy.min_count) == (3, [8080], 1.5, 1)  # type: ignore[union-attr]


def test_yaml_numbers_in_env_and_tags_are_written_as_yaml_wrote_them(tmp_path: Path) -> None:
    loaded = load(tmp_path, WEB + "    env: {PORT: 8080, DEBUG: true, OFF: false, NAME: '1.10'}\n")
    assert loaded.spec.groups["web"].env == {"PORT": "8080", "DEBUG": "true", "OFF": "false", "NAME": "1.10"}


def test_integer_keys_are_text(tmp_path: Path) -> None:
    loaded = load(tmp_path, "name: x\nvariables: {ports: {80: http}}\ngroups: {web: {}}\n")
    assert loaded.spec.variables == {"ports": {"80": "http"}}


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A:-${B:-deep}}", {}, "deep"),
        ("${A:-${B:-deep}}", {"B": "b"}, "b"),
        ("${A:-${B}}", {"A": "a"}, "a"),  # a default is not looked at when the variable is set
        ("$$HOME and $HOME", {}, "$HOME and $HOME"),  # $ without { is for the node's shell
        ("a}b", {}, "a}b"),
        ("${A:-}", {}, ""),
        ("x${A}y${A}z", {"A": "-"}, "x-y-z"),
        ("${A:-a:-b}", {}, "a:-b"),
    ],
)
def test_interpolation(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env) == expected


def test_a_malformed_default_is_an_error_even_when_the_variable_is_set() -> None:
    with pytest.raises(InterpolationError):
        interpolate("${A:-${}}", {"A": "a"})


def test_down_still_reads_an_old_snapshot_with_malformed_references(tmp_path: Path) -> None:
    """Specs stored before references were checked must stay readable, as written, for ``down``."""
    text = WEB + "    image: ${UNSET\n    tags: {a: '${}', b: '${GONE}', c: '${GONE:-d}'}\n"
    loaded = load_spec_text(text, tmp_path / "spec.yml", environ={}, strict_env=False, read_scripts=False)
    group = loaded.spec.groups["web"]
    assert group.image == "${UNSET"
    assert group.tags == {"a": "${}", "b": "${GONE}", "c": "d"}


def test_down_does_not_look_at_files_named_by_the_snapshot(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    text = "name: x\nssh: {key: keys}\ngroups:\n  web:\n    scripts: [gone/]\n    teardown: gone.sh\n"
    loaded = load_spec_text(text, tmp_path / "spec.yml", environ={}, strict_env=False, read_scripts=False)
    assert loaded.spec.ssh.key == "keys"


def test_load_spec_text_is_bounded_too(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"spec.yml: larger than 4 MiB"):
        load_spec_text("#" * (5 * 1024 * 1024), tmp_path / "spec.yml")


def test_a_missing_ssh_key_is_made_on_first_use(tmp_path: Path) -> None:
    loaded = load(tmp_path, "name: x\nssh: {key: keys/new/id_ed25519}\ngroups: {web: {}}\n")
    assert loaded.spec.ssh.key == "keys/new/id_ed25519"


def test_a_private_key_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "id").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n")
    assert load(tmp_path, "name: x\nssh: {key: id}\ngroups: {web: {}}\n").spec.ssh.key == "id"


def test_scripts_folder_skips_subfolders_and_hidden_files(tmp_path: Path) -> None:
    (tmp_path / "s" / "lib").mkdir(parents=True)
    (tmp_path / "s" / "20-b.sh").write_text("echo b\n")
    (tmp_path / "s" / "10-a.sh").write_text("echo a\n")
    (tmp_path / "s" / ".swp").write_text("x")
    loaded = load(tmp_path, WEB + "    scripts: [s/]\n")
    assert [s.name for s in loaded.scripts["web"]] == ["10-a.sh", "20-b.sh"]
    assert [s.source for s in loaded.scripts["web"]] == ["s/10-a.sh", "s/20-b.sh"]


def test_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    loaded = load(tmp_path, "name: x\ngroups:\n  web: &web {count: 2, tags: {team: a}}\n"
                            "  api:\n    <<: *web\n    count: 3\n")
    assert loaded.spec.groups["api"].count == 3
    assert loaded.spec.groups["api"].tags == {"team": "a"}


def test_an_error_in_a_merged_key_points_at_the_anchor(tmp_path: Path) -> None:
    text = "name: x\nvariables:\n  base: &base {count: 2, tags: {team: [a]}}\ngroups:\n  api:\n    <<: *base\n"
    assert error(tmp_path, text) == ":3: groups.api.tags.team: must be a string"


def test_a_reused_anchor_is_legal_and_silent(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    loaded = load(tmp_path, "name: x\nvariables: {a: &x 1, b: &x 2, c: *x}\ngroups: {web: {}}\n")
    assert loaded.spec.variables == {"a": 1, "b": 2, "c": 2}
    assert capfd.readouterr().err == ""


def test_a_snapshot_taken_by_a_laxer_version_still_loads(tmp_path: Path) -> None:
    """``down`` must tear down what an older cloudherd brought up, even from a spec it now refuses."""
    text = WEB + "    count: '3'\n    ports: ['80', true]\n    size: {cpus: '2'}\n    env: {V: 1.10}\n" \
        "    policy: {min_count: 5}\n  api: {count: true}\n"
    with pytest.raises(SpecError):
        load_spec_text(text, tmp_path / "spec.yml", environ={})
    loaded = load_spec_text(text, tmp_path / "spec.yml", environ={}, strict_env=False, read_scripts=False)
    web = loaded.spec.groups["web"]
    assert (web.count, web.ports, web.size.cpus, web.env) == (3, [1, 80], 2.0, {"V": "1.1"})  # type: ignore[union-attr]
    assert loaded.spec.groups["api"].count == 1


ODD = ["- a list\n", "name: x\ngroups: {web: {count: [1}\n", "name: x\ngroups: {'a\nb': {}}\n"]


@pytest.mark.parametrize("text", ODD)
def test_every_message_is_one_line_whatever_the_names(tmp_path: Path, text: str) -> None:
    path = tmp_path / "odd\nname\r.yml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ={})
    assert "\n" not in str(caught.value) and "\r" not in str(caught.value)
    assert str(caught.value).startswith(f"{tmp_path}/odd\\nname\\r.yml:")


def test_a_budget_is_dollars_above_nothing_and_stop_or_down(tmp_path: Path) -> None:
    assert error(tmp_path, "name: x\nbudget:\n  hourly: -1\n" + WEB[8:] + "    count: 1\n") == \
        ":3: budget.hourly: must be greater than 0"
    assert "budget.on_total" in error(tmp_path, "name: x\nbudget: {total: 9, on_total: later}\n" + WEB[8:]
                                      + "    count: 1\n")
    loaded = load(tmp_path, "name: x\nbudget: {hourly: 2, total: 300}\n" + WEB[8:] + "    count: 1\n")
    assert (loaded.spec.budget.hourly, loaded.spec.budget.total, loaded.spec.budget.on_total) == (2.0, 300.0, "stop")
