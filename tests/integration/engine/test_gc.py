"""Orphans: machines with cloudherd's tags that the database does not account for are found by `gc`,
removed by `gc --delete`, or brought under an infrastructure by `adopt` (and deployed by the next `up`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from helpers import cli
from moto_catalog import an_image

from cloudherd.api import SyncClient
from cloudherd.providers import make_provider
from cloudherd.providers.base import TAG_GROUP, TAG_INFRA, CreateRequest
from cloudherd.providers.local import LocalProvider


def stray(home: Path, count: int, infra: str = "0123456789ab") -> list[str]:
    """Machines made with cloudherd's tags behind the database's back (as a lost state file leaves them)."""
    provider = LocalProvider("local", {"root": str(home / "local")})
    key = (home / "keys" / "id_ed25519.pub").read_text().strip()
    made = asyncio.run(provider.create(CreateRequest(
        count=count, image=None, size=None, tags={TAG_INFRA: infra, TAG_GROUP: "web"}, ssh_user="",
        ssh_public_key=key,
    )))
    return sorted(i.id for i in made)


def test_gc_finds_and_deletes_orphans_but_not_tracked_nodes(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "cloudherd.yml").write_text("name: g\ngroups:\n  web:\n    count: 2\n")
    herd = SyncClient()
    infra_id = herd.up(folder / "cloudherd.yml")
    orphans = stray(home, 2)
    found = json.loads(cli("gc", "--json").stdout)
    assert sorted(o["id"] for o in found) == orphans
    assert all("is not in this database" in o["why"] for o in found)
    listed = cli("gc")
    assert "2 orphan(s)" in listed.stderr
    deleted = cli("gc", "--delete")
    assert deleted.returncode == 0 and "2 orphan(s)" in deleted.stderr
    assert json.loads(cli("gc", "--json").stdout) == []
    remaining = asyncio.run(LocalProvider("local", {"root": str(home / "local")}).list({}))
    assert sorted(i.id for i in remaining) == sorted(n.provider_id or "" for n in herd.infrastructure(infra_id).nodes)
    herd.down(infra_id)


def test_adopt_brings_orphans_under_an_infrastructure(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "s.sh").write_text("echo deployed > d.txt\n")
    spec = folder / "cloudherd.yml"
    spec.write_text("name: a\ngroups:\n  web:\n    count: 1\n    scripts: [s.sh]\n")
    herd = SyncClient()
    infra_id = herd.up(spec)
    orphans = stray(home, 1)
    run = cli("adopt", infra_id, "web", *orphans)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["a-web-2"]
    assert json.loads(cli("gc", "--json").stdout) == []
    spec.write_text(spec.read_text().replace("count: 1", "count: 2"))
    herd.up(spec)  # deploys the adopted node
    nodes = {n.name: n for n in herd.infrastructure(infra_id).nodes}
    assert nodes["a-web-2"].provider_id == orphans[0] and nodes["a-web-2"].state == "ready"
    assert {r.node: r.stdout for r in herd.exec(infra_id, "cat d.txt")} == {
        "a-web-1": "deployed\n", "a-web-2": "deployed\n"}
    bad = cli("adopt", infra_id, "web", "ln-nothere")
    assert bad.returncode == 2 and "not orphans" in bad.stderr
    herd.down(infra_id)
    assert not list((home / "local").glob("*/node.json"))


def test_gc_finds_and_closes_network_rules_a_crash_left(home: Path, moto: str) -> None:
    """A security group opened for a group whose machines never came (a crash between open_ports and the
    launch) is an orphan; one a live machine uses is not; --delete closes the leftover."""
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=moto, region_name="us-east-1")
    import uuid

    gone, live = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]  # moto's state is the process's: be unique
    left = {TAG_INFRA: gone, TAG_GROUP: "web"}
    used = {TAG_INFRA: live, TAG_GROUP: "db"}

    async def crash_leftovers() -> str:
        async with make_provider("aws", "aws", {}) as aws:
            await aws.open_ports(left, [80])  # ...and cloudherd died before RunInstances
            made = await aws.create(CreateRequest(count=1, image=an_image(), size="t3.micro",
                                                  tags=used, ssh_user="deploy", ssh_public_key="", ports=[5432]))
            return made[0].id

    machine = asyncio.run(crash_leftovers())
    herd = SyncClient()
    found = {(o.kind, o.infra, o.group): o for o in herd.gc(provider="aws") if o.infra in (gone, live)}
    assert set(found) == {("security-group", gone, "web"), ("machine", live, "db")}  # not the db group's rule
    rule = found[("security-group", gone, "web")]
    assert rule.name == f"cloudherd-{gone}-web" and "not in this database" in rule.why
    assert found[("machine", live, "db")].id == machine
    herd.gc(provider="aws", delete=True)
    groups = {g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    assert not {f"cloudherd-{gone}-web", f"cloudherd-{live}-db"} & groups  # both closed
    assert [o for o in herd.gc(provider="aws") if o.infra in (gone, live)] == []
