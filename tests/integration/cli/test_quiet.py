"""No library's warning reaches a user: the README's commands print none, ``--debug`` shows them again, and
a program that imports cloudherd keeps its own warnings."""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HELLO, REPO, cli
from packaging.requirements import Requirement

from cloudherd.quiet import LIBRARIES

# The commands of the README that need no cloud, in an order that makes sense on one fresh HOME: the hello
# tutorial's fleet, the formats, the server's users and tokens.  Each must be in the README as shown.
README_COMMANDS = [
    "--version",
    "--help",
    "validate examples/hello/cloudherd.yml",
    "plan examples/hello/cloudherd.yml",
    "up examples/hello/cloudherd.yml",
    "ls",
    "status hello",
    "status hello --json",
    "exec hello hostname",
    "exec hello 'cat site/index.html' --group web --json",
    "logs hello hello-web-1",
    "events hello",
    "history hello",
    "scale hello web +1",
    "convert examples/hello/cloudherd.yml",
    "user add alice",
    "token create --user alice",
    "token ls",
    "down hello",
    "ls --all",
]
# a library's warning as Python prints it: "path:line: SomeWarning: text"
WARNING_LINE = re.compile(r"\w*Warning\b")


def _shown(command: str) -> bool:
    """The README shows the command (its sub-command, for the ones given here with other arguments)."""
    first = command.split()[0]
    return first.startswith("--") or f"cloudherd {first}" in REPO.joinpath("README.md").read_text()


def _argv(command: str) -> list[str]:
    import shlex

    return shlex.split(command)


@pytest.mark.usefixtures("home")
def test_the_readme_commands_print_no_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    missing = [c for c in README_COMMANDS if not _shown(c)]
    assert not missing, f"no longer in the README: {missing}"
    assert HELLO.is_file()
    seen = []
    for command in README_COMMANDS:
        done = cli(*_argv(command))
        assert done.returncode == 0, f"cloudherd {command}: {done.stderr or done.stdout}"
        noisy = [line for line in (done.stderr + done.stdout).splitlines() if WARNING_LINE.search(line)]
        assert not noisy, f"cloudherd {command} printed a warning: {noisy[0]}"
        seen.append(command)
    assert seen == README_COMMANDS


# a warning made at a library's frame, as cryptography's DSA notice is made at asyncssh's
LIBRARY_WARNS = ("exec(compile('import warnings\\nwarnings.warn(\"from a library\", UserWarning)', 'lib.py', 'exec'),"
                 " {'__name__': 'sqlalchemy.fake'})\n")


def _library_warning_program() -> str:
    return "import warnings, cloudherd\n" + LIBRARY_WARNS + "warnings.warn('from the program', UserWarning)\n"


def test_a_program_keeps_its_own_warnings_and_loses_the_libraries() -> None:
    done = subprocess.run([sys.executable, "-c", _library_warning_program()], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "from the program" in done.stderr
    assert "from a library" not in done.stderr


def test_pythonwarnings_shows_the_libraries_warnings_again() -> None:
    done = subprocess.run([sys.executable, "-W", "default", "-c", _library_warning_program()],
                          capture_output=True, text=True, timeout=60)
    assert "from a library" in done.stderr
    assert "from the program" in done.stderr


def test_debug_shows_the_libraries_warnings(tmp_path: Path) -> None:
    """--debug undoes the CLI's silence: a warning a library makes while a command runs is shown."""
    # sitecustomize: a library warns as the command ends, under the filters the command set
    hook = "import atexit\natexit.register(lambda: " + LIBRARY_WARNS.strip() + ")\n"
    tmp_path.joinpath("sitecustomize.py").write_text(hook)
    env = {"PYTHONPATH": str(tmp_path), "CLOUDHERD_HOME": str(tmp_path / "home")}
    quiet = cli("ls", env=env)
    loud = cli("--debug", "ls", env=env)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert "from a library" not in quiet.stderr
    assert "from a library" in loud.stderr


def _closure(root: str, extras: set[str]) -> set[str]:
    """The distributions ``root`` installs with ``extras``, directly or through another."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(root, extras)]
    names = set()
    while todo:
        name, wanted = todo.pop()
        key = (re.sub(r"[-_.]+", "-", name).lower(), frozenset(wanted))
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (wanted or {""})):
                continue
            todo.append((req.name, set(req.extras)))
    return names - {root}


def test_the_quiet_list_names_every_library_cloudherd_installs() -> None:
    extras = {e for e in metadata.metadata("cloudherd").get_all("Provides-Extra") or [] if e not in ("dev", "bench")}
    wanted = _closure("cloudherd", extras)
    modules: set[str] = set()
    for module, dists in metadata.packages_distributions().items():
        if {re.sub(r"[-_.]+", "-", d).lower() for d in dists} & wanted:
            modules.add(module)
    assert wanted and modules, "no dependencies found: is cloudherd installed?"
    missing = sorted(modules - set(LIBRARIES))
    assert not missing, f"add to cloudherd.quiet.LIBRARIES: {missing}"
