"""The machines end themselves with no manager left (AWS, on moto's EC2 over HTTP): an infrastructure with a time to
live or an idle rule is made with the instance-initiated shutdown behaviour that ends it, instance metadata tags on,
a boot script that watches the tag ``cloudherd:deadline``, and that tag at the manager's moment plus its grace; a
longer ``--ttl`` moves the tag at the next pass.  The boot script itself is run in its ``--check`` mode, as an
unprivileged user, against an instance metadata service of the test's own on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import email
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from helpers import cli, write_spec
from moto_catalog import an_image

from cloudherd.api import SyncClient
from cloudherd.engine.node_timer import GRACE
from cloudherd.engine.reconcile import reconcile
from cloudherd.providers.aws.node_timer import BOOT_SCRIPT
from cloudherd.state.repo import Store
from cloudherd.times import as_utc

SPEC = """\
name: timed
{rules}
providers:
  cloud: {{type: aws, region: us-east-1, reach: "tests.support.moto_reach:LocalStandIns"}}
groups:
  web:
    provider: cloud
    image: {image}
    size: t3.micro
    count: 2
"""


def env() -> dict[str, str]:
    return {"PYTHONPATH": str(Path(__file__).resolve().parents[3]) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def instances(url: str, infra_id: str) -> list[dict[str, Any]]:
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
    found = ec2.describe_instances(Filters=[{"Name": "tag:cloudherd:infra", "Values": [infra_id]},
                                            {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    return [i for r in found["Reservations"] for i in r["Instances"]]


def attribute(url: str, instance_id: str, name: str) -> str:
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
    answer = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute=name)
    key = name[0].upper() + name[1:]
    return str(answer[key]["Value"])


def boot_parts(user_data: str) -> list[tuple[str, str]]:
    """The parts of a MIME multi-part user data, as cloud-init reads them."""
    message = email.message_from_string(user_data)
    return [(part.get_content_type(), part.get_payload(decode=True).decode()) for part in message.walk()
            if not part.is_multipart()]


def deadline_tags(url: str, infra_id: str) -> set[str]:
    return {t["Value"] for i in instances(url, infra_id) for t in i.get("Tags", []) if t["Key"] == "cloudherd:deadline"}


def test_a_time_to_live_is_kept_by_the_machines_too(home: Path, tmp_path: Path, moto: str) -> None:
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "p", SPEC.format(rules="ttl: 2h", image=an_image())))
    view = herd.status(infra_id)
    assert view.ends_at is not None
    expected = str(int((as_utc(view.ends_at) + GRACE).timestamp()))
    made = instances(moto, infra_id)
    assert len(made) == 2 and deadline_tags(moto, infra_id) == {expected}
    for instance in made:
        assert attribute(moto, instance["InstanceId"], "instanceInitiatedShutdownBehavior") == "terminate"
        assert instance["MetadataOptions"]["InstanceMetadataTags"] == "enabled"
        parts = boot_parts(base64.b64decode(attribute(moto, instance["InstanceId"], "userData")).decode())
        assert [kind for kind, _ in parts] == ["text/cloud-config", "text/x-shellscript"]  # the login user's too
        assert "/usr/local/sbin/cloudherd-deadline" in parts[1][1]
        assert "tags/instance/cloudherd:deadline" in parts[1][1]

    longer = cli("up", str(tmp_path / "p" / "cloudherd.yml"), "--ttl", "5h", env=env())
    assert longer.returncode == 0, longer.stderr
    later = herd.status(infra_id).ends_at
    assert later is not None and later > view.ends_at
    asyncio.run(reconcile(Store(), infra_id, keeper=True))  # a manager's pass moves the machines' deadline
    assert deadline_tags(moto, infra_id) == {str(int((as_utc(later) + GRACE).timestamp()))}
    assert cli("down", "timed", env=env()).returncode == 0


def test_an_autostop_that_stops_has_the_machines_stop_themselves(home: Path, tmp_path: Path, moto: str) -> None:
    herd = SyncClient()
    infra_id = herd.up(write_spec(tmp_path / "p", SPEC.format(rules="autostop: {idle: 30m}", image=an_image())))
    made = instances(moto, infra_id)
    assert {attribute(moto, i["InstanceId"], "instanceInitiatedShutdownBehavior") for i in made} == {"stop"}
    [tag] = deadline_tags(moto, infra_id)
    created = int(as_utc(herd.status(infra_id).created_at).timestamp())  # whole seconds, as the tag
    assert 30 * 60 + GRACE.total_seconds() <= int(tag) - created < 30 * 60 + GRACE.total_seconds() + 120
    assert cli("down", "timed", env=env()).returncode == 0


class FakeMetadata(http.server.BaseHTTPRequestHandler):
    """IMDSv2 as far as the watcher asks: a token on PUT, the deadline tag with that token, 404 without one."""

    deadline: str | None = None

    def do_PUT(self) -> None:
        self._answer(200, "tok" if self.path == "/latest/api/token" else None)

    def do_GET(self) -> None:
        right = self.headers.get("X-aws-ec2-metadata-token") == "tok"
        wanted = self.path == "/latest/meta-data/tags/instance/cloudherd:deadline"
        self._answer(200, self.deadline if right and wanted else None)

    def _answer(self, status: int, body: str | None) -> None:
        self.send_response(status if body is not None else 404)
        self.end_headers()
        self.wfile.write((body or "").encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def metadata() -> Iterator[tuple[str, type[FakeMetadata]]]:
    handler = type("Handler", (FakeMetadata,), {"deadline": None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_the_machines_watcher_reads_its_deadline_from_the_instance_metadata(
        metadata: tuple[str, type[FakeMetadata]]) -> None:
    url, handler = metadata
    watcher = BOOT_SCRIPT.split("<<'WATCHER'\n", 1)[1].split("\nWATCHER\n", 1)[0]

    def check() -> str:  # once, as nobody: the --check mode answers and never shuts anything down
        done = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sh", "-s", "--",
                               "--check"], input=watcher, env={"PATH": os.environ["PATH"], "CLOUDHERD_IMDS": url},
                              capture_output=True, text=True, timeout=60, cwd="/")
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert check() == "no deadline"
    handler.deadline = "1"  # long past
    assert check() == "due"
    handler.deadline = "99999999999"
    assert check() == "not due"
    handler.deadline = "soon"  # not a number: nothing to do
    assert check() == "no deadline"
