"""Secrets stay secret (#11): a group's ``env`` never appears on a command line of the node while a
script or an ``exec`` command runs (every process's /proc/PID/cmdline is scanned, as any user of the
machine could), yet reaches the command intact; nothing on the node keeps it afterwards.  And the
data folder, state database and keys are their owner's only, from creation, whatever the umask."""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import cli, wait_until

from cloudherd.api import SyncClient
from cloudherd.remote.envelope import MISSING_EXIT, stdin_for
from cloudherd.remote.scripts import in_workdir, script_command

pytestmark = pytest.mark.usefixtures("home")

# The node's side waits for the test's "go" file (bounded: 60 s), after saying it started.
WAIT_FOR_GO = 'i=0; while [ ! -e {go} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done'
MULTILINE = "first line\n  it's \"quoted\" $HOME `hostname` \\ back\n\n"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def command_lines_holding(needle: str) -> list[str]:
    """Every process of the machine whose command line holds ``needle``: what `ps` would show anyone."""
    found = []
    raw = needle.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if raw in cmdline:
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")[:300]
            found.append(f"{entry.name}: {shown}")
    return found


def files_holding(folder: Path, needle: str) -> list[Path]:
    raw = needle.encode()
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and raw in p.read_bytes()]


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """``work`` started in a thread; the list gets its result, or the exception it raised."""
    out: list[object] = []

    def body() -> None:
        try:
            out.append(work())
        except BaseException as exc:  # handed to the test, which raises it
            out.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, out


def finished(thread: threading.Thread, out: list[object]) -> object:
    thread.join(timeout=120)
    assert not thread.is_alive(), "the command did not finish"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A secret written in the spec itself, and one the spec takes from the environment as ``${VAR}``."""
    literal, from_env = f"s3cr3t-{secrets.token_hex(8)}", f"pw-{secrets.token_hex(8)}"
    monkeypatch.setenv("CH_TEST_DB_PASSWORD", from_env)
    yield literal, from_env


def write_spec(folder: Path, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scripts").mkdir(exist_ok=True)
    (folder / "scripts" / "10-use-secret.sh").write_text(script)
    spec = folder / "cloudherd.yml"
    spec.write_text(
        "name: hush\n"
        "groups:\n"
        "  app:\n"
        "    count: 1\n"
        "    scripts: [scripts/]\n"
        "    env:\n"
        "      API_TOKEN: \"{{TOKEN}}\"\n"
        "      DB_PASSWORD: ${CH_TEST_DB_PASSWORD}\n"
        "      MULTI: \"first line\\n  it's \\\"quoted\\\" $HOME `hostname` \\\\ back\\n\\n\"\n"
    )
    return spec


def work_folder(home: Path) -> Path | None:
    found = list((home / "local").glob("ln-*/work")) if (home / "local").is_dir() else []
    return found[0] if found else None


def test_script_env_is_never_on_a_command_line(server: str, home: Path, tmp_path: Path,
                                               tokens: tuple[str, str]) -> None:
    literal, from_env = tokens
    script = (
        "#!/bin/sh\n"
        'printf %s "$API_TOKEN" | sha256sum | cut -d" " -f1 > token.sha\n'
        'printf %s "$DB_PASSWORD" | sha256sum | cut -d" " -f1 > password.sha\n'
        'printf %s "$MULTI" > multi.txt\n'
        "cat > stdin.txt\n"  # the script's own stdin: nothing (the environment line is not in it)
        ": > started\n"
        + WAIT_FOR_GO.format(go="go") + "\n"
    )
    spec = write_spec(tmp_path / "spec", script)
    spec.write_text(spec.read_text().replace("{{TOKEN}}", literal))
    thread, out = in_thread(lambda: SyncClient().up(spec))
    started = wait_until(lambda: (w := work_folder(home)) and (w / "started").exists() and w, timeout=120,
                         what="the script to start on the node")
    assert isinstance(started, Path)
    try:
        # the script is running now (waiting for "go"): the node's sshd, shells and children are all alive
        assert command_lines_holding(literal) == []
        assert command_lines_holding(from_env) == []
    finally:
        (started / "go").touch()
    infra_id = finished(thread, out)
    assert (started / "token.sha").read_text().strip() == sha(literal)
    assert (started / "password.sha").read_text().strip() == sha(from_env)
    assert (started / "multi.txt").read_text() == MULTILINE
    assert (started / "stdin.txt").read_text() == ""
    node_folder = started.parent
    # nothing on the node kept a value: no env file left behind, not the stored script, not the server's log
    assert files_holding(node_folder, literal) == []
    assert files_holding(node_folder, from_env) == []
    stored = node_folder / "work" / ".cloudherd" / "scripts" / "10-use-secret.sh"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o700
    herd = SyncClient()
    herd.down(str(infra_id))


def test_exec_env_is_never_on_a_command_line_and_stdin_stays_the_commands(
        server: str, home: Path, tmp_path: Path, tokens: tuple[str, str]) -> None:
    literal, from_env = tokens
    spec = write_spec(tmp_path / "spec", "echo ready\n")
    spec.write_text(spec.read_text().replace("{{TOKEN}}", literal))
    herd = SyncClient()
    infra_id = herd.up(spec)
    work = work_folder(home)
    assert work is not None
    command = (
        'printf %s "$API_TOKEN" | sha256sum | cut -d" " -f1 > exec-token.sha; '
        'printf %s "$DB_PASSWORD" | sha256sum | cut -d" " -f1 > exec-password.sha; '
        'printf %s "$MULTI" > exec-multi.txt; cat > exec-stdin.txt; : > exec-started; '
        + WAIT_FOR_GO.format(go="exec-go") + "; echo done"
    )
    thread, out = in_thread(lambda: SyncClient().exec(infra_id, command))
    try:
        wait_until((work / "exec-started").exists, timeout=60, what="the exec command to start")
        assert command_lines_holding(literal) == []
        assert command_lines_holding(from_env) == []
    finally:
        (work / "exec-go").touch()
    results = finished(thread, out)
    assert isinstance(results, list) and len(results) == 1
    assert results[0].ok and results[0].stdout.strip() == "done", results
    assert (work / "exec-token.sha").read_text().strip() == sha(literal)
    assert (work / "exec-password.sha").read_text().strip() == sha(from_env)
    assert (work / "exec-multi.txt").read_text() == MULTILINE
    # the command's stdin is its own: the environment line was taken off it by the shell before
    assert (work / "exec-stdin.txt").read_text() == ""
    assert files_holding(work.parent, literal) == []
    herd.down(infra_id)


def run_line(line: str, stdin: str, work: Path) -> subprocess.CompletedProcess[str]:
    """A remote line run by the POSIX shell a node would use (sh -c), with the node's work folder."""
    return subprocess.run(["sh", "-c", line], input=stdin, capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"], "CLOUDHERD_WORK": str(work)})


def test_exec_input_after_the_environment_reaches_the_command(tmp_path: Path) -> None:
    line = in_workdir('printf "%s|" "$K"; cat', {"K": "v a l"})
    done = run_line(line, stdin_for(line, "the command's own input\n"), tmp_path / "work")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "v a l|the command's own input\n"


def test_a_command_that_lost_its_environment_refuses_instead_of_evaluating_its_input(tmp_path: Path) -> None:
    for line in (str(in_workdir("echo ran", {"K": "v"})), str(script_command("10-x.sh", {"K": "v"}))):
        done = run_line(line, "touch pwned\necho ran\n", tmp_path / "work")
        assert done.returncode == MISSING_EXIT
        assert "environment did not arrive" in done.stderr
        assert "ran" not in done.stdout
        assert not (tmp_path / "work" / "pwned").exists() and not (tmp_path / "pwned").exists()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, which alone would leave new files readable by everyone (0644 / 0755)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def private_files(home: Path) -> dict[str, int]:
    names = ["", "state.db", "state.db-wal", "state.db-shm", "keys", "keys/id_ed25519"]
    return {name or ".": mode(home / name) for name in names if (home / name).exists()}


@pytest.mark.usefixtures("umask_022")
def test_init_makes_the_data_folder_database_and_keys_private(home: Path) -> None:
    assert not home.exists()
    done = cli("init", env={"CLOUDHERD_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    found = private_files(home)
    assert {".", "state.db", "keys", "keys/id_ed25519"} <= set(found)
    expected = {name: 0o700 if (home / name).is_dir() else 0o600 for name in found}
    assert found == expected
    assert (home / "keys" / "id_ed25519.pub").exists()


@pytest.mark.usefixtures("umask_022")
def test_looser_files_an_older_version_left_are_tightened_on_use(home: Path) -> None:
    assert cli("init").returncode == 0
    for path, loose in ((home, 0o755), (home / "keys", 0o755), (home / "keys" / "id_ed25519", 0o644),
                        (home / "state.db", 0o644)):
        os.chmod(path, loose)
    done = cli("init")  # uses the database and the key again
    assert done.returncode == 0, done.stderr
    found = private_files(home)
    assert found == {name: 0o700 if (home / name).is_dir() else 0o600 for name in found}


@pytest.mark.usefixtures("umask_022")
def test_local_node_host_keys_are_private(server: str, home: Path, tmp_path: Path) -> None:
    spec = tmp_path / "cloudherd.yml"
    spec.write_text("name: keys\ngroups:\n  n:\n    count: 1\n")
    herd = SyncClient()
    infra_id = herd.up(spec)
    keys = list((home / "local").glob("ln-*/ssh_host_ed25519_key"))
    assert len(keys) == 1 and mode(keys[0]) == 0o600
    assert mode(home / "local") == 0o700
    herd.down(infra_id)
