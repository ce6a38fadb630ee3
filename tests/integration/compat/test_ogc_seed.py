"""OGC's "Managing Nodes Programatically" page (the seed ``000_…``), its Python blocks run on real local nodes
through ``cloudherd.compat.ogc``.

The blocks are read from the seed when the test runs and run in order in one session.  What is changed, and
nothing else: ``from ogc…`` imports → ``from cloudherd.compat.ogc…``, and the spec's path (the page's
``/Users/adam/specs/ogc.yml``) → an OGC spec of this test.  The page leaves ``app``, ``name``, ``log`` and
``sys`` to the program around it: the session is given them.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudherd.compat.ogc import actions

SEED = Path(os.environ.get("CLOUDHERD_OGC_SEED", "/work/shared/seeds/000_796f711480f260af.txt"))
PAGE_SPEC = "/Users/adam/specs/ogc.yml"


def python_blocks() -> list[str]:
    if not SEED.is_file():
        pytest.skip(f"OGC's page (the seed) is not at {SEED}; set CLOUDHERD_OGC_SEED")
    return re.findall(r"``` python\n(.*?)```", SEED.read_text(), flags=re.DOTALL)


def as_here(block: str, spec: Path) -> str:
    changed = re.sub(r"^from ogc\b", "from cloudherd.compat.ogc", block, flags=re.MULTILINE)
    return changed.replace(PAGE_SPEC, str(spec))


@pytest.fixture
def ogc_client(home: Path) -> Iterator[None]:
    """A fresh module client per test (it is made once per process, as OGC's state was)."""
    actions._client = None
    yield
    if actions._client is not None:
        actions._client.close()
    actions._client = None


def ogc_project(folder: Path) -> Path:
    """An OGC spec as OGC's docs write them: a layout whose scripts folder holds a Mako script and a teardown."""
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "01-hello").write_text(
        "#!/bin/bash\n"
        "echo \"${node.instance_name} of ${node.layout.name}\" >> hello.txt\n")
    (folder / "scripts" / "teardown").write_text("#!/bin/bash\necho bye\n")
    spec = folder / "ogc.yml"
    spec.write_text("name: seed-fleet\nlayouts:\n  web:\n    provider: local\n    scale: 2\n    scripts: scripts\n")
    return spec


def test_the_pages_python_runs_as_written(ogc_client: None, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    blocks = python_blocks()
    assert len(blocks) == 6, "the page changed: read it again"
    spec = ogc_project(tmp_path / "proj")
    session = {"__name__": "ogc_page", "app": types.SimpleNamespace(), "name": "adam",
               "log": logging.getLogger("ogc_page"), "sys": sys}
    for index, block in enumerate(blocks):
        exec(compile(as_here(block, spec), f"{SEED.name}#block{index + 1}", "exec"), session)

    assert "Successfully deployed" in capsys.readouterr().out
    herd = actions.client()
    assert "adam" in [u.name for u in herd.users()]  # the page's first block: the user record
    infra = herd.infrastructure("seed-fleet")
    # launch: one node per layout; launch_async: `scale` more per layout
    assert sorted(n.name for n in infra.live) == ["seed-fleet-web-1", "seed-fleet-web-2", "seed-fleet-web-3"]
    assert session["node_ids_created"] and len(list(session["script_deploy_results"])) == 2
    # each script ran once on each node, at its launch; the deploy found nothing left to do
    ran = {r.node: r.stdout for r in herd.exec("seed-fleet", "cat hello.txt")}
    assert ran == {f"seed-fleet-web-{i}": f"seed-fleet-web-{i} of web\n" for i in (1, 2, 3)}


def test_the_user_record_is_made_once(ogc_client: None, caplog: pytest.LogCaptureFixture) -> None:
    block = as_here(python_blocks()[0], Path("unused"))
    session = {"name": "adam", "log": logging.getLogger("ogc_page"), "sys": sys}
    exec(compile(block, "block1", "exec"), dict(session))
    with pytest.raises(SystemExit) as stopped:
        exec(compile(block, "block1", "exec"), dict(session))
    assert stopped.value.code == 1 and "OGC already setup." in caplog.text


def test_results_compare_as_ogc_s_booleans_and_carry_its_fields(ogc_client: None, tmp_path: Path) -> None:
    from cloudherd.compat.ogc import SpecLoader

    spec = SpecLoader.load([ogc_project(tmp_path / "p")])
    assert [layout.name for layout in spec.layouts] == ["web"] and spec.layouts[0].scale == 2
    node_id = actions.launch(spec.layouts[0].as_dict())
    assert isinstance(node_id, str)
    ok = actions.exec(node_id, "echo out; echo err >&2; exit 0")
    assert ok == True and (ok.out, ok.error, ok.exit_code) == ("out\n", "err\n", 0)  # noqa: E712 - OGC's test
    failed = actions.exec(node_id, "echo nope >&2; exit 3")
    assert failed == False and not failed and (failed.exit_code, failed.error) == (3, "nope\n")  # noqa: E712
    tagged = actions.exec_async(None, "no-such-tag", "true")
    assert tagged == []
    every = actions.exec_async(None, None, "true")
    assert every == [True]
    assert "teardown" not in [a.kind for a in actions.client().logs("seed-fleet", "seed-fleet-web-1")]
    assert actions.launch({"name": "web"}) == -1  # not from SpecLoader: OGC's failure value, logged
    gone = actions.teardown("seed-fleet-web-1")
    assert gone == True  # noqa: E712
    assert [a.name for a in actions.client().logs("seed-fleet", "seed-fleet-web-1") if a.kind == "teardown"] == [
        "scripts/teardown"]  # the scripts folder's teardown ran as the node went, and only then
    refused = actions.teardown("seed-fleet-web-1", only_db=True)
    assert refused == False and "only_db" in refused.error  # noqa: E712


def test_exec_scripts_and_sync_as_ogc_had_them(ogc_client: None, tmp_path: Path) -> None:
    from cloudherd.compat.ogc import SpecLoader

    spec = SpecLoader.load([ogc_project(tmp_path / "p")])
    web = spec.layouts[0]
    made = actions.sync(web, {"web": {"action": "add", "remaining": 1}})
    assert made == [True]
    extra = tmp_path / "p" / "extra"
    extra.mkdir()
    (extra / "01-mark").write_text("#!/bin/bash\necho \"marked ${node.instance_name}\" > mark.txt\n")
    ran = actions.exec_scripts_async(None, None, str(extra))  # a folder named at the call, Mako-rendered
    assert ran == [True]
    marked = actions.exec_async("seed-fleet-web-1", None, "cat mark.txt")
    assert [r.out for r in marked] == ["marked seed-fleet-web-1\n"]
    broken = tmp_path / "p" / "broken"
    broken.mkdir()
    (broken / "01-fail").write_text("#!/bin/bash\necho nope >&2\nexit 4\n")
    failed = actions.exec_scripts("seed-fleet-web-1", str(broken))
    assert failed == False and "exited 4" in failed.error  # noqa: E712
    removed = actions.sync_async([web], {"web": {"action": "remove", "remaining": 1}})
    assert removed == [True]
    assert actions.exec_async(None, None, "true") == []
