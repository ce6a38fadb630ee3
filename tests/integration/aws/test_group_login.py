"""Groups that log in as their own user, with their own key: images of different systems have different
default users (``ubuntu``, ``ec2-user``, ``admin``), as OGC's layouts said per layout."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import cli

pytest.importorskip("moto.server")


def test_a_group_with_its_own_key_is_reached_with_it(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "cloudherd.yml").write_text(
        "name: two-keys\n"
        "groups:\n"
        "  plain: {count: 1}\n"
        "  own:\n"
        "    count: 1\n"
        "    ssh: {key: keys/own_key}\n")
    up = cli("up", str(folder / "cloudherd.yml"))
    assert up.returncode == 0, up.stderr
    infra_id = up.stdout.strip().splitlines()[-1]
    own_public = (folder / "keys" / "own_key.pub").read_text().split()[1]  # made on first use, as ssh.key is
    authorized = {}
    for meta_file in (home / "local").glob("*/node.json"):
        meta = json.loads(meta_file.read_text())
        authorized[meta["name"]] = (meta_file.parent / "authorized_keys").read_text()
    assert own_public in authorized["two-keys-own-1"]
    assert own_public not in authorized["two-keys-plain-1"]
    ran = json.loads(cli("exec", infra_id, "echo hi", "--json").stdout)
    assert {r["node"]: r["stdout"] for r in ran} == {"two-keys-own-1": "hi\n", "two-keys-plain-1": "hi\n"}
    if shutil.which("ssh"):  # OpenSSH's client, given the group's key
        session = cli("ssh", infra_id, "two-keys-own-1", "echo", "over-ssh")
        assert session.returncode == 0 and session.stdout == "over-ssh\n", session.stderr
    assert cli("down", infra_id).returncode == 0


def _user_data(url: str, infra_id: str) -> dict[str, str]:
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
    found = ec2.describe_instances(Filters=[{"Name": "tag:cloudherd:infra", "Values": [infra_id]},
                                            {"Name": "instance-state-name", "Values": ["running", "pending"]}])
    out = {}
    for reservation in found["Reservations"]:
        for instance in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            data = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
            out[tags["cloudherd:group"]] = base64.b64decode(data["UserData"]["Value"]).decode()
    return out


def test_each_group_is_made_with_its_login_user(home: Path, tmp_path: Path, moto: str) -> None:
    folder = tmp_path / "users"
    folder.mkdir()
    (folder / "cloudherd.yml").write_text(
        "name: users\n"
        "providers:\n"
        "  cloud: {type: aws, region: us-east-1, reach: 'tests.support.moto_reach:LocalStandIns'}\n"
        "groups:\n"
        "  ubuntu-box: {provider: cloud, image: al2023, size: t3.micro, ssh: {user: ubuntu}}\n"
        "  amazon-box: {provider: cloud, image: al2023, size: t3.micro}\n")
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[3]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    up = cli("up", str(folder / "cloudherd.yml"), env=env)
    assert up.returncode == 0, up.stderr
    infra_id = up.stdout.strip().splitlines()[-1]
    data = _user_data(moto, infra_id)
    assert '"name": "ubuntu"' in data["ubuntu-box"]
    assert '"name": "ec2-user"' in data["amazon-box"]  # the image alias' own user: none was named
    assert cli("down", infra_id, env=env).returncode == 0


def test_a_group_key_is_checked_at_validate(home: Path, tmp_path: Path) -> None:
    public = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB2n0ruO8cBSfQuqYFpz8Wa3qoZZt3h6FYpHk0pN0Zc1 x\n"
    (tmp_path / "pub").write_text(public)
    (tmp_path / "s.yml").write_text("name: k\ngroups:\n  g:\n    ssh:\n      key: pub\n")
    run = cli("validate", str(tmp_path / "s.yml"))
    assert run.returncode != 0
    assert "s.yml:5" in run.stderr and "public key" in run.stderr


@pytest.mark.parametrize(("image", "user"), [
    ("debian-12", "admin"), ("debian-latest", "admin"), ("ubuntu-24.04", "ubuntu"), ("ubuntu-2004", "ubuntu"),
    ("ubuntu-2004-lts", "ubuntu"), ("ubuntu-latest", "ubuntu"), ("al2023", "ec2-user"), ("al2", "ec2-user"),
    ("ami-0123456789abcdef0", None), ("windows-2019", None),
])
def test_an_aws_image_alias_names_its_distribution_s_user(image: str, user: str | None) -> None:
    from cloudherd.providers.aws import AwsProvider, _alias_spec

    assert AwsProvider("aws", {"region": "us-east-1"}).default_user(image) == user
    assert (_alias_spec(image, "x86_64") is not None) == (user is not None)  # a user only for an image it finds
