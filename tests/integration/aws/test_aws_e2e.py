"""`cloudherd up` of a spec with an `aws` group (moto's EC2 over real HTTP) and a `local` group: the aws
nodes are created through the EC2 API and reached through a reach plugin that stands a real local sshd
in for each instance, so scripts deploy on both groups over real SSH, offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from helpers import cli
from moto_catalog import an_image

AMI = an_image()  # an al2023 x86_64 image from moto's own catalog

SPEC = f"""\
name: mixed
providers:
  cloud: {{type: aws, region: us-east-1, reach: "tests.support.moto_reach:LocalStandIns"}}
groups:
  db:
    count: 1
    scripts: [setup.sh]
  web:
    provider: cloud
    image: {AMI}
    size: t3.micro
    count: 2
    ports: [80]
    scripts: [setup.sh]
"""


def running(url: str, infra_id: str) -> list[dict[str, object]]:
    """Live instances of this infrastructure (moto's backend is shared by every test in the process)."""
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
    found = []
    for reservation in ec2.describe_instances()["Reservations"]:
        for instance in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            if instance["State"]["Name"] != "terminated" and tags.get("cloudherd:infra") == infra_id:
                found.append(tags)
    return found


def test_up_deploys_on_an_aws_group_and_a_local_group(home: Path, tmp_path: Path, moto: str) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "setup.sh").write_text('echo "$CLOUDHERD_GROUP on $CLOUDHERD_NODE" > role.txt\n')
    (folder / "cloudherd.yml").write_text(SPEC)
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[3]) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    run = cli("up", str(folder / "cloudherd.yml"), env=env)
    assert run.returncode == 0, run.stderr
    infra_id = run.stdout.strip()
    tags = running(moto, infra_id)
    assert len(tags) == 2 and all(t["cloudherd:infra"] == infra_id and t["cloudherd:group"] == "web" for t in tags)

    listing = json.loads(cli("exec", infra_id, "cat role.txt", "--json", env=env).stdout)
    assert {r["node"]: r["stdout"] for r in listing} == {
        "mixed-db-1": "db on mixed-db-1\n", "mixed-web-1": "web on mixed-web-1\n",
        "mixed-web-2": "web on mixed-web-2\n",
    }
    status = json.loads(cli("status", infra_id, "--json", env=env).stdout)
    assert {n["name"]: (n["provider"], n["state"]) for n in status["nodes"]} == {
        "mixed-db-1": ("local", "ready"), "mixed-web-1": ("cloud", "ready"), "mixed-web-2": ("cloud", "ready"),
    }
    assert all(n["provider_id"].startswith("i-") for n in status["nodes"] if n["provider"] == "cloud")

    down = cli("down", infra_id, env=env)
    assert down.returncode == 0, down.stderr
    assert running(moto, infra_id) == []
    assert not list((home / "local").glob("*/node.json"))  # stand-ins and the local node are gone
