"""Hostile or broken input: every case is one located line on stderr and exit 2, under a memory limit.

Each case builds a spec (or the files it names) that once crashed, hung, ate gigabytes or was taken
silently, and runs the real ``cloudherd validate FILE`` and ``cloudherd plan FILE`` as a user would,
with the address space capped at 1 GiB: an alias bomb that expands would die there.
"""

from __future__ import annotations

import os
import random
import re
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

MEMORY_LIMIT = 1 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloudherd", *args], capture_output=True, text=True, cwd=cwd,
        stdin=subprocess.DEVNULL, preexec_fn=_limit_memory, timeout=300,  # a hang guard, not a timing check
        env={**os.environ, "CLOUDHERD_DEBUG": ""},
    )


def spec(folder: Path, text: str | bytes) -> Path:
    path = folder / "spec.yml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


GROUPS = "name: x\ngroups:\n  web: {}\n"


def alias_bomb(folder: Path) -> tuple[Path, str]:
    """The 'billion laughs': nine levels of nine aliases, a few hundred bytes, 9**9 values expanded."""
    lines = ["name: x", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("groups: {web: {tags: {x: *i}}}")
    path = spec(folder, "\n".join(lines) + "\n")
    assert path.stat().st_size < 600
    return path, ":6: aliases expand the spec to more than 50000 values"


def merge_key_bomb(folder: Path) -> tuple[Path, str]:
    lines = ["name: x", "a: &a {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1}"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} {{" + ", ".join(f"x{i}: *{prev}" for i in range(9)) + "}")
    lines.append("groups: {web: {}}\nvariables: {<<: *i}")
    return spec(folder, "\n".join(lines) + "\n"), ":6: aliases expand the spec to more than 50000 values"


def recursive_alias(folder: Path) -> tuple[Path, str]:
    return spec(folder, "name: x\nvariables: &v {a: [1, *v]}\ngroups:\n  web: {}\n"), \
        ":2: alias *v is inside the &v it names (a loop)"


def lone_surrogate(folder: Path) -> tuple[Path, str]:
    """YAML's escape makes a character no file, script or JSON answer can hold: refused where it is written."""
    return spec(folder, GROUPS + 'variables: {greeting: "hi \\ud800"}\n'), ":4: a string holds a lone surrogate"


def deep_flow(folder: Path) -> tuple[Path, str]:
    return spec(folder, GROUPS + "variables: {a: " + "[" * 5000 + "]" * 5000 + "}\n"), \
        ":4: nested deeper than 100 levels"


def deep_block(folder: Path) -> tuple[Path, str]:
    body = "".join(" " * (i + 1) + f"k{i}:\n" for i in range(600))
    return spec(folder, GROUPS + "variables:\n" + body), ":103: nested deeper than 100 levels"


def deep_through_aliases(folder: Path) -> tuple[Path, str]:
    """Each level is shallow; aliases stack them past the depth limit."""
    lines = ["name: x", "l0: &l0 " + "[" * 30 + "]" * 30]
    lines += [f"l{i}: &l{i} " + "[" * 30 + f"*l{i - 1}" + "]" * 30 for i in range(1, 5)]
    lines.append("groups: {web: {}}")
    return spec(folder, "\n".join(lines) + "\n"), ":5: alias *l2 nests the spec deeper than 100 levels"


def tag_case(tag: str, line: str = "3") -> Callable[[Path], tuple[Path, str]]:
    def build(folder: Path) -> tuple[Path, str]:
        return spec(folder, f"name: x\ngroups:\n  web: {tag}\n"), f":{line}: the YAML tag "

    build.__name__ = "tag " + tag.split()[0]
    return build


def huge_file(folder: Path) -> tuple[Path, str]:
    path = folder / "spec.yml"
    with path.open("w") as out:
        out.write(GROUPS + "variables:\n")
        index = 0
        while out.tell() < 5_000_000:
            out.write(f"  k{index}: 'value number {index} with some padding text here'\n")
            index += 1
    return path, ": is 4.8 MiB: a spec and each of its files are at most 4 MiB"


def many_values(folder: Path) -> tuple[Path, str]:
    """Under 4 MiB, but 1.5 million values (no aliases): refused while parsing, before they are all built."""
    return spec(folder, GROUPS + "variables: {a: [" + "1," * 1_500_000 + "]}\n"), \
        ":4: the spec has more than 50000 values"


def nul_byte(folder: Path) -> tuple[Path, str]:
    return spec(folder, b"name: x\ngroups:\n  web: {count: 1}\x00\n"), ":3: column 18: a NUL byte is not allowed"


def control_character(folder: Path) -> tuple[Path, str]:
    return spec(folder, "name: x\ngroups:\n  web: {image: \"a\x1b[31m\"}\n"), \
        ":3: column 18: the control character U+001B is not allowed"


def invalid_utf8(folder: Path) -> tuple[Path, str]:
    return spec(folder, b"name: x\n# caf\xe9\ngroups:\n  web: {}\n"), ":2: column 6: not UTF-8 text (byte 0xe9)"


def random_bytes(folder: Path) -> tuple[Path, str]:
    return spec(folder, random.Random(11).randbytes(4096)), ":1: column "


def huge_integer(folder: Path) -> tuple[Path, str]:
    return spec(folder, "name: x\ngroups:\n  web: {count: " + "9" * 5000 + "}\n"), \
        ":3: a number with 5000 digits (at most 40)"


def spec_is_a_link_loop(folder: Path) -> tuple[Path, str]:
    path = folder / "spec.yml"
    path.symlink_to("spec.yml")
    return path, ": a symbolic link loop"


def spec_is_a_folder(folder: Path) -> tuple[Path, str]:
    path = folder / "spec.yml"
    path.mkdir()
    return path, ": is a folder, not a file"


def spec_is_dev_zero(folder: Path) -> tuple[Path, str]:
    path = folder / "spec.yml"
    path.symlink_to("/dev/zero")
    return path, ": is larger than 4 MiB"


def spec_is_a_fifo(folder: Path) -> tuple[Path, str]:
    """A named pipe nobody writes to: read as empty (no hang), then not a spec."""
    path = folder / "spec.yml"
    os.mkfifo(path)
    return path, ":1: a spec must be a mapping"


def spec_through_a_file(folder: Path) -> tuple[Path, str]:
    (folder / "file").write_text("x")
    return folder / "file" / "spec.yml", ": a part of the path is a file, not a folder"


def script_link_loop(folder: Path) -> tuple[Path, str]:
    (folder / "loop.sh").symlink_to("loop.sh")
    return spec(folder, "name: x\ngroups:\n  web:\n    scripts: [loop.sh]\n"), \
        ":4: groups.web.scripts[0]: loop.sh: a symbolic link loop"


def script_broken_link_in_folder(folder: Path) -> tuple[Path, str]:
    (folder / "s").mkdir()
    (folder / "s" / "10-ok.sh").write_text("echo ok\n")
    (folder / "s" / "20-gone.sh").symlink_to("nowhere.sh")
    return spec(folder, "name: x\ngroups:\n  web:\n    scripts: [s/]\n"), \
        ":4: groups.web.scripts[0]: s/20-gone.sh: a broken symbolic link"


def script_is_a_fifo(folder: Path) -> tuple[Path, str]:
    """Reading a FIFO would block forever."""
    os.mkfifo(folder / "f.sh")
    return spec(folder, "name: x\ngroups:\n  web:\n    scripts: f.sh\n"), \
        ":4: groups.web.scripts[0]: " + str(folder / "f.sh") + ": is a named pipe (FIFO), not a file"


def script_is_dev_zero(folder: Path) -> tuple[Path, str]:
    (folder / "z.sh").symlink_to("/dev/zero")
    return spec(folder, "name: x\ngroups:\n  web:\n    scripts: [z.sh]\n"), \
        ":4: groups.web.scripts[0]: /dev/zero: is a device, not a file"


def empty_scripts_folder(folder: Path) -> tuple[Path, str]:
    (folder / "scripts").mkdir()
    (folder / "scripts" / ".hidden").write_text("echo\n")
    return spec(folder, "name: x\ngroups:\n  web:\n    scripts: [scripts/]\n"), \
        ":4: groups.web.scripts[0]: scripts/: the folder has no scripts"


def teardown_is_a_folder(folder: Path) -> tuple[Path, str]:
    (folder / "bye").mkdir()
    (folder / "bye" / "bye.sh").write_text("echo bye\n")
    return spec(folder, "name: x\ngroups:\n  web:\n    teardown: bye\n"), \
        ":4: groups.web.teardown: bye is a folder: name one file"


def script_random_bytes(folder: Path) -> tuple[Path, str]:
    """A problem inside a script is put at the script (its path as the user can open it)."""
    (folder / "bin.sh").write_bytes(b"echo ok\n" + random.Random(3).randbytes(64) + b"\xff")
    spec(folder, "name: x\ngroups:\n  web:\n    scripts: bin.sh\n")
    return folder / "spec.yml", f"@{folder / 'bin.sh'}:2: column "


def script_nested_template(folder: Path) -> tuple[Path, str]:
    (folder / "deep.sh").write_text("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}\n")
    spec(folder, "name: x\ngroups:\n  web:\n    scripts: deep.sh\n")
    return folder / "spec.yml", f"@{folder / 'deep.sh'}: template error: nested too deeply"


def dotenv_random_bytes(folder: Path) -> tuple[Path, str]:
    (folder / ".env").write_bytes(random.Random(5).randbytes(300))
    spec(folder, GROUPS)
    return folder / "spec.yml", f"@{folder / '.env'}:1: column "


def dotenv_link_loop(folder: Path) -> tuple[Path, str]:
    (folder / ".env").symlink_to(".env")
    spec(folder, GROUPS)
    return folder / "spec.yml", f"@{folder / '.env'}: a symbolic link loop"


def dotenv_bad_line(folder: Path) -> tuple[Path, str]:
    (folder / ".env").write_text("GOOD=1\nthis is not an assignment\n")
    spec(folder, GROUPS)
    return folder / "spec.yml", f"@{folder / '.env'}:2: not a NAME=value line"


def ssh_key_is_a_folder(folder: Path) -> tuple[Path, str]:
    (folder / "keys").mkdir()
    return spec(folder, "name: x\nssh:\n  key: keys\ngroups:\n  web: {}\n"), \
        ":3: ssh.key: keys is a folder, not a private key file"


def ssh_key_is_public(folder: Path) -> tuple[Path, str]:
    (folder / "id.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDx me@host\n")
    return spec(folder, "name: x\nssh: {key: id.pub}\ngroups:\n  web: {}\n"), \
        ":2: ssh.key: id.pub is a public key"


def ssh_key_under_a_file(folder: Path) -> tuple[Path, str]:
    (folder / "notes").write_text("x")
    return spec(folder, "name: x\nssh: {key: notes/id_ed25519}\ngroups:\n  web: {}\n"), \
        ":2: ssh.key: notes/id_ed25519: a part of the path is a file, not a folder"


def newline_in_a_key(folder: Path) -> tuple[Path, str]:
    return spec(folder, 'name: x\ngroups:\n  web: {"co\\nunt": 3}\n'), ":3: groups.web.co\\nunt: unknown key"


def unclosed_reference(folder: Path) -> tuple[Path, str]:
    return spec(folder, "name: x\ngroups:\n  web:\n    image: ${UNSET\n"), \
        ":4: groups.web.image: ${UNSET is not closed with }"


CASES = [
    alias_bomb, merge_key_bomb, recursive_alias, deep_flow, deep_block, deep_through_aliases,
    tag_case("!!python/object/apply:os.system ['echo pwned']"),
    tag_case("!!python/object/new:os.system [x]"),
    tag_case("!!python/name:os.system"),
    tag_case("!!binary aGVsbG8="),
    tag_case("!!set {a, b}"),
    tag_case("!!omap [a: 1]"),
    tag_case("!local {}"),
    huge_file, many_values, nul_byte, lone_surrogate, control_character, invalid_utf8, random_bytes, huge_integer,
    spec_is_a_link_loop, spec_is_a_folder, spec_is_dev_zero, spec_is_a_fifo, spec_through_a_file,
    script_link_loop, script_broken_link_in_folder, script_is_a_fifo, script_is_dev_zero, empty_scripts_folder,
    teardown_is_a_folder, script_random_bytes, script_nested_template,
    dotenv_random_bytes, dotenv_link_loop, dotenv_bad_line,
    ssh_key_is_a_folder, ssh_key_is_public, ssh_key_under_a_file, newline_in_a_key, unclosed_reference,
]


Build = Callable[[Path], tuple[Path, str]]


@pytest.mark.parametrize("build", CASES, ids=lambda build: build.__name__)
@pytest.mark.scenario
def test_hostile_input_is_one_located_line(tmp_path: Path, home: Path, build: Build) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    path, expected = build(folder)
    # "@FILE…": the message is about another file than the spec (a script, the .env); else it follows the spec's path
    prefix = expected[1:] if expected.startswith("@") else f"{path}{expected}"
    for command in ("validate", "plan"):
        result = run(command, str(path), cwd=tmp_path)
        lines = result.stderr.splitlines()
        assert result.returncode == 2, (command, result.returncode, result.stderr[-2000:])
        assert len(lines) == 1, (command, result.stderr[-2000:])
        assert lines[0].startswith(prefix), (command, lines[0][:500], prefix)
        assert "Traceback" not in result.stderr + result.stdout
        assert "internal error" not in result.stderr
        if not expected.startswith("@") and expected[:1] == ":" and expected[1:2].isdigit():
            assert re.match(re.escape(str(path)) + r":\d+: ", lines[0])
    assert not (home / "local").exists() or not any((home / "local").iterdir())


def test_a_spec_path_with_a_newline_is_still_one_line(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "bad\nname.yml"
    path.write_text("name: x\ngroups:\n  web: {count: true}\n")
    result = run("validate", str(path), cwd=tmp_path)
    assert result.returncode == 2
    shown = f"{tmp_path}/bad\\nname.yml"  # escaped: a file name cannot break the one line
    assert result.stderr.splitlines() == [f"{shown}:3: groups.web.count: must be a number, not true/false"]


def test_a_dotenv_folder_is_not_a_dotenv_file(tmp_path: Path, home: Path) -> None:
    """A virtualenv named .env beside the spec is ignored, not an error."""
    (tmp_path / ".env" / "bin").mkdir(parents=True)
    path = spec(tmp_path, GROUPS)
    result = run("validate", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
