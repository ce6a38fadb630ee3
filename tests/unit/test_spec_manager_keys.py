"""The manager's keys of a spec: health checks, min / max (and Occopus's scaling:), depends_on and its order."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudherd.errors import SpecError
from cloudherd.spec import load_spec, load_spec_text
from cloudherd.spec.durations import DurationError, format_duration, parse_duration
from cloudherd.spec.model import Health, Spec


def load(folder: Path, text: str, environ: dict[str, str] | None = None) -> Spec:
    path = folder / "spec.yml"
    path.write_text(text)
    return load_spec(path, environ=environ or {}).spec


def error(folder: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(SpecError) as caught:
        load(folder, text, environ)
    message = str(caught.value)
    assert "\n" not in message
    return message.removeprefix(str(folder / "spec.yml"))


def reread(folder: Path, text: str) -> Spec:
    """The way ``down`` and the manager re-read a stored snapshot: leniently."""
    return load_spec_text(text, folder / "spec.yml", environ={}, strict_env=False, read_scripts=False).spec


WEB = "name: x\ngroups:\n  web:\n"
FORMS = "(a number of seconds, or like 500ms, 10s, 2m, 1h, 1m30s)"


# --- durations -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0, 0.0), (10, 10.0), (0.5, 0.5), ("500ms", 0.5), ("10s", 10.0), ("2m", 120.0), ("1h", 3600.0),
     ("1m30s", 90.0), ("1h2m3s", 3723.0), ("1s500ms", 1.5), ("1.5s", 1.5), (" 2m 30s ", 150.0), ("0s", 0.0),
     ("10S", 10.0)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [(True, f"must be a duration {FORMS[:-1]}), not true/false"),
     ("10", "'10' has no unit: write 10s, or the number unquoted"),
     ("10x", f"'10x' is not a duration {FORMS}"),
     ("30s1m", f"'30s1m' is not a duration {FORMS}"),
     ("s", f"'s' is not a duration {FORMS}"),
     ("", f"'' is not a duration {FORMS}"),
     (-1, "-1 is negative: a duration is a number of seconds, or like 500ms, 10s, 2m, 1h, 1m30s"),
     (float("inf"), f"inf is not a finite duration {FORMS}"),
     ("9999h", "'9999h' is more than a year"),
     ([1], f"must be a duration {FORMS}")],
)
def test_what_is_not_a_duration(value: object, message: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(value)
    assert str(caught.value) == message


def test_bare_text_is_seconds_only_when_asked() -> None:
    assert parse_duration("10", bare_text=True) == 10.0


@pytest.mark.parametrize(("seconds", "text"), [(90, "1m30s"), (0.5, "500ms"), (3600, "1h"), (0, "0s"), (1.5, "1.5s")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


# --- health ----------------------------------------------------------------------------------------------

def test_every_group_has_the_default_health_check(tmp_path: Path) -> None:
    health = load(tmp_path, WEB + "    count: 2\n").groups["web"].health
    assert health == Health()
    assert (health.ssh, health.ports, health.urls, health.command) == (True, [], [], None)
    assert (health.interval, health.grace, health.timeout) == (10.0, 30.0, 5.0)
    assert (health.failures, health.failing_for) == (3, None)
    assert health.max_unhealthy == "40%" and health.checks


def test_every_health_key(tmp_path: Path) -> None:
    health = load(tmp_path, WEB + """    health:
      ssh: false
      ports: [8080, 5432, 8080]
      urls: ["http://{{ node.address }}:80/"]
      command: systemctl is-active nginx
      interval: 1m30s
      grace: 0
      timeout: 500ms
      unhealthy_after: 30s
      max_unhealthy: 2
""").groups["web"].health
    assert health.ssh is False and health.ports == [8080, 5432]
    assert health.urls == ["http://{{ node.address }}:80/"] and health.command == "systemctl is-active nginx"
    assert (health.interval, health.grace, health.timeout) == (90.0, 0.0, 0.5)
    assert (health.failures, health.failing_for) == (None, 30.0)
    assert health.max_unhealthy_of(10) == 2


def test_values_from_the_environment(tmp_path: Path) -> None:
    text = WEB + "    health:\n      ssh: ${SSH}\n      interval: ${EVERY}\n      unhealthy_after: ${N}\n" \
        "      max_unhealthy: ${M}\n      ports: ['${PORT}']\n"
    environ = {"SSH": "false", "EVERY": "2", "N": "5", "M": "10%", "PORT": "81"}
    health = load(tmp_path, text, environ).groups["web"].health
    assert (health.ssh, health.interval, health.failures, health.max_unhealthy, health.ports) == \
        (False, 2.0, 5, "10%", [81])


def test_no_checks_at_all(tmp_path: Path) -> None:
    health = load(tmp_path, WEB + "    health: {ssh: false}\n").groups["web"].health
    assert not health.checks


def test_an_empty_health_key_is_the_default(tmp_path: Path) -> None:
    assert load(tmp_path, WEB + "    health:\n").groups["web"].health == Health()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    health: 3\n", ":4: groups.web.health: must be a mapping"),
        ("    health:\n      intervall: 3\n",
         ":5: groups.web.health.intervall: unknown key (did you mean 'interval'?)"),
        ("    health:\n      ssh: 1\n", ":5: groups.web.health.ssh: must be true or false"),
        ("    health:\n      ssh: 'no'\n", ":5: groups.web.health.ssh: must be true or false"),
        ("    health:\n      ports: [80, 0]\n", ":5: groups.web.health.ports[1]: port 0 is not between 1 and 65535"),
        ("    health:\n      ports:\n        - 80\n        - 70000\n",
         ":7: groups.web.health.ports[1]: port 70000 is not between 1 and 65535"),
        ("    health:\n      ports: ['80']\n", ":5: groups.web.health.ports[0]: must be an integer"),
        ("    health:\n      ports: [true]\n", ":5: groups.web.health.ports[0]: must be a number, not true/false"),
        ("    health:\n      urls: [3]\n", ":5: groups.web.health.urls[0]: must be a string"),
        ("    health:\n      urls: ['']\n", ":5: groups.web.health.urls[0]: an empty URL"),
        ("    health:\n      command: ' '\n",
         ":5: groups.web.health.command: an empty command (leave the key out for no command check)"),
        ("    health:\n      interval: 0\n", ":5: groups.web.health.interval: must be greater than 0"),
        ("    health:\n      interval: 0ms\n", ":5: groups.web.health.interval: must be greater than 0"),
        ("    health:\n      interval: true\n",
         f":5: groups.web.health.interval: must be a duration {FORMS[:-1]}), not true/false"),
        ("    health:\n      interval: '10'\n",
         ":5: groups.web.health.interval: '10' has no unit: write 10s, or the number unquoted"),
        ("    health:\n      interval: 10 seconds\n",
         f":5: groups.web.health.interval: '10 seconds' is not a duration {FORMS}"),
        ("    health:\n      interval: .nan\n",
         f":5: groups.web.health.interval: nan is not a finite duration {FORMS}"),
        ("    health:\n      grace: -1\n",
         ":5: groups.web.health.grace: -1 is negative: a duration is a number of seconds, or like 500ms, 10s, 2m, 1h, "
         "1m30s"),
        ("    health:\n      timeout: 0s\n", ":5: groups.web.health.timeout: must be greater than 0"),
        ("    health:\n      timeout: [1]\n", f":5: groups.web.health.timeout: must be a duration {FORMS}"),
        ("    health:\n      unhealthy_after: 0\n",
         ":5: groups.web.health.unhealthy_after: 0 failed checks: must be at least 1 (or a duration like 30s)"),
        ("    health:\n      unhealthy_after: '0'\n",
         ":5: groups.web.health.unhealthy_after: 0 failed checks: must be at least 1 (or a duration like 30s)"),
        ("    health:\n      unhealthy_after: 2.5\n",
         ":5: groups.web.health.unhealthy_after: 2.5 is not a whole number of failed checks (or write a duration "
         "like 30s)"),
        ("    health:\n      unhealthy_after: '2.5'\n",
         ":5: groups.web.health.unhealthy_after: '2.5' is not a whole number of failed checks (or write a duration "
         "like 30s)"),
        ("    health:\n      unhealthy_after: 0s\n",
         ":5: groups.web.health.unhealthy_after: '0s': failing for no time at all; write a duration above 0, "
         "or a count"),
        ("    health:\n      unhealthy_after: soon\n",
         ":5: groups.web.health.unhealthy_after: 'soon' is neither a number of failed checks (e.g. 3) nor a duration "
         f"{FORMS}"),
        ("    health:\n      unhealthy_after: true\n",
         ":5: groups.web.health.unhealthy_after: must be a number of failed checks (e.g. 3) or a duration (e.g. 30s), "
         "not true/false"),
        ("    health:\n      max_unhealthy: 101%\n", ":5: groups.web.health.max_unhealthy: '101%' is more than 100%"),
        ("    health:\n      max_unhealthy: -1\n",
         ":5: groups.web.health.max_unhealthy: -1 nodes: must be ≥ 0 (or a percent like 40%)"),
        ("    health:\n      max_unhealthy: -5%\n",
         ":5: groups.web.health.max_unhealthy: '-5%' is neither a number of nodes (e.g. 2) nor a percent (e.g. 40%)"),
        ("    health:\n      max_unhealthy: half\n",
         ":5: groups.web.health.max_unhealthy: 'half' is neither a number of nodes (e.g. 2) nor a percent (e.g. 40%)"),
        ("    health:\n      max_unhealthy: 1.5\n",
         ":5: groups.web.health.max_unhealthy: 1.5 is not a whole number of nodes (or write a percent like 40%)"),
        ("    health:\n      max_unhealthy: false\n",
         ":5: groups.web.health.max_unhealthy: must be a number of nodes (e.g. 2) or a percent of the group "
         "(e.g. 40%), not true/false"),
    ],
)
def test_wrong_health_values_are_errors_at_their_line(tmp_path: Path, body: str, expected: str) -> None:
    assert error(tmp_path, WEB + body) == expected


@pytest.mark.parametrize(
    ("written", "failures", "failing_for"),
    [("3", 3, None), ("1", 1, None), ("'3'", 3, None), ("' 7 '", 7, None), ("30s", None, 30.0),
     ("1m30s", None, 90.0), ("500ms", None, 0.5)],
)
def test_unhealthy_after_is_a_count_or_a_duration(tmp_path: Path, written: str, failures: int | None,
                                                  failing_for: float | None) -> None:
    health = load(tmp_path, WEB + f"    health: {{unhealthy_after: {written}}}\n").groups["web"].health
    assert (health.failures, health.failing_for) == (failures, failing_for)


@pytest.mark.parametrize(
    ("max_unhealthy", "size", "allowed"),
    [("40%", 0, 0), ("40%", 1, 1), ("40%", 2, 1), ("40%", 5, 2), ("40%", 10, 4), ("40%", 12, 4),
     ("0%", 10, 0), ("0%", 1, 0), ("100%", 7, 7), ("1%", 3, 1), ("50%", 3, 1), ("12.5%", 16, 2),
     ("70%", 10, 7), ("29%", 100, 29), ("57%", 100, 57),  # exact: no floating point rounding down
     (0, 5, 0), (2, 5, 2), (9, 5, 5), (2, 0, 0), ("3", 5, 3)],
)
def test_max_unhealthy_of(tmp_path: Path, max_unhealthy: int | str, size: int, allowed: int) -> None:
    written = f"'{max_unhealthy}'" if isinstance(max_unhealthy, str) else str(max_unhealthy)
    health = load(tmp_path, WEB + f"    health: {{max_unhealthy: {written}}}\n").groups["web"].health
    assert health.max_unhealthy_of(size) == allowed


# --- min, max, count, scaling: ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("body", "bounds"),
    [
        ("    count: 3\n    min: 1\n    max: 5\n", (3, 1, 5)),
        ("    count: 5\n    min: 5\n    max: 5\n", (5, 5, 5)),
        ("    min: 3\n", (3, 3, None)),  # the default count (1) is brought within the bounds…
        ("    max: 0\n", (0, None, 0)),
        ("    min: 0\n    max: 4\n", (1, 0, 4)),
        ("    count: 0\n    min: 0\n", (0, 0, None)),
        ("    scaling: {min: 2, max: 6}\n", (2, 2, 6)),  # …and Occopus's spelling sets them
        ("    scaling: {max: 6}\n    count: 4\n", (4, None, 6)),
        ("    scaling: {min: 2}\n    max: 3\n", (2, 2, 3)),
        ("    scaling: {}\n", (1, None, None)),
    ],
)
def test_count_within_min_and_max(tmp_path: Path, body: str, bounds: tuple[int, int | None, int | None]) -> None:
    group = load(tmp_path, WEB + body).groups["web"]
    assert (group.count, group.min, group.max) == bounds


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    count: 7\n    max: 5\n", ":4: groups.web.count: 7 is above max (5)"),
        ("    max: 5\n    count: 7\n", ":5: groups.web.count: 7 is above max (5)"),
        ("    count: 1\n    min: 2\n", ":4: groups.web.count: 1 is below min (2)"),
        ("    count: 1\n    scaling: {min: 2, max: 4}\n", ":4: groups.web.count: 1 is below min (2)"),
        ("    min: 5\n    max: 3\n", ":4: groups.web.min: 5 is above max (3)"),
        ("    scaling:\n      max: 3\n      min: 5\n", ":6: groups.web.scaling.min: 5 is above max (3)"),
        ("    min: true\n", ":4: groups.web.min: must be a number, not true/false"),
        ("    max: '3'\n", ":4: groups.web.max: must be an integer"),
        ("    min: -1\n", ":4: groups.web.min: must be ≥ 0"),
        ("    max: 10001\n", ":4: groups.web.max: must be ≤ 10000"),
        ("    max: 2.5\n", ":4: groups.web.max: must be a whole number"),
        ("    scaling: 3\n", ":4: groups.web.scaling: must be a mapping"),
        ("    scaling:\n      mx: 3\n", ":5: groups.web.scaling.mx: unknown key (did you mean 'max'?)"),
        ("    scaling:\n      min: true\n", ":5: groups.web.scaling.min: must be a number, not true/false"),
        ("    min: 2\n    scaling:\n      min: 1\n",
         ":6: groups.web.scaling.min: min is given twice, here and as the group's min (2): write it once"),
        ("    mix: 2\n", ":4: groups.web.mix: unknown key (did you mean 'min'?)"),
    ],
)
def test_wrong_bounds_are_errors_at_their_line(tmp_path: Path, body: str, expected: str) -> None:
    assert error(tmp_path, WEB + body) == expected


def test_count_from_the_environment_is_checked_against_max(tmp_path: Path) -> None:
    assert error(tmp_path, WEB + "    max: 2\n    count: ${N}\n", {"N": "3"}) == \
        ":5: groups.web.count: 3 is above max (2)"


# --- depends_on, levels(), dependents() ------------------------------------------------------------------

DIAMOND = """name: x
groups:
  web:
    depends_on: [api, cache]
  api:
    depends_on: db
  cache:
    depends_on: [db]
  db: {}
  tools: {}
"""


def test_a_diamond(tmp_path: Path) -> None:
    spec = load(tmp_path, DIAMOND)
    assert spec.groups["api"].depends_on == ["db"]  # one name is a one-item list
    assert spec.levels() == [["db", "tools"], ["api", "cache"], ["web"]]
    assert spec.dependents("db") == ["web", "api", "cache"]  # in spec order, also through others
    assert spec.dependents("api") == ["web"]
    assert spec.dependents("web") == []
    assert spec.dependents("tools") == []
    assert spec.dependents("nothing") == []


def test_levels_of_a_chain_and_of_independent_groups(tmp_path: Path) -> None:
    chain = load(tmp_path, "name: x\ngroups:\n  c: {depends_on: b}\n  b: {depends_on: a}\n  a: {}\n"
                           "  d: {depends_on: a}\n")
    assert chain.levels() == [["a"], ["b", "d"], ["c"]]
    flat = load(tmp_path, "name: x\ngroups:\n  z: {}\n  y: {}\n  x: {}\n")
    assert flat.levels() == [["z", "y", "x"]]


def test_a_name_twice_counts_once(tmp_path: Path) -> None:
    spec = load(tmp_path, "name: x\ngroups:\n  a: {}\n  b: {depends_on: [a, a]}\n")
    assert spec.groups["b"].depends_on == ["a"] and spec.levels() == [["a"], ["b"]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\ngroups:\n  a: {}\n  b:\n    depends_on: [a, nope]\n",
         ":5: groups.b.depends_on[1]: unknown group 'nope' (known: a, b)"),
        ("name: x\ngroups:\n  a: {}\n  b:\n    depends_on:\n      - a\n      - nope\n",
         ":7: groups.b.depends_on[1]: unknown group 'nope' (known: a, b)"),
        ("name: x\ngroups:\n  a:\n    depends_on: a\n",
         ":4: groups.a.depends_on[0]: a group cannot depend on itself ('a')"),
        ("name: x\ngroups:\n  a:\n    depends_on: 3\n", ":4: groups.a.depends_on: must be a list"),
        ("name: x\ngroups:\n  a:\n    depends_on: [~]\n", ":4: groups.a.depends_on[0]: must be a string"),
        ("name: x\ngroups:\n  a:\n    depend_on: [b]\n",
         ":4: groups.a.depend_on: unknown key (did you mean 'depends_on'?)"),
        # a 3-cycle, named in order from its first group in the spec, at that group's depends_on
        ("name: x\ngroups:\n  a:\n    depends_on: b\n  b:\n    depends_on: c\n  c:\n    depends_on: a\n",
         ":4: groups.a.depends_on: dependency cycle: a → b → c → a"),
        ("name: x\ngroups:\n  top: {depends_on: b}\n  a: {}\n  b:\n    depends_on: [a, c]\n  c:\n    depends_on: d\n"
         "  d:\n    depends_on: b\n",
         ":6: groups.b.depends_on: dependency cycle: b → c → d → b"),
        ("name: x\ngroups:\n  a:\n    depends_on: b\n  b:\n    depends_on: a\n",
         ":4: groups.a.depends_on: dependency cycle: a → b → a"),
    ],
)
def test_wrong_dependencies_are_errors_at_their_line(tmp_path: Path, text: str, expected: str) -> None:
    assert error(tmp_path, text) == expected


# --- stored snapshots, re-read leniently -----------------------------------------------------------------

def test_an_old_snapshot_without_these_keys_gets_the_defaults(tmp_path: Path) -> None:
    spec = reread(tmp_path, "name: x\ngroups:\n  web:\n    count: '2'\n  db: {count: 1}\n")
    web = spec.groups["web"]
    assert (web.count, web.min, web.max, web.depends_on, web.health) == (2, None, None, [], Health())
    assert spec.levels() == [["web", "db"]]


def test_a_snapshot_is_not_refused_for_what_it_cannot_use(tmp_path: Path) -> None:
    text = """name: x
groups:
  a:
    count: 9
    max: 3
    min: 5
    scaling: {min: 1}
    depends_on: [a, gone, b]
    health: {interval: '10', unhealthy_after: 2.0, max_unhealthy: true, ssh: 'false'}
  b:
    depends_on: c
  c:
    depends_on: b
"""
    spec = reread(tmp_path, text)
    a = spec.groups["a"]
    assert (a.count, a.min, a.max, a.depends_on) == (9, 5, 3, ["b"])
    assert (a.health.interval, a.health.failures, a.health.max_unhealthy, a.health.ssh) == (10.0, 2, "40%", False)
    assert spec.levels() == [["a", "b", "c"]]  # a cycle (only a snapshot can have one) is one last level


def test_a_snapshot_brings_a_default_count_within_its_bounds_as_when_it_was_stored(tmp_path: Path) -> None:
    assert reread(tmp_path, WEB + "    scaling: {min: 3}\n").groups["web"].count == 3


def test_the_readme_spec_reference_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Spec reference (v1)"):]
    block = section[section.index("```yaml\n") + 8:section.index("```\n", section.index("```yaml\n") + 8)]
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "web.sh").write_text("echo hi\n")
    (tmp_path / "scripts" / "bye.sh").write_text("echo bye\n")
    (tmp_path / "boot.sh").write_text("echo boot\n")
    text = block.replace("key: ~/.ssh/id_ed25519", f"key: {tmp_path / 'id'}")
    spec = load(tmp_path, text.replace("east", "local").replace("gcp", "here"))
    assert spec.levels()
