"""OGC layout files and Occopus descriptions, as their users wrote them: converted, planned, brought up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import cli
from ruamel.yaml import YAML

from cloudherd.api import SyncClient

FIXTURES = Path(__file__).resolve().parents[4] / "shared" / "acceptance" / "fixtures"
OGC = """name: tryout
ssh-keys:
  public: keys/id.pub
  private: keys/id
layouts:
  app:
    provider: local
    runs-on: debian-12
    instance-size: small
    username: admin
    scripts: scripts/app
    scale: 2
    tags: [demo, team=web]
    ports: ["80:80", 443]
    artifacts: logs/*.log
  gone: {}
"""
INFRA = """infra_name: pair_demo
user_id: someone@example.org
variables: {greeting: hello}
nodes:
  - &A {name: store, type: store_node}
  - &B {name: front, type: front_node, scaling: {min: 1, max: 3}}
dependencies:
  - [ *B, *A ]
"""
DEFS = """'node_def:store_node':
  - resource: {type: local}
    contextualisation:
      type: cloudinit
      context_template: |
        #cloud-config
        write_files:
          - path: conf/store.conf
            content: "{{ variables.greeting }} from the store"
        runcmd:
          - echo store > role.txt
'node_def:front_node':
  - resource: {type: local}
    health_check: {ports: [22], timeout: 5}
    contextualisation:
      type: cloudinit
      context_template: |
        #cloud-config
        runcmd:
          - echo "front of {{ getip('store') }}" > role.txt
  - resource: {type: ec2, regionname: eu-west-1, image_id: ami-1}
"""


def _ogc(folder: Path) -> Path:
    (folder / "scripts" / "app").mkdir(parents=True)
    script = "#!/bin/sh\necho \"deployed ${node.instance_name}\" > deployed.txt\n"  # OGC's scripts are Mako
    (folder / "scripts" / "app" / "01-deploy.sh").write_text(script)
    (folder / "ogc.yml").write_text(OGC)
    return folder / "ogc.yml"


def _occopus(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "infra.yaml").write_text(INFRA)
    (folder / "nodes.yaml").write_text(DEFS)
    return folder / "infra.yaml", folder / "nodes.yaml"


def test_ogc_layouts_convert_to_the_native_spec(home: Path, tmp_path: Path) -> None:
    spec = _ogc(tmp_path / "ogc")
    result = cli("convert", str(spec))
    assert result.returncode == 0, result.stderr
    native = YAML(typ="safe").load(result.stdout)
    assert native == {
        "name": "tryout", "ssh": {"key": "keys/id"}, "templates": "mako",
        "groups": {"app": {"provider": "local", "image": "debian-12", "size": "small", "count": 2,
                           "scripts": ["scripts/app"], "ssh": {"user": "admin"}, "artifacts": ["logs/*.log"],
                           "tags": {"demo": "true", "team": "web"}, "ports": [80, 443]}},
    }  # `gone: {}` is removed, as OGC does for an emptied layout
    plan = json.loads(cli("plan", str(spec), "--json").stdout)
    assert plan["totals"]["create"] == 2 and plan["groups"][0]["scripts"] == {
        "scripts/app/01-deploy.sh": ["tryout-app-1", "tryout-app-2"]}


def test_an_ogc_layout_comes_up_runs_its_scripts_and_goes_down(home: Path, tmp_path: Path) -> None:
    spec = _ogc(tmp_path / "ogc")
    herd = SyncClient()
    infra_id = herd.up(spec)
    assert sorted(r.stdout for r in herd.exec(infra_id, "cat deployed.txt")) == [
        "deployed tryout-app-1\n", "deployed tryout-app-2\n"]
    herd.down(infra_id)
    assert herd.infrastructure(infra_id).state == "destroyed"


def test_an_occopus_infrastructure_with_imported_node_definitions(home: Path, tmp_path: Path) -> None:
    infra, defs = _occopus(tmp_path / "occo")
    missing = cli("validate", str(infra))
    assert missing.returncode == 2 and f"{infra}:5: nodes[0].type: no node definition for type store_node" in \
        missing.stderr and "cloudherd import" in missing.stderr
    imported = cli("import", str(defs))
    assert imported.returncode == 0 and "front_node, store_node" in imported.stdout
    converted = YAML(typ="safe").load(cli("convert", str(infra)).stdout)
    assert converted["name"] == "pair-demo" and converted["groups"]["front"]["depends_on"] == ["store"]
    assert converted["groups"]["front"]["min"] == 1 and converted["groups"]["front"]["max"] == 3
    assert converted["groups"]["front"]["provider"] == "local"  # no filter: the first implementation
    herd = SyncClient()
    infra_id = herd.up(infra)
    view = herd.status(infra_id)
    store = view.node("pair-demo-store-1").address
    roles = {r.node: r.stdout for r in herd.exec(infra_id, "cat role.txt")}
    assert roles == {"pair-demo-store-1": "store\n", "pair-demo-front-1": f"front of {store}\n"}
    conf = herd.exec(infra_id, "cat conf/store.conf", group="store")
    assert [r.stdout for r in conf] == ["hello from the store\n"]
    herd.down(infra_id)


def test_the_filter_chooses_an_implementation(home: Path, tmp_path: Path) -> None:
    infra, defs = _occopus(tmp_path / "occo")
    assert cli("import", str(defs)).returncode == 0
    infra.write_text(INFRA.replace("type: front_node,", "type: front_node, filter: {type: ec2},"))
    converted = YAML(typ="safe").load(cli("convert", str(infra)).stdout)
    assert converted["groups"]["front"]["provider"] == "ec2"  # a resource without a name: its type names it
    assert converted["providers"]["ec2"] == {"type": "aws", "region": "eu-west-1"}
    assert converted["groups"]["front"]["image"] == "ami-1"


BAD = [
    ("occopus", INFRA.replace("  - [ *B, *A ]\n", "  - [ *B, *A ]\n  - {connection: [ *A, *B ]}\n"), 9,
     "dependency cycle"),
    ("occopus", INFRA.replace("type: store_node", "type: nosuch"), 5, "no node definition for type nosuch"),
    ("occopus", INFRA.replace("user_id:", "user:"), 2, "unknown key"),
    ("ogc", OGC.replace("    scale: 2\n", "    scales: 2\n"), 12, "unknown layout key"),
    ("ogc", OGC.replace("  gone: {}\n", "  other:\n    constraints: cores=2 gpus=1\n"), 17,
     "unknown constraint 'gpus'"),
    ("ogc", OGC.replace("provider: local", "provider: azure"), 7, "unknown provider 'azure'"),
    ("ogc", OGC.replace("scale: 2", "scale: lots"), 12, "count"),
]


@pytest.mark.parametrize(("kind", "text", "line", "message"), BAD)
@pytest.mark.scenario
def test_errors_point_at_the_foreign_files_line(home: Path, tmp_path: Path, kind: str, text: str, line: int,
                                                message: str) -> None:
    if kind == "ogc":
        spec = _ogc(tmp_path / "f")
    else:
        spec, defs = _occopus(tmp_path / "f")
        assert cli("import", str(defs)).returncode == 0
    spec.write_text(text)
    result = cli("validate", str(spec))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{spec}:{line}:") and message in lines[0], lines[0]


def test_an_unknown_resource_type_in_node_definitions(home: Path, tmp_path: Path) -> None:
    _, defs = _occopus(tmp_path / "occo")
    defs.write_text(DEFS.replace("resource: {type: local}\n    contextualisation", "resource: {type: docker}\n"
                                 "    contextualisation", 1))
    result = cli("import", str(defs))
    assert result.returncode == 2 and f"{defs}:2:" in result.stderr
    assert "resource type 'docker' has no driver" in result.stderr and "local" in result.stderr


def test_format_can_be_forced_and_native_files_convert_to_themselves(home: Path, tmp_path: Path) -> None:
    spec = _ogc(tmp_path / "ogc")
    forced = cli("validate", str(spec), "--format", "native")
    assert forced.returncode == 2 and "groups" in forced.stderr
    assert cli("validate", str(spec), "--format", "ogc").returncode == 0
    bad = cli("validate", str(spec), "--format", "cfn")
    assert bad.returncode == 2 and "unknown format 'cfn'" in bad.stderr
    native = tmp_path / "n.yml"
    native.write_text("name: plain\ngroups:\n  web:\n    count: 1\n")
    assert cli("convert", str(native)).stdout == native.read_text()


def test_the_shared_fixtures_convert(home: Path, tmp_path: Path) -> None:
    if not FIXTURES.is_dir():
        pytest.skip("../shared/acceptance/fixtures is not beside the project")
    folder = tmp_path / "fx"
    shutil.copytree(FIXTURES, folder)
    assert cli("convert", str(folder / "ogc" / "ogc.yml")).returncode == 0
    assert cli("import", str(folder / "occopus" / "nodes.yaml")).returncode == 0
    assert cli("plan", str(folder / "occopus" / "infra.yaml")).returncode == 0


def test_several_ogc_files_merge_left_to_right(home: Path, tmp_path: Path) -> None:
    (tmp_path / "a" / "scripts").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "scripts" / "01.sh").write_text("#!/bin/sh\necho 'from a: ${node.instance_name}' > hi.txt\n")
    first = tmp_path / "a" / "one.yml"
    first.write_text("name: merged\nlayouts:\n  web:\n    provider: local\n    scripts: scripts\n    scale: 1\n"
                     "  db:\n    provider: local\n    scale: 1\n")
    second = tmp_path / "b" / "two.yml"
    second.write_text("layouts:\n  web:\n    scale: 2\n  db: {}\n")
    checked = cli("validate", str(first), str(second))
    assert checked.returncode == 0 and "ok (merged: web x2)" in checked.stdout, checked.stderr
    herd = SyncClient()
    infra_id = herd.up([first, second])  # the scripts folder is found beside the file that names it
    assert sorted(r.stdout for r in herd.exec(infra_id, "cat hi.txt")) == ["from a: merged-web-1\n",
                                                                         "from a: merged-web-2\n"]
    assert [g.name for g in herd.status(infra_id).groups] == ["web"]
    herd.down(infra_id)
    native = tmp_path / "n.yml"
    native.write_text("name: plain\ngroups:\n  web:\n    count: 1\n")
    refused = cli("validate", str(native), str(second))
    assert refused.returncode == 2 and "only OGC layout files merge" in refused.stderr


def test_user_data_runs_once_before_the_scripts(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "u"
    folder.mkdir()
    (folder / "boot.sh").write_text("#!/bin/sh\necho booted >> boot.log\n")
    (folder / "s.sh").write_text("test -f boot.log && echo after >> order.log\n")  # user data ran first
    spec = folder / "spec.yml"
    spec.write_text("name: booted\ngroups:\n  files:\n    count: 1\n    user_data: boot.sh\n    scripts: [s.sh]\n"
                    "  cloud:\n    count: 1\n    scripts: [s.sh]\n    user_data: |\n      #cloud-config\n"
                    "      write_files:\n        - {path: conf/app.conf, content: 'port=80'}\n"
                    "      runcmd:\n        - echo booted >> boot.log\n")
    herd = SyncClient()
    infra_id = herd.up(spec)
    herd.up(spec)  # a second up: user data already ran, nothing changed
    assert [r.stdout for r in herd.exec(infra_id, "cat boot.log", group="files")] == ["booted\n"]
    assert [r.stdout for r in herd.exec(infra_id, "cat boot.log conf/app.conf", group="cloud")] == ["booted\nport=80\n"]
    assert all(r.stdout == "after\n" for r in herd.exec(infra_id, "cat order.log"))
    herd.down(infra_id)
