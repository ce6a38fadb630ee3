"""py-smartdc's published tutorial, run on real local nodes through ``cloudherd.compat.smartdc``.

The tutorial's code blocks are read from the seed file (py-smartdc's ``docs/tutorial.rst``) when the test runs,
and run statement by statement, as a user types them into a Python session: an expression's value is what
the session would show, and the tests assert on those values.  What is changed, and nothing else:

* the import line: ``from smartdc import …`` → ``from cloudherd.compat.smartdc import …``;
* the data-center names: ``location='us-sw-1'`` and ``datacenter('us-east-1')`` → ``'local'``;
* Python 2's ``print x`` → ``print(x)``;
* ``import ssh`` (the old paramiko fork, not installed here): :class:`SshStandIn`, a minimal stand-in with the
  calls the tutorial makes, built on the ``ssh`` binary (see its docstring).

Two things of the tutorial are facts of the SmartOS image on Joyent, not of py-smartdc's calls: the machine's
``admin`` account (the boot script writes to ``/home/admin``, the session logs in as ``admin``).  A local
node's login user is this computer's (or root).  ``test_the_tutorial_as_written_stops_at_the_smartos_boot_script``
runs them as written and checks the error the user sees; the full run changes exactly those two to the local
node's account (``$HOME``, its login user).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from cloudherd import DataCenter as ApiDataCenter
from cloudherd.api import AsyncDataCenter
from cloudherd.api.datacenter import BootScriptError
from cloudherd.compat import smartdc
from cloudherd.compat.smartdc import DEBUG_CONFIG, DataCenter, Machine
from cloudherd.errors import UsageError
from cloudherd.providers.base import CreateRequest, Image, Instance, Provider

SEED = Path(os.environ.get("CLOUDHERD_SMARTDC_SEED", "/work/shared/seeds/002_cf1874daaf55c8e6.txt"))

# (what the tutorial says, what runs here, how many times it occurs)
CHANGES = [
    ("from smartdc import DataCenter, DEBUG_CONFIG",
     "from cloudherd.compat.smartdc import DataCenter, DEBUG_CONFIG", 1),
    ("location='us-sw-1'", "location='local'", 1),
    ("sdc.datacenter('us-east-1')", "sdc.datacenter('local')", 1),
]
# the SmartOS image's account, for the local node's (see the module's docstring)
SMARTOS_HOME = ("touch /home/admin/FTW", "touch $HOME/FTW")
SMARTOS_LOGIN = "username='admin'"


# -- the seed --------------------------------------------------------------------------------------------------


def tutorial_blocks() -> list[str]:
    """The literal blocks of the reStructuredText seed (``::`` then indented lines), dedented, in order.

    A directive (``.. Note::``) is prose, not code."""
    if not SEED.is_file():
        pytest.skip(f"py-smartdc's tutorial (the seed) is not at {SEED}; set CLOUDHERD_SMARTDC_SEED")
    lines = SEED.read_text().splitlines()
    blocks: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.rstrip().endswith("::") or line.lstrip().startswith(".. "):
            continue
        body: list[str] = []
        while index < len(lines) and (not lines[index].strip() or lines[index].startswith("    ")):
            body.append(lines[index])
            index += 1
        code = textwrap.dedent("\n".join(body)).strip()
        if code:
            blocks.append(code + "\n")
    return blocks


def translated(code: str) -> str:
    """A block with the changes of the module's docstring made (the Python 2 print included)."""
    for old, new, _ in CHANGES:
        code = code.replace(old, new)
    return re.sub(r"^(\s*)print (.+)$", r"\1print(\2)", code, flags=re.MULTILINE)


def test_the_seed_is_py_smartdcs_tutorial_and_each_change_applies_once() -> None:
    blocks = tutorial_blocks()
    text = "".join(blocks)
    assert len(blocks) == 16 and blocks[0].startswith("from smartdc import DataCenter, DEBUG_CONFIG")
    for old, _, times in CHANGES:
        assert text.count(old) == times, old
    assert text.count(SMARTOS_HOME[0]) == 1 and text.count(SMARTOS_LOGIN) == 1
    assert len(re.findall(r"^\s*print ", text, flags=re.MULTILINE)) == 1
    for block in blocks:
        ast.parse(translated(block))  # every block is Python 3 once changed


# -- the ssh stand-in ------------------------------------------------------------------------------------------


class _Output:
    """paramiko's ChannelFile, as the tutorial uses it: iterating gives text lines, ``read()`` bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data.decode().splitlines(keepends=True))

    def read(self) -> bytes:
        return self.data


class SshStandIn:
    """The calls of the old ``ssh`` package (paramiko's fork) that the tutorial makes, on the ``ssh`` binary.

    As paramiko: port 22 unless given, the user's own keys (``~/.ssh/id_rsa`` and the like, ``~`` being
    ``$HOME``, as ``os.path.expanduser`` reads it), the host key accepted and not kept under AutoAddPolicy;
    ``exec_command`` returns stdin, stdout and stderr (here once the command ended)."""

    class AutoAddPolicy:
        pass

    class SSHClient:
        def __init__(self) -> None:
            self.target: list[str] | None = None
            self.accept_new = False

        def set_missing_host_key_policy(self, policy: object) -> None:
            self.accept_new = isinstance(policy, SshStandIn.AutoAddPolicy)

        def connect(self, hostname: str, port: int = 22, username: str | None = None) -> None:
            keys = [str(Path(f"~/.ssh/{name}").expanduser()) for name in ("id_rsa", "id_ecdsa", "id_ed25519")]
            options = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                       "-o", "ConnectTimeout=30", "-p", str(port)]
            if self.accept_new:
                options += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
            options += [arg for key in keys if Path(key).is_file() for arg in ("-i", key)]
            self.target = ["ssh", *options, f"{username or os.environ.get('USER', 'root')}@{hostname}"]
            self.exec_command("true", check=True)

        def exec_command(self, command: str, check: bool = False) -> tuple[None, _Output, _Output]:
            assert self.target is not None, "connect first"
            done = subprocess.run([*self.target, command], capture_output=True, timeout=120,
                                  stdin=subprocess.DEVNULL)
            if check and done.returncode != 0:
                raise OSError(f"ssh {self.target[-1]}: {done.stderr.decode().strip()}")
            return None, _Output(done.stdout), _Output(done.stderr)

        def close(self) -> None:
            self.target = None


# -- running it ---------------------------------------------------------------------------------------------


class Session:
    """An interactive Python session: statements run in one namespace, each expression's value kept."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"__name__": "tutorial"}
        self.shown: list[tuple[str, Any, Any]] = []  # (source, value, its state when shown, if it has one)

    def run(self, code: str) -> None:
        for statement in ast.parse(code).body:
            source = ast.get_source_segment(code, statement) or ""
            if isinstance(statement, ast.Expr):
                value = eval(compile(ast.Expression(statement.value), "tutorial.rst", "eval"), self.namespace)
                self.shown.append((source, value, getattr(value, "state", None)))
            else:
                exec(compile(ast.Module([statement], []), "tutorial.rst", "exec"), self.namespace)

    def value(self, source: str) -> Any:
        return self._shown(source)[1]

    def state_shown(self, source: str) -> Any:
        return self._shown(source)[2]

    def _shown(self, source: str) -> tuple[str, Any, Any]:
        found = [item for item in self.shown if item[0] == source]
        assert len(found) == 1, f"{len(found)} values shown for {source!r}"
        return found[0]


@pytest.fixture
def user_home(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A py-smartdc user's home: ``~/.ssh/id_rsa`` (the tutorial's ``secret``) exists; no agent."""
    folder = tmp_path / "user"
    (folder / ".ssh").mkdir(parents=True, mode=0o700)
    key = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    (folder / ".ssh" / "id_rsa").write_bytes(key.export_private_key())
    (folder / ".ssh" / "id_rsa").chmod(0o600)
    (folder / ".ssh" / "id_rsa.pub").write_bytes(key.export_public_key())
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ssh", types.SimpleNamespace(SSHClient=SshStandIn.SSHClient,
                                                                  AutoAddPolicy=SshStandIn.AutoAddPolicy))
    return folder


def test_the_tutorial_runs_on_local_nodes(user_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("the tutorial's ssh session connects to port 22 (paramiko's default): a local node listens "
                    "there only when cloudherd runs as root")
    blocks = [translated(b) for b in tutorial_blocks()]
    session = Session()
    for block in blocks[:-1]:  # the advanced example is for many accumulated test machines: see below
        if SMARTOS_HOME[0] in block:
            block = block.replace(*SMARTOS_HOME)
        if SMARTOS_LOGIN in block:
            login = session.namespace["test_machine"].instance.ssh_user
            block = block.replace(SMARTOS_LOGIN, f"username={login!r}")
        session.run(block)

    out, err = capsys.readouterr()
    keys = session.value("sdc.keys()")
    public = (user_home / ".ssh" / "id_rsa.pub").read_text().strip()
    assert [(k["name"], k["key"]) for k in keys] == [("test_key", public)]
    assert re.fullmatch(r"([0-9a-f]{2}:){15}[0-9a-f]{2}", keys[0]["fingerprint"])
    assert session.value("east.datasets()") == [{"id": "host", "urn": "host", "name": "host"}]
    latest64 = session.namespace["latest64"]
    assert latest64 == {"id": "sdc:sdc:smartos64:", "urn": "sdc:sdc:smartos64:", "name": "host"}
    assert session.value("east.default_package()")["name"] == "host"
    assert session.value("sdc.packages('high[- ]cpu')") == [] and session.value("east.datasets('smartos(64)?:')") == []

    machine = session.namespace["test_machine"]
    assert isinstance(machine, Machine) and machine.name == "test-machine" and machine.tags["type"] == "test"
    # package='Small 1GB' is size small: 1 cpu, 1 GiB (limits a sandboxed node has; one on the host has none)
    assert machine.instance.extra["limits"] == "1 cpu, 1 GiB" or not machine.instance.extra["isolated"]
    assert session.state_shown("test_machine.poll_while('provisioning', interval=3)") == "running"
    assert session.value("test_machine == east.machines(name='test-machine')[0]") is True
    assert machine.public_ips == [machine.address]  # a local node's one address, reached from here
    assert session.value("dict(ln.split(None,1) for ln in rout)") == {}  # Debian has no pkgin: nothing listed
    assert out == "b'FTW\\n'\n"  # print(ssh_conn.exec_command('ls')[1].read()): the boot script fired
    assert session.state_shown("test_machine.poll_until('stopped')") == "stopped"
    assert machine.status() == "deleted"
    # DEBUG_CONFIG: each provider call echoed on stderr, as py-smartdc echoed each CloudAPI request
    echoed = [line.split(": ", 1)[1] for line in err.splitlines() if " cloudherd local (local): " in line]
    assert {"create", "list", "stop", "terminate", "images", "sizes"} <= set(echoed)

    # the advanced example: the accumulated test machines, stopped and deleted all at once
    east = session.namespace["east"]
    accumulated = [east.create_machine(name=f"test-{n}", tags={"type": "test"}) for n in range(3)]
    session.run(blocks[-1])
    assert session.value("simultaneous.map(methodcaller('status'), test_machines)") == ["stopped"] * 3
    assert session.value("east.num_machines(tags={'type':'test'}) == 0") is True
    assert all(m.status() == "deleted" for m in accumulated)
    assert east.num_machines() == 0


def test_the_tutorial_as_written_stops_at_the_smartos_boot_script(user_home: Path) -> None:
    session = Session()
    blocks = [translated(b) for b in tutorial_blocks()]
    creating = next(i for i, b in enumerate(blocks) if "east.create_machine" in b)
    for block in blocks[:creating]:
        session.run(block)
    with pytest.raises(BootScriptError, match=r"boot script exited \d+: .*/home/admin/FTW.* \(the machine is "
                                              r"left running\)") as caught:
        session.run(blocks[creating])
    assert isinstance(caught.value.machine, Machine) and caught.value.machine.state == "running"
    caught.value.machine.delete()


# -- each gap, on its own ----------------------------------------------------------------------------------------


def test_debug_config_and_verbose_echo_each_call_to_stderr(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = DataCenter("local")
    quiet.num_machines()
    assert capsys.readouterr().err == ""
    DataCenter("local", config=DEBUG_CONFIG).num_machines()
    assert re.fullmatch(r"\S+ cloudherd local \(local\): list\n", capsys.readouterr().err)
    DataCenter("local", verbose=True).packages()
    assert capsys.readouterr().err.count(": sizes\n") == 1
    assert repr(DEBUG_CONFIG) == "{'verbose': <stderr>}"


def test_unknown_and_http_only_keywords_are_refused_by_name(home: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"location 'us-sw-1': not a data center cloudherd has a driver for; "
                                         r"locations are 'local', 'aws:REGION', 'gce:ZONE', 'libcloud:DRIVER'"):
        DataCenter(location="us-sw-1")
    with pytest.raises(UsageError, match="secret '~/nosuch/id_rsa': no such private key"):
        DataCenter("local", secret="~/nosuch/id_rsa")
    for keyword, value in (("headers", {"X": "1"}), ("known_locations", {}), ("allow_agent", True),
                           ("verify", False)):
        with pytest.raises(UsageError, match=f"keyword '{keyword}' has no meaning here"):
            DataCenter("local", **{keyword: value})
    with pytest.raises(UsageError, match=r"config key 'timeout' has no meaning here: .*cloudherd calls echo="):
        DataCenter("local", config={"timeout": 3})
    with pytest.raises(UsageError, match=r"unknown keyword 'rooot' for a local provider .*root"):
        DataCenter("local", rooot=str(tmp_path))  # a provider setting misspelt: not kept unread
    # cloudherd's own DataCenter: py-smartdc's four keywords refused with what cloudherd calls them
    for keyword, calls in (("location", "the provider"), ("key_id", "the public half of key="),
                           ("secret", "key="), ("config", "echo=")):
        with pytest.raises(UsageError, match=f"unknown keyword '{keyword}': cloudherd calls it .*{re.escape(calls)}"):
            ApiDataCenter("local", **{keyword: "x"})
    with pytest.raises(UsageError, match="unknown keyword 'regoin' for a aws provider"):
        ApiDataCenter("aws", regoin="us-east-1")
    assert ApiDataCenter("local", root=str(tmp_path / "nodes"), budget={"rate": 5}).num_machines() == 0


def test_locations_name_a_provider_and_its_place() -> None:
    assert smartdc.parse_location("local") == ("local", {})
    assert smartdc.parse_location("aws:us-east-1") == ("aws", {"region": "us-east-1"})
    assert smartdc.parse_location("gce:europe-west1-b") == ("gce", {"zone": "europe-west1-b"})
    assert smartdc.parse_location("libcloud:openstack") == ("libcloud", {"driver": "openstack"})
    for joyent in ("us-east-1", "eu-ams-1", "local:x"):
        with pytest.raises(UsageError, match="not a data center cloudherd has a driver for"):
            smartdc.parse_location(joyent)


def test_keys_and_datacenter_keep_the_credentials_and_preferences(user_home: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    sdc = DataCenter(location="local", key_id="/jo/keys/laptop", secret="~/.ssh/id_rsa", config=DEBUG_CONFIG)
    assert (sdc.login, repr(sdc)) == ("jo", "<cloudherd.compat.smartdc.DataCenter: jo@local>")
    other = sdc.datacenter("local")
    assert other.keys() == sdc.keys() and other.keys()[0]["name"] == "laptop"
    assert (other.key_id, other.login, other.secret, other.api.aio.user) == (
        "/jo/keys/laptop", "jo", "~/.ssh/id_rsa", sdc.api.aio.user)
    capsys.readouterr()
    other.num_machines()
    assert ": list\n" in capsys.readouterr().err  # the echo came along
    # the key a machine is made with is the one keys() lists: the user's own key logs in
    machine = other.create_machine(name="k")
    client = SshStandIn.SSHClient()
    client.set_missing_host_key_policy(SshStandIn.AutoAddPolicy())
    client.connect(machine.address or "", port=machine.instance.port, username=machine.instance.ssh_user)
    assert client.exec_command("echo hi")[1].read() == b"hi\n"
    machine.delete()
    # without secret=: cloudherd's own key, named by its file
    assert ApiDataCenter("local").keys()[0]["name"] == smartdc.DataCenter("local").keys()[0]["name"]
    with pytest.raises(UsageError, match="not a data center"):
        sdc.datacenter("us-east-1")


def test_create_machine_takes_package_and_dataset_and_machines_speak_py_smartdc(home: Path, tmp_path: Path) -> None:
    east = DataCenter("local")
    assert east.package("Small 1GB") == east.package("small") == east.package({"name": "SMALL"})
    assert east.package("small")["memory"] == 1024
    for wrong in ("Small 2GB", "Huge 1GB", "sm"):
        with pytest.raises(UsageError, match=f"no package '{wrong}' on local \\(its sizes: host, nano"):
            east.package(wrong)
    machine = east.create_machine(name="m", package="Micro 512MB", dataset=east.dataset("ho"),
                                  tags={"type": "test"})
    assert machine.instance.extra["isolated"] is False or "512" in str(machine.instance.extra["limits"])
    assert (machine.state, machine.status(), machine.public_ips, machine.ips) == (
        "running", "running", [machine.address], [machine.address])
    assert east.machines(state="running") == [machine] and east.machine({"id": machine.id}) == machine
    machine.stop()
    assert machine.poll_until("stopped", 0.05, timeout=60).status() == "stopped"
    assert east.machines(state="stopped") == [machine]
    machine.delete()
    assert machine.poll_until("deleted", 0.05, timeout=60).state == "deleted"
    for keyword, value in (("metadata", {"a": 1}), ("credentials", True), ("networks", ["n"])):
        with pytest.raises(UsageError, match=f"create_machine: keyword '{keyword}' is not supported"):
            east.create_machine(**{keyword: value})
    with pytest.raises(UsageError, match="dataset= and image= both"):
        east.create_machine(dataset="host", image="host")
    assert east.num_machines() == 0


def test_status_and_public_ips_on_the_api(home: Path) -> None:
    with ApiDataCenter("local") as dc:
        machine = dc.create_machine(name="s")
        assert machine.status() == "running" and machine.public_ips == machine.private_ips == [machine.address]
        machine.stop()
        assert machine.state == "running"  # the handle is what it last read...
        assert machine.status() == "stopped" and machine.state == "stopped"  # ...status() reads again
        machine.delete()
        assert machine.status() == "terminated"


class Catalog(Provider):
    """A provider with only images: several versions of two lines, as clouds list them."""

    type = "catalog"

    def __init__(self, images: list[Image]) -> None:
        super().__init__("catalog")
        self._images = images

    async def create(self, request: CreateRequest) -> list[Instance]:
        raise NotImplementedError

    async def list(self, tags: Any) -> list[Instance]:
        return []

    async def terminate(self, ids: Any) -> None:
        return None

    async def images(self, pattern: str | None = None) -> list[Image]:
        return list(self._images)


def test_dataset_by_partial_name_is_the_newest_match() -> None:
    import asyncio

    dated = Catalog([Image("sdc:sdc:smartos64:1.6.3", "smartos64", {"created": "2012-05-01"}),
                     Image("sdc:sdc:smartos64:1.10.0", "smartos64", {"created": "2012-09-01"}),
                     Image("sdc:sdc:smartos64:1.9.9", "smartos64", {"created": "2012-08-01"}),
                     Image("sdc:sdc:smartos:1.6.3", "smartos", {"created": "2013-01-01"})])
    named = Catalog([Image("ami-1", "debian-12-amd64-20240102"), Image("ami-2", "debian-12-amd64-20240210"),
                     Image("ami-3", "debian-12-arm64-20250101")])

    async def scenario() -> None:
        dc = AsyncDataCenter(dated)
        assert (await dc.dataset("sdc:sdc:smartos64:")).id == "sdc:sdc:smartos64:1.10.0"
        assert (await dc.image("sdc:sdc:smartos64:1.6.3")).id == "sdc:sdc:smartos64:1.6.3"  # exact
        assert (await dc.image("sdc:sdc:smartos")).id == "sdc:sdc:smartos:1.6.3"  # newest by created
        assert (await AsyncDataCenter(named).image("debian-12-amd64-")).id == "ami-2"  # newest by version
        with pytest.raises(UsageError, match=r"no image 'centos' \(nor one starting so\) on catalog \(images: "):
            await dc.image("centos")

    asyncio.run(scenario())

