"""The calls users know: OGC's launch / deploy / exec_async / destroy and py-smartdc's DataCenter, on real local nodes.

The README's "Coming from OGC / Occopus / py-smartdc" examples are run as they are written.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HELLO, REPO

import cloudherd
from cloudherd import AsyncDataCenter, BootScriptError, Client, DataCenter, SyncClient
from cloudherd.api import types
from cloudherd.errors import UsageError
from cloudherd.lifecycle import NodeState
from cloudherd.providers.base import TAG_INFRA, TAG_NODE, TAG_OWNER

SECTION = "## Coming from OGC / Occopus / py-smartdc"


def readme_blocks() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    return re.findall(r"```python\n(.*?)```\n", section, flags=re.DOTALL)


def run_block(code: str) -> None:
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})


def readme_block(marker: str) -> str:
    """The one Python example of the section that contains ``marker``."""
    found = [b for b in readme_blocks() if marker in b]
    assert len(found) == 1, f"{len(found)} README examples contain {marker!r}"
    return found[0]


OGC_SYNC, OGC_ASYNC = "herd.deploy_async(infra.live)", "await herd.launch_async"
OGC_COMPAT, SMARTDC_COMPAT = "from cloudherd.compat.ogc import", "from cloudherd.compat.smartdc import"
SMARTDC, SMARTDC_POOL = "test_machine = east.create_machine", "simultaneous = Pool"
MARKERS = (OGC_COMPAT, OGC_SYNC, OGC_ASYNC, SMARTDC_COMPAT, SMARTDC, SMARTDC_POOL)


def test_every_python_example_of_the_section_is_run_here() -> None:
    blocks = readme_blocks()
    assert len(blocks) == len(MARKERS), "a new Python example in the section: run it in a test here"
    assert {readme_block(m) for m in MARKERS} == set(blocks)


def test_readme_ogc_compat_example(home: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from cloudherd.compat.ogc import actions

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(actions, "_client", None)
    try:
        run_block(readme_block(OGC_COMPAT))
    finally:
        if actions._client is not None:
            actions._client.close()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Successfully deployed"
    assert sorted(out[1:3]) == [f"ogc-demo-web-{i} 0 ogc-demo-web-{i} (web, ubuntu) of 3 nodes" for i in (1, 2)]
    assert out[3].count("Result(") == 3 and "ok=True" in out[3] and "ok=False" not in out[3]
    with SyncClient() as herd:
        assert [n.name for n in herd.infrastructure("ogc-demo").live] == []
        herd.down("ogc-demo")


# -- OGC -----------------------------------------------------------------------------------------------


def test_readme_ogc_sync_example(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                                 ) -> None:
    monkeypatch.chdir(REPO)
    run_block(readme_block(OGC_SYNC))
    out = capsys.readouterr().out
    assert "Successfully deployed" in out
    assert "hello-web-1 ready scripts/20-configure.sh" in out
    assert "['hello-web-1', 'hello-web-2'] 2" in out
    assert out.rstrip().endswith("destroyed")
    with SyncClient() as herd:
        assert [i.state for i in herd.ls(include_destroyed=True)] == ["destroyed"]


def test_readme_ogc_async_example(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                                  ) -> None:
    monkeypatch.chdir(REPO)
    run_block(readme_block(OGC_ASYNC))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(sorted([(f"hello-web-{i}", NodeState.READY) for i in (1, 2, 3)]
                                + [("alive-web-1", NodeState.READY)]))
    pages = eval(out[1])
    assert len(pages) == 3
    # a node's address: on the host's loopback, or its own network's when sandboxed (local_net)
    assert all(page.startswith(tuple(f"Hello from cloudherd: hello-web-{i} ({net}" for net in ("127.", "10.213.")))
               for i, page in enumerate(pages, 1))
    with SyncClient() as herd:
        assert sorted((i.name, i.state) for i in herd.ls(include_destroyed=True)) == [
            ("alive", "destroyed"), ("hello", "destroyed")]


def test_deploy_reruns_the_scripts_on_exactly_the_nodes_given(home: Path) -> None:
    with SyncClient() as herd:
        infra = herd.launch(HELLO)
        assert isinstance(infra, types.Infrastructure) and len(infra.live) == 3
        runs = {n.name: len(herd.logs(infra.id, n.name)) for n in infra.live}
        first, second, third = infra.live
        nodes = herd.deploy_async([first, second.id])  # a Node value and a node id
        assert [n.name for n in nodes] == [first.name, second.name]
        assert all(isinstance(n, types.Node) and n.state == NodeState.READY for n in nodes)
        after = {n.name: len(herd.logs(infra.id, n.name)) for n in infra.live}
        assert after == {first.name: runs[first.name] + 2, second.name: runs[second.name] + 2,
                         third.name: runs[third.name]}  # two scripts each, forced; the third untouched
        assert herd.deploy(third.name).state == NodeState.READY
        assert len(herd.logs(infra.id, third.name)) == runs[third.name] + 2
        assert [e.message for e in herd.events(infra.id) if e.kind == "deploy"] == [
            "scripts re-run on 2 node(s)", "scripts re-run on 1 node(s)"]
        herd.down(infra.id)


def test_a_failing_deploy_is_that_nodes_result_only(home: Path, tmp_path: Path) -> None:
    spec = tmp_path / "cloudherd.yml"
    (tmp_path / "once.sh").write_text("#!/bin/sh\nif [ -f ran ]; then echo 'second run refused' >&2; exit 4; fi\n"
                                      "touch ran\n")
    spec.write_text("name: picky\ngroups:\n  web:\n    provider: local\n    count: 2\n    scripts: [once.sh]\n")
    with SyncClient() as herd:
        infra = herd.launch(spec)
        first, second = infra.live
        workdir = Path(home / "local" / first.provider_id / "work")  # type: ignore[operator]
        (workdir / "ran").unlink()  # the first node may run it again; the second refuses
        nodes = herd.deploy_async(infra)
        assert [(n.name, n.state) for n in nodes] == [(first.name, NodeState.READY), (second.name, NodeState.FAILED)]
        assert "exited 4: second run refused" in (nodes[1].reason or "")
        assert nodes[1].last_action is not None and nodes[1].last_action.exit_code == 4
        herd.down(infra.id)


def test_exec_async_and_destroy_of_nodes(home: Path) -> None:
    with SyncClient() as herd:
        infra = herd.launch(HELLO)
        first, second, third = infra.live
        results = herd.exec_async([first.name, third], "echo $CLOUDHERD_NODE")
        assert [(r.node, r.ok, r.stdout.strip()) for r in results] == [
            (first.name, True, first.name), (third.name, True, third.name)]
        assert {r.node for r in herd.exec_async(infra.id, "true")} == {first.name, second.name, third.name}
        smaller = herd.destroy_async([first, second.id])
        assert len(smaller) == 1 and [n.name for n in smaller[0].live] == [third.name]
        assert smaller[0].groups[0].count == 1
        assert herd.infrastructure(infra.id).live == smaller[0].live  # stays so: an up would not remake them
        assert herd.plan(HELLO).totals.create == 2  # ...unless the spec (count: 3) is applied again
        gone = herd.destroy(infra.name)
        assert gone.state == "destroyed" and gone.live == ()


def test_what_is_not_a_node_or_an_infrastructure(home: Path) -> None:
    with SyncClient() as herd:
        herd.init()
        with pytest.raises(UsageError, match="no infrastructure or live node 'nosuch'"):
            herd.deploy("nosuch")
        with pytest.raises(UsageError, match="no nodes or infrastructures given"):
            herd.exec_async([], "true")
        with pytest.raises(UsageError, match="deploy takes one node"):
            herd.deploy(["a", "b"])  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="timeout must be more than 0"):
            herd.deploy_async("x", timeout=0)


def test_the_async_client_has_the_same_calls(home: Path) -> None:
    async def scenario() -> None:
        async with Client() as herd:
            infra = await herd.launch(HELLO)
            node = await herd.deploy(infra.live[1])
            assert node.name == infra.live[1].name and node.state == NodeState.READY
            assert [r.ok for r in await herd.exec_async(infra, "true")] == [True, True, True]
            assert (await herd.destroy(infra)).state == "destroyed"

    asyncio.run(scenario())


# -- py-smartdc --------------------------------------------------------------------------------------------


def test_readme_smartdc_compat_example(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_block(readme_block(SMARTDC_COMPAT))
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["test_key host", "['host'] host"]
    assert "cloudherd local (local): sizes" in captured.err  # DEBUG_CONFIG's echo


def test_readme_smartdc_example(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    run_block(readme_block(SMARTDC))
    out = capsys.readouterr().out
    assert "Size(name='host'" in out and "default=True" in out
    # a local node's one address, reached from this host, is its public and its private address
    assert re.fullmatch(r"running \['((?:127|10\.213)\.[\d.]+)'\] \['\1'\]", out.splitlines()[1])
    assert DataCenter("local").machines() == []


def test_readme_smartdc_advanced_example(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_block(readme_block(SMARTDC_POOL))
    assert DataCenter("local").num_machines() == 0


def test_create_machine_tags_and_boot_script(home: Path, tmp_path: Path) -> None:
    with DataCenter("local") as dc:
        script = tmp_path / "boot.sh"
        script.write_text("#!/bin/sh\necho \"$(id -un)\" > booted-as\n")
        machine = dc.create_machine(name="box", boot_script=script, tags={"role": "db"})
        assert machine.state == "running"
        assert machine.tags[TAG_OWNER] and machine.tags[TAG_NODE] == "box" and machine.tags["role"] == "db"
        assert TAG_INFRA not in machine.tags  # part of no infrastructure: gc leaves it alone
        workdir = Path(machine.instance.workdir or "")
        assert (workdir / "booted-as").read_text().strip() == machine.tags[TAG_OWNER]
        assert dc.machine(machine.id) == machine == dc.machine("box")
        assert dc.machines(tags={"role": "db"}) == [machine] and dc.machines(name="other") == []
        assert dc.num_machines(tags={"role": "db"}) == 1 and dc.num_machines(tags={"role": "web"}) == 0

        text = dc.create_machine(boot_script="echo from text > t\n")  # text, and a name made up
        assert text.name.startswith("machine-")
        assert (Path(text.instance.workdir or "") / "t").read_text() == "from text\n"
        with SyncClient() as herd:
            assert herd.gc() == []
        for made in (machine, text):
            made.delete()
        assert dc.num_machines() == 0


def test_a_failing_boot_script_leaves_the_machine_to_look_at(home: Path) -> None:
    with DataCenter("local") as dc:
        with pytest.raises(BootScriptError, match=r"boot script exited 3: oops \(the machine is left running\)") \
                as caught:
            dc.create_machine(name="bad", boot_script="echo oops >&2\nexit 3\n")
        error = caught.value
        assert error.exit_status == 3 and error.stderr == "oops\n"
        assert error.machine == dc.machines(name="bad")[0]
        error.machine.delete()  # a SyncMachine, as DataCenter hands out
        with pytest.raises(UsageError, match=r"boot script \./missing\.sh: no such file"):
            dc.create_machine(boot_script="./missing.sh")
        assert dc.num_machines() == 0


def test_catalogs_and_aliases(home: Path) -> None:
    dc = DataCenter("local")
    assert dc.sizes() == dc.packages() and dc.images() == dc.datasets()
    assert dc.default_size() == dc.default_package() == types.Size(name="host", cpus=dc.sizes()[0].cpus,
                                                                     memory_mb=dc.sizes()[0].memory_mb, default=True)
    assert dc.sizes("^nomatch$") == [] and [i.name for i in dc.images("ho")] == ["host"]
    with pytest.raises(UsageError, match="not a regular expression"):
        dc.sizes("(")


def test_the_async_data_center(home: Path) -> None:
    async def scenario() -> None:
        async with AsyncDataCenter("local") as dc:
            machine = await dc.create_machine(name="a", tags={"k": "v"})
            assert [m.name for m in await dc.machines(tags={"k": "v"})] == ["a"]
            await machine.stop()
            await machine.poll_until("stopped", timeout=20, interval=0.05)
            assert [m.name for m in await dc.machines(state="stopped")] == ["a"]
            await machine.delete()
            assert await dc.num_machines() == 0

    asyncio.run(scenario())


# -- the top-level names ----------------------------------------------------------------------------------


def test_top_level_names_are_lazy() -> None:
    assert cloudherd.Client is Client and cloudherd.SyncClient is SyncClient and cloudherd.DataCenter is DataCenter
    assert {"Client", "SyncClient", "DataCenter"} <= set(dir(cloudherd))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        cloudherd.Nope  # noqa: B018
    probe = ("import sys, cloudherd; print(sorted(m for m in sys.modules if m.startswith('cloudherd'))); "
             "from cloudherd import SyncClient; print('cloudherd.api.client' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    # the warnings policy (two filters, nothing imported) is all that comes with the package itself
    assert out.splitlines() == ["['cloudherd', 'cloudherd.quiet']", "True"]


def test_launch_takes_ogc_layout_files_merged_and_launch_async_many_specs(home: Path, tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "01.sh").write_text("#!/bin/sh\necho '${node.instance_name}' > me.txt\n")
    base = tmp_path / "ogc.yml"
    base.write_text("name: ogcfleet\nlayouts:\n  web:\n    provider: local\n    scripts: scripts\n    scale: 1\n")
    more = tmp_path / "more.yml"
    more.write_text("layouts:\n  web:\n    scale: 2\n")
    native = tmp_path / "native.yml"
    native.write_text("name: plain\ngroups:\n  one:\n    provider: local\n    count: 1\n")
    with SyncClient() as herd:
        merged = herd.launch([base, more])  # OGC's SpecLoader.load([...]): one spec, every layout
        assert (merged.name, [n.name for n in merged.live]) == ("ogcfleet", ["ogcfleet-web-1", "ogcfleet-web-2"])
        assert [r.stdout for r in herd.exec_async(merged.live, "cat me.txt")] == ["ogcfleet-web-1\n",
                                                                                  "ogcfleet-web-2\n"]
        again, plain = herd.launch_async([[base, more], native])  # one infrastructure per item, at once
        assert again.id == merged.id and len(again.live) == 2  # the same name: converged, nothing new
        assert (plain.name, len(plain.live)) == ("plain", 1)
        assert [i.state for i in herd.destroy_async([merged, plain.name])] == ["destroyed", "destroyed"]
