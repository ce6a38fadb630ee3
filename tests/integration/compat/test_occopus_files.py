"""Occopus users' files in the shapes of Occopus' published tutorials (occopus/docs ``tutorials/*``): node
definitions that pull their cloud-init files in with ``!yaml_import``, nodes with their own ``variables``,
``ec2`` resources with an ``endpoint`` (moto's server as the EC2-compatible cloud), an auth-data file —
imported, converted, validated and brought up as they are; every key cloudherd cannot honour refused or
warned about at its line."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import cli
from ruamel.yaml import YAML

from cloudherd.api import SyncClient

PING_INFRA = """\
infra_name: ping-infra
user_id: someone@example.org

nodes:
  - &R
    name: ping-receiver
    type: ping_receiver_node
    variables:
      message: "I am the receiver"
  - &S
    name: ping-sender
    type: ping_sender_node
    variables:
      message: "I am the sender"

dependencies:
  -
    connection: [ *S, *R ]
"""

DEFS = """\
'node_def:ping_receiver_node':
  -
    resource:
      type: {kind}
{resource}
    contextualisation:
      type: cloudinit
      context_template: !yaml_import
        url: file://cloud_init_ping_receiver.yaml
'node_def:ping_sender_node':
  -
    resource:
      type: {kind}
{resource}
    contextualisation:
      type: cloudinit
      context_template: !yaml_import
        url: file://cloud_init_ping_sender.yaml
    health_check:
      ping: true
"""

RECEIVER = """\
#cloud-config
write_files:
- content: "{{variables.message}}\\n"
  path: /tmp/message.txt
  permissions: '0644'
"""

SENDER = """\
#cloud-config
runcmd:
- echo "peer {{getip('ping-receiver')}} of {{infra_id}}" > /tmp/ping-result.txt
write_files:
- content: "{{variables.message}}\\n"
  path: /tmp/message.txt
  permissions: '0644'
"""


def tutorial(folder: Path, kind: str = "local", resource: str = "") -> tuple[Path, Path]:
    """A tutorial's folder as Occopus ships them: the description, and nodes/ with the definitions and the
    cloud-init files they import."""
    (folder / "nodes").mkdir(parents=True)
    (folder / "infra-ping.yaml").write_text(PING_INFRA)
    (folder / "nodes" / "node_definitions.yaml").write_text(DEFS.format(kind=kind, resource=resource))
    (folder / "nodes" / "cloud_init_ping_receiver.yaml").write_text(RECEIVER)
    (folder / "nodes" / "cloud_init_ping_sender.yaml").write_text(SENDER)
    return folder / "infra-ping.yaml", folder / "nodes" / "node_definitions.yaml"


def test_the_ping_tutorial_comes_up_with_each_node_s_own_variables(home: Path, tmp_path: Path) -> None:
    infra, defs = tutorial(tmp_path / "ping")
    imported = cli("import", str(defs))
    assert imported.returncode == 0, imported.stderr
    native = YAML(typ="safe").load(cli("convert", str(infra)).stdout)
    groups = native["groups"]
    assert groups["ping-receiver"]["variables"] == {"message": "I am the receiver"}
    assert groups["ping-sender"]["variables"] == {"message": "I am the sender"}
    assert "variables" not in native and groups["ping-sender"]["depends_on"] == ["ping-receiver"]
    assert groups["ping-sender"]["user_data"].startswith("#cloud-config\n")

    herd = SyncClient()
    infra_id = herd.up(infra)
    said = {r.node: r.stdout for r in herd.exec(infra_id, "cat /tmp/message.txt")}
    assert said == {"ping-infra-ping-receiver-1": "I am the receiver\n",
                    "ping-infra-ping-sender-1": "I am the sender\n"}
    receiver = next(n for n in herd.infrastructure(infra_id).nodes if n.group == "ping-receiver")
    result = herd.exec(infra_id, "cat /tmp/ping-result.txt", group="ping-sender")
    assert [r.stdout for r in result] == [f"peer {receiver.address} of {infra_id}\n"]
    herd.down(infra_id)


@pytest.mark.parametrize(("url", "message"), [
    ("file://../outside.yaml", "outside the folder"),
    ("file:///etc/hostname", "outside the folder"),
    ("http://example.org/cloud_init.yaml", "only file:// URLs are read"),
    ("file://missing.yaml", "no such file"),
])
def test_an_import_stays_beside_the_file(home: Path, tmp_path: Path, url: str, message: str) -> None:
    _, defs = tutorial(tmp_path / "t")
    (tmp_path / "outside.yaml").write_text("write_files: []\n")
    defs.write_text(defs.read_text().replace("file://cloud_init_ping_receiver.yaml", url))
    result = cli("import", str(defs))
    line = next(i for i, text in enumerate(defs.read_text().splitlines(), 1) if url in text) - 1  # the key's line
    assert result.returncode == 2
    assert f"{defs}:{line}: context_template: !yaml_import {url}" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def test_imports_nest_only_so_deep_and_only_in_occopus_files(home: Path, tmp_path: Path) -> None:
    _, defs = tutorial(tmp_path / "t")
    nodes = defs.parent
    for depth in range(6):  # each file imports the next
        (nodes / f"level{depth}.yaml").write_text(f"next: !yaml_import {{url: file://level{depth + 1}.yaml}}\n")
    (nodes / "level6.yaml").write_text("write_files: []\n")
    defs.write_text(defs.read_text().replace("cloud_init_ping_receiver.yaml", "level0.yaml"))
    deep = cli("import", str(defs))
    assert deep.returncode == 2 and "imports nest deeper than 4" in deep.stderr

    native = tmp_path / "native.yml"
    native.write_text("name: n\ngroups:\n  web:\n    user_data: !yaml_import {url: file://x.yaml}\n")
    refused = cli("validate", str(native))
    assert refused.returncode == 2
    assert f"{native}:4: user_data: !yaml_import: Occopus' import tag is read in Occopus files only" in refused.stderr


def test_keys_without_an_equivalent_are_refused_or_warned_at_their_line(home: Path, tmp_path: Path) -> None:
    infra, defs = tutorial(tmp_path / "t")
    text = defs.read_text()
    mysql = "      ping: true\n      mysqldbs: [{name: db, user: u, pass: p}]\n"
    defs.write_text(text.replace("      ping: true\n", mysql))
    assert cli("import", str(defs)).returncode == 0
    checked = cli("validate", str(infra))
    assert checked.returncode == 0, checked.stderr
    assert (f"warning: {infra}:12: nodes[1].type: node_def:ping_sender_node: health_check.mysqldbs: not checked"
            in checked.stderr)
    assert f"# warning: {infra}:12: nodes[1].type: node_def:ping_sender_node: health_check.mysqldbs" in \
        cli("convert", str(infra)).stdout

    (defs.parent / "cloud_init_ping_receiver.yaml").write_text(RECEIVER + "timezone: Europe/Budapest\n")
    assert cli("import", str(defs)).returncode == 0  # as in Occopus: a changed definition is imported again
    local = cli("validate", str(infra))
    assert local.returncode == 0
    assert f"warning: {infra}:7: groups.ping-receiver.user_data: cloud-config: timezone: not applied (a local " \
           "node keeps the host's time zone)" in local.stderr
    (defs.parent / "cloud_init_ping_receiver.yaml").write_text(RECEIVER + "chef: {server_url: https://chef}\n")
    assert cli("import", str(defs)).returncode == 0
    chef = cli("validate", str(infra))
    assert chef.returncode == 2 and "chef: cloud-init's chef module runs at first boot on a cloud" in chef.stderr

    defs.write_text(text.replace("      type: local\n", "      type: local\n      flavor: big\n", 1))
    assert cli("import", str(defs)).returncode == 0
    unknown = cli("validate", str(infra))
    assert unknown.returncode == 2
    assert (f"{infra}:7: nodes[0].type: node_def:ping_receiver_node: resource.flavor: the local resource key "
            "'flavor' is not read by cloudherd") in unknown.stderr

    defs.write_text(text.replace("    health_check:\n", "    config_management:\n      type: puppet_solo\n"
                                                      "    health_check:\n"))
    assert cli("import", str(defs)).returncode == 0
    puppet = cli("validate", str(infra))
    assert puppet.returncode == 2 and "config_management type 'puppet_solo' is not run by cloudherd" in puppet.stderr


def up_as_converted(native: dict[str, Any], provider: str, folder: Path, auth: Path) -> tuple[str, dict[str, str]]:
    """``up`` of a converted spec with a reach plugin added to its cloud: the emulated cloud's machines answer
    nowhere, so a local sshd stands in for each (the cloud still gets every call as the tutorial makes it).
    Returns the infrastructure's id and the environment the CLI needs for the plugin."""
    native["providers"][provider]["reach"] = "tests.support.moto_reach:LocalStandIns"
    spec = folder / "native.yml"
    YAML(typ="safe").dump(native, spec)
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[3]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = cli("up", str(spec), "--auth-data", str(auth), env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip(), env


EC2_RESOURCE = """\
      endpoint: {endpoint}
      regionname: us-east-1
      image_id: {image}
      instance_type: t3.micro
      key_name: my-own-key
      security_group_ids:
        - {group}
      subnet_id: {subnet}
      name: my_ec2_cloud"""


def test_an_ec2_tutorial_goes_to_its_endpoint_with_its_cloud_config_as_user_data(
        home: Path, tmp_path: Path, moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto_catalog import an_image

    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)  # the endpoint and the keys come from the tutorial's files only
    ec2 = boto3.client("ec2", endpoint_url=moto, region_name="us-east-1", aws_access_key_id="a",
                       aws_secret_access_key="b")
    ec2.create_key_pair(KeyName="my-own-key")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(GroupName="occopus-tutorial", Description="t", VpcId=vpc)["GroupId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    resource = EC2_RESOURCE.format(endpoint=moto, image=an_image(), group=group, subnet=subnet)
    infra, defs = tutorial(tmp_path / "ec2", kind="ec2", resource=resource)
    auth = tmp_path / "auth_data.yaml"
    auth.write_text(f"resource:\n  - type: ec2\n    endpoint: {moto}\n    auth_data:\n"
                    "      accesskey: AKIATUTORIAL\n      secretkey: tutorial-secret-key\n")

    assert cli("import", str(defs)).returncode == 0
    converted = cli("convert", str(infra), "--auth-data", str(auth))
    assert converted.returncode == 0, converted.stderr
    assert "tutorial-secret-key" not in converted.stdout and "AKIATUTORIAL" not in converted.stdout
    native = YAML(typ="safe").load(converted.stdout)
    assert native["providers"] == {"my-ec2-cloud": {
        "type": "aws", "endpoint_url": moto, "region": "us-east-1", "key_name": "my-own-key", "subnet_id": subnet,
        "security_group_ids": [group], "access_key_id_env": "OCCOPUS_AUTH_1_AUTH_ACCESSKEY",
        "secret_access_key_env": "OCCOPUS_AUTH_1_AUTH_SECRETKEY"}}

    infra_id, env = up_as_converted(native, "my-ec2-cloud", tmp_path / "ec2", auth)

    instances = {}  # moto's backend is the process's: other tests' instances are there too
    found = ec2.describe_instances(Filters=[{"Name": "tag:cloudherd:infra", "Values": [infra_id]},
                                            {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    for reservation in found["Reservations"]:
        for instance in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            instances[tags["cloudherd:group"]] = instance
    assert set(instances) == {"ping-receiver", "ping-sender"}
    for instance in instances.values():
        assert instance["KeyName"] == "my-own-key" and instance["SubnetId"] == subnet
        assert group in [g["GroupId"] for g in instance["SecurityGroups"]]
    status = json.loads(cli("status", infra_id, "--json", env=env).stdout)
    receiver = next(n for n in status["nodes"] if n["group"] == "ping-receiver")

    def user_data(instance_id: str) -> dict[str, object]:
        raw = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
        text = base64.b64decode(raw).decode()
        assert text.startswith("#cloud-config\n")
        return YAML(typ="safe").load(text)

    sender = user_data(instances["ping-sender"]["InstanceId"])
    assert sender["write_files"][0]["content"] == "I am the sender\n"
    assert sender["runcmd"] == [f'echo "peer {receiver["address"]} of {infra_id}" > /tmp/ping-result.txt']
    users = sender["users"]  # the image's default user, and the one cloudherd logs in as, with its key
    assert users[0] == "default" and any(isinstance(u, dict) and u.get("ssh_authorized_keys") for u in users)
    assert user_data(instances["ping-receiver"]["InstanceId"])["write_files"][0]["content"] == "I am the receiver\n"

    database = (home / "cloudherd.db").read_bytes() if (home / "cloudherd.db").exists() else b""
    assert b"tutorial-secret-key" not in database
    down = cli("down", infra_id, "--auth-data", str(auth), env=env)
    assert down.returncode == 0, down.stderr



def occopus(command: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One of Occopus' commands as the console script a user's shell script calls."""
    script = Path(sys.executable).with_name(f"occopus-{command}")
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def test_occopus_commands_build_maintain_scale_and_destroy(home: Path, tmp_path: Path) -> None:
    infra, defs = tutorial(tmp_path / "ping")
    user_home = tmp_path / "user"
    (user_home / ".occopus").mkdir(parents=True)
    (user_home / ".occopus" / "auth_data.yaml").write_text("resource:\n  - type: nova\n    auth_data: "
                                                           "{username: u, password: p}\n")
    config = tmp_path / "occopus_config.yaml"
    config.write_text("logging: {version: 1}\n")
    env = {"HOME": str(user_home)}

    imported = occopus("import", str(defs), env=env)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == "Successfully imported nodes: ping_receiver_node, ping_sender_node\n"
    built = occopus("build", "--cfg", str(config), "--listips", str(infra), env=env)
    assert built.returncode == 0, built.stderr
    infra_id = built.stdout.splitlines()[-1]  # as scripts take it: INFRA=$(occopus-build infra.yaml)
    assert "Occopus' own configuration (its database, logging, plugins) is not applied" in built.stderr
    assert f"Submitted infrastructure: '{infra_id}'" in built.stderr and "ping-sender:" in built.stderr

    listed = occopus("maintain", "-l", env=env)
    assert listed.stdout.splitlines() == ["List of active infrastructure:", infra_id]
    report = tmp_path / "ips.txt"
    assert occopus("maintain", "-i", infra_id, "-r", "-o", str(report), "-f", "sender", env=env).returncode == 0
    sender = next(n for n in SyncClient().infrastructure(infra_id).live if n.group == "ping-sender")
    assert report.read_text() == f"{sender.address}\n"

    up = occopus("scale", "-i", infra_id, "-n", "ping-sender", "-c", "1", env=env)
    assert up.returncode == 0, up.stderr
    assert sorted(n.name for n in SyncClient().infrastructure(infra_id).live if n.group == "ping-sender") == [
        "ping-infra-ping-sender-1", "ping-infra-ping-sender-2"]
    dropped = occopus("scale", "-i", infra_id, "-n", "ping-sender", "-f", sender.address or "", env=env)
    assert dropped.returncode == 0, dropped.stderr
    assert [n.name for n in SyncClient().infrastructure(infra_id).live if n.group == "ping-sender"] == [
        "ping-infra-ping-sender-2"]
    both = occopus("scale", "-i", infra_id, "-n", "ping-sender", "-c", "1", "-s", "2", env=env)
    assert both.returncode == 1 and "-c and -s must not be used at the same time" in both.stderr
    assert occopus("maintain", "-i", infra_id, env=env).returncode == 0  # one pass

    destroyed = occopus("destroy", "-i", infra_id, env=env)
    assert destroyed.returncode == 0, destroyed.stderr
    assert occopus("maintain", "-l", env=env).stdout == "No active infrastructure!\n"


NOVA_RESOURCE = """\
      endpoint: {endpoint}
      project_id: 9c4693dce56b493b9b83197d900f7fba
      user_domain_name: Default
      image_id: f24a3c1b-d52a-4116-91da-25b3eee8f55e
      flavor_name: 1GB slice
      network_id: 3a1ad4a1-5e5f-4ad8-9a57-1b42dc9e5c2d
      key_name: my-own-key
      security_groups: [default, web]"""


def test_a_nova_tutorial_goes_through_libcloud_s_openstack_driver(home: Path, tmp_path: Path) -> None:
    from libcloud_wire import OpenStackWire, fixtures_shipped

    if not fixtures_shipped():
        pytest.skip("this apache-libcloud wheel ships no openstack fixtures")
    with OpenStackWire(catalog_here=True) as wire:
        infra, defs = tutorial(tmp_path / "nova", kind="nova", resource=NOVA_RESOURCE.format(endpoint=wire.url))
        auth = tmp_path / "auth_data.yaml"
        auth.write_text(f"resource:\n  - type: nova\n    endpoint: {wire.url}\n    auth_data:\n"
                        f"      username: {wire.user}\n      password: {wire.password}\n")
        assert cli("import", str(defs)).returncode == 0
        converted = cli("convert", str(infra), "--auth-data", str(auth))
        assert converted.returncode == 0, converted.stderr
        assert wire.password not in converted.stdout
        native = YAML(typ="safe").load(converted.stdout)
        assert native["providers"] == {"nova": {
            "type": "libcloud", "driver": "openstack", "api_version": "2.0", "tagging": "metadata",
            "ex_force_auth_url": wire.url, "project_id": "9c4693dce56b493b9b83197d900f7fba",
            "ex_domain_name": "Default", "ex_force_auth_version": "3.x_password",
            "key_env": "OCCOPUS_AUTH_1_AUTH_USERNAME", "secret_env": "OCCOPUS_AUTH_1_AUTH_PASSWORD",
            "create_options": {"networks": ["3a1ad4a1-5e5f-4ad8-9a57-1b42dc9e5c2d"], "ex_keyname": "my-own-key",
                               "ex_security_groups": ["default", "web"]}}}
        assert native["groups"]["ping-sender"]["size"] == "1GB slice"

        infra_id, env = up_as_converted(native, "nova", tmp_path / "nova", auth)

        bodies = {p.body["server"]["name"]: p.body["server"] for p in wire.calls("POST", "/compute/v2.1/servers")}
        assert set(bodies) == {"ping-infra-ping-receiver-1", "ping-infra-ping-sender-1"}
        for body in bodies.values():
            assert body["flavorRef"] == "3"  # _flavors_detail.json's "1GB slice"
            assert body["imageRef"] == "f24a3c1b-d52a-4116-91da-25b3eee8f55e" and body["key_name"] == "my-own-key"
            assert body["networks"] == [{"uuid": "3a1ad4a1-5e5f-4ad8-9a57-1b42dc9e5c2d"}]
            assert body["security_groups"] == [{"name": "default"}, {"name": "web"}]
        sender = YAML(typ="safe").load(base64.b64decode(bodies["ping-infra-ping-sender-1"]["user_data"]).decode())
        assert sender["write_files"][0]["content"] == "I am the sender\n"
        assert any(isinstance(u, dict) and u.get("ssh_authorized_keys") for u in sender["users"])
        scope = wire.calls("POST", "/v3/auth/tokens")[0].body["auth"]["scope"]["project"]
        assert scope["id"] == "9c4693dce56b493b9b83197d900f7fba"
        assert cli("down", infra_id, "--auth-data", str(auth), env=env).returncode == 0
