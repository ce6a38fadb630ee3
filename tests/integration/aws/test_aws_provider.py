"""The aws provider against moto's EC2, served over real HTTP on 127.0.0.1 (boto3 itself is not mocked)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from moto_catalog import al2023_ids, an_image
from moto_faults import FaultInjector, FaultyMotoServer, moto_aws

from cloudherd.errors import SpecError
from cloudherd.providers import Provider, make_provider
from cloudherd.providers.aws import AwsProvider
from cloudherd.providers.base import (
    AuthError,
    CapacityError,
    CreateRequest,
    InvalidRequestError,
    MissingDependencyError,
    NotFoundError,
    QuotaError,
    SizeNeed,
    ThrottledError,
    TransientError,
)
from cloudherd.providers.budget import BudgetedProvider
from cloudherd.spec import load_spec

AMI = an_image()  # an al2023 x86_64 image from moto's own catalog
AL2023_X86 = al2023_ids("x86_64")
FAST = {"retries": 3, "backoff": 0.001, "backoff_max": 0.01}  # tiny backoff: retry tests stay fast
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm8fOKWKm0JyQkqLlrcMy52Rb5ZKk6y7n9bZPf8p6xq test@cloudherd"


@pytest.fixture(scope="module")
def aws_moto() -> Iterator[FaultyMotoServer]:
    """moto's server app behind the fault injector (no faults unless a test adds some), for the whole module."""
    with moto_aws(seed=7) as running:
        yield running


@pytest.fixture(scope="module")
def endpoint(aws_moto: FaultyMotoServer) -> str:
    return aws_moto.url


@pytest.fixture
def faults(aws_moto: FaultyMotoServer) -> Iterator[FaultInjector]:
    """The injector, with no rules and zeroed counters; cleared again afterwards."""
    aws_moto.faults.reset()
    try:
        yield aws_moto.faults
    finally:
        aws_moto.faults.reset()


@pytest.fixture(scope="module")
def ec2(aws_moto: FaultyMotoServer) -> Any:
    """A plain boto3 client (not the driver), to look at what moto holds."""
    import boto3

    return boto3.client("ec2", endpoint_url=aws_moto.url, region_name="us-east-1")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def from_spec(folder: Path, settings: dict[str, Any], name: str = "east") -> Provider:
    """A provider made the way users make one: a spec file's entry, loaded and checked, then make_provider."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"spec-{uuid.uuid4().hex[:6]}.yml"
    entry = json.dumps({"type": "aws", **settings})  # JSON is YAML
    path.write_text(f"name: t\nproviders:\n  {name}: {entry}\ngroups:\n  web: {{provider: {name}}}\n")
    config = load_spec(path).spec.providers[name]
    return make_provider(name, config.type, config.model_extra or {})


def driver_of(provider: Provider) -> AwsProvider:
    assert isinstance(provider, BudgetedProvider) and isinstance(provider.inner, AwsProvider)
    return provider.inner


def request(count: int, tags: dict[str, str], **kwargs: Any) -> CreateRequest:
    fields: dict[str, Any] = {"image": AMI, "size": "t3.micro", "ssh_user": "deploy", "ssh_public_key": KEY}
    fields.update(kwargs)
    return CreateRequest(count=count, tags=tags, **fields)


def fresh_tags() -> dict[str, str]:
    return {"cloudherd:infra": "inf-" + uuid.uuid4().hex[:8], "cloudherd:group": "web"}


def test_make_provider_imports_the_driver(endpoint: str) -> None:
    budgeted = make_provider("aws", "aws", {})
    provider = driver_of(budgeted)  # every provider comes paced by its rate budget
    assert budgeted.type == "aws" and budgeted.name == "aws"
    assert provider.region == "us-east-1"
    assert budgeted.attempts == 4  # type: ignore[attr-defined]  # the budget's default: the one retry layer
    assert run(provider.default_size()) == "t3.micro"


def test_spec_settings_reach_the_driver_and_the_budget(endpoint: str, tmp_path: Path) -> None:
    budgeted = from_spec(tmp_path, {"region": "eu-west-1", "allow_from": "10.0.0.0/8", "retries": "2",
                                    "backoff": 0.25, "backoff_max": 3, "budget": {"rate": 5, "burst": 7,
                                                                                  "in_flight": 2}})
    assert isinstance(budgeted, BudgetedProvider)
    driver = driver_of(budgeted)
    assert driver.region == "eu-west-1" and driver.allow_from == ["10.0.0.0/8"]
    assert (budgeted.attempts, budgeted.backoff, budgeted.backoff_max) == (2, 0.25, 3.0)
    assert (budgeted.bucket.rate, budgeted.bucket.burst) == (5.0, 7)
    for key in ("retries", "backoff", "backoff_max", "budget"):  # the budget's, not the driver's
        assert key not in driver.settings


def test_missing_boto3_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    probe = "import sys; sys.modules['boto3'] = None; import cloudherd.providers.aws; print('ok')"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr  # the module imports without boto3
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an uninstalled package looks like to import
    with pytest.raises(MissingDependencyError, match=r"pip install 'cloudherd\[aws\]'"):
        AwsProvider("aws", {})


@pytest.mark.scenario
def test_sizes_and_regions(endpoint: str) -> None:
    provider = AwsProvider("aws", {"region": "us-east-1"})
    sizes = run(provider.sizes("c5"))
    names = [s.name for s in sizes]
    assert names == sorted(names)
    assert {"c5.large", "c5.xlarge", "c5.2xlarge"} <= set(names)
    assert all("c5" in n for n in names)
    large = next(s for s in sizes if s.name == "c5.large")
    assert large.cpus == 2 and large.memory_mb == 4096
    assert run(provider.sizes(r"^t3\.micro$"))[0].memory_mb == 1024
    regions = run(provider.regions())
    assert "us-east-1" in regions and "eu-west-1" in regions
    images = run(provider.images("al2023"))
    assert [(i.name, i.id in AL2023_X86) for i in images] == [("al2023", True)]
    assert {i.name for i in run(provider.images())} >= {"al2023", "al2"}  # moto ships no Debian/new Ubuntu


def test_lifecycle_create_list_stop_start_terminate(endpoint: str) -> None:
    provider = AwsProvider("aws", {})
    tags = fresh_tags()
    token = "tok-" + uuid.uuid4().hex

    async def scenario() -> None:
        made = await provider.create(request(3, tags, names=["web-1", "web-2", "web-3"], token=token))
        assert len(made) == 3
        assert sorted(i.name for i in made) == ["web-1", "web-2", "web-3"]
        assert all(i.id.startswith("i-") and i.ssh_user == "deploy" for i in made)

        found = await provider.list(tags)
        assert sorted(i.id for i in found) == sorted(i.id for i in made)
        for instance in found:
            assert instance.state in ("pending", "running")
            assert instance.tags["cloudherd:infra"] == tags["cloudherd:infra"]
            assert instance.tags["Name"] == instance.name and instance.name.startswith("web-")
            assert instance.address and instance.private_address and instance.port == 22
            assert instance.extra["type"] == "t3.micro" and instance.extra["image"] == AMI
        assert await provider.list({**tags, "cloudherd:group": "other"}) == []

        ids = [i.id for i in made]
        await provider.stop(ids)
        assert {i.state for i in await provider.list(tags)} == {"stopped"}
        await provider.start(ids)
        assert {i.state for i in await provider.list(tags)} <= {"pending", "running"}

        await provider.terminate(ids)
        assert await provider.list(tags) == []
        await provider.terminate(ids)  # already gone: not an error
        await provider.stop(ids)
        await provider.close()

    run(scenario())


@pytest.mark.parametrize("token", ["tok-given", None])
def test_the_client_token_is_sent_and_the_same_on_a_retried_attempt(faults: FaultInjector, tmp_path: Path,
                                                                     token: str | None) -> None:
    """What EC2 de-duplicates on: RunInstances' ClientToken, as the server received it (moto itself ignores
    it, so only the requests tell).  Fails when the token is not sent or differs between attempts."""
    provider = from_spec(tmp_path, FAST)
    tags = fresh_tags()
    given = token and token + uuid.uuid4().hex
    faults.fail("RunInstances", "ServiceUnavailable", first=1)
    made = run(provider.create(request(2, tags, token=given)))
    sent = [p.get("ClientToken") for p in faults.calls_of("RunInstances")]
    assert len(sent) == 2 and faults.injected["RunInstances"] == 1
    assert all(s and len(s) == 1 for s in sent), sent  # present on every attempt
    assert sent[0] == sent[1]  # the retried attempt repeats the first one's token
    if given:
        assert sent[0] == [given]
    run(provider.terminate([i.id for i in made]))


def test_single_instance_named_in_one_call_and_image_alias(endpoint: str) -> None:
    provider = AwsProvider("aws", {})
    tags = fresh_tags()
    calls: list[str] = []
    provider._client().meta.events.register("before-call.ec2.*", lambda model, **_: calls.append(model.name))

    async def scenario() -> None:
        made = await provider.create(request(1, tags, image="al2023", names=["solo"]))
        assert [i.name for i in made] == ["solo"]
        assert made[0].extra["image"] in AL2023_X86  # the newest al2023 x86_64 image moto ships
        assert "CreateTags" not in calls  # the Name tag went with RunInstances
        assert calls.count("RunInstances") == 1
        found = await provider.list(tags)
        assert [(i.name, i.tags["Name"]) for i in found] == [("solo", "solo")]
        await provider.terminate([i.id for i in found])

    run(scenario())


def test_list_of_100_takes_one_describe_call(endpoint: str, faults: FaultInjector) -> None:
    provider = AwsProvider("aws", {})
    tags = fresh_tags()

    async def scenario() -> tuple[int, dict[str, int]]:
        made = await provider.create(request(100, tags))
        calls: list[str] = []
        provider._client().meta.events.register("before-call.ec2.DescribeInstances",
                                                lambda model, **_: calls.append(model.name))
        faults.reset()
        found = await provider.list(tags)
        server_side = dict(faults.calls)  # counted by the wrapper in front of moto
        assert len(found) == 100 and {i.id for i in found} == {i.id for i in made}
        describe_calls = len(calls)
        await provider.terminate([i.id for i in made])
        assert await provider.list(tags) == []
        return describe_calls, server_side

    describe_calls, server_side = run(scenario())
    assert describe_calls == 1
    assert server_side == {"DescribeInstances": 1}  # a refresh of 100 instances is one EC2 call in all


def test_error_mapping(endpoint: str) -> None:
    provider = AwsProvider("aws", {})

    async def scenario() -> None:
        with pytest.raises(NotFoundError, match=r"InvalidInstanceID\.NotFound") as caught:
            await provider._call("describe_instances", InstanceIds=["i-0123456789abcdef0"])
        assert "\n" not in str(caught.value) and "testing" not in str(caught.value)
        with pytest.raises(NotFoundError, match="unknown image alias 'plan9-4'"):
            await provider.create(request(1, fresh_tags(), image="plan9-4"))
        with pytest.raises(NotFoundError, match="'debian-12' matches no x86_64 image"):  # moto ships no Debian
            await provider.create(request(1, fresh_tags(), image="debian-12"))
        with pytest.raises(InvalidRequestError, match="not a valid login user"):
            await provider.create(request(1, fresh_tags(), ssh_user="bad user\n"))
        await provider.stop(["i-0123456789abcdef0"])  # unknown ids are "already gone"

    run(scenario())


def test_unreachable_endpoint_is_transient(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    provider = from_spec(tmp_path, {"endpoint_url": f"http://user:secret@127.0.0.1:{port}", "region": "us-east-1",
                                    **FAST})
    with pytest.raises(TransientError, match=f"127.0.0.1:{port}.*gave up after 3 attempts") as caught:
        run(provider.regions())  # a connection failure is retried like a 5xx
    assert "secret" not in str(caught.value)
    assert caught.value.attempts == 3
    with pytest.raises(TransientError) as once:  # the driver alone tries once
        run(driver_of(provider).regions())
    assert once.value.attempts == 1 and "gave up" not in str(once.value)


# -- retries, against injected faults --------------------------------------------------------------------


def instances_in_moto(ec2: Any, tags: dict[str, str]) -> list[dict[str, Any]]:
    """What moto holds for these tags, in any state, asked with a plain client (no driver, no retries)."""
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()])
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def groups_in_moto(ec2: Any, name: str) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}])["SecurityGroups"]
    return groups


@pytest.mark.parametrize("token", ["tok-given", None])
def test_throttled_twice_then_ok(faults: FaultInjector, ec2: Any, token: str | None, tmp_path: Path) -> None:
    provider = from_spec(tmp_path, {**FAST, "retries": 5})
    tags = fresh_tags()
    faults.fail("RunInstances", "RequestLimitExceeded", first=2)
    made = run(provider.create(request(3, tags, token=token and token + uuid.uuid4().hex)))
    assert len(made) == 3
    assert faults.calls["RunInstances"] == 3 and faults.injected["RunInstances"] == 2
    tokens = {p["ClientToken"][0] for p in faults.calls_of("RunInstances")}
    assert len(tokens) == 1  # every attempt carried the same ClientToken (one is made when none is given)
    assert sorted(i["InstanceId"] for i in instances_in_moto(ec2, tags)) == sorted(i.id for i in made)
    run(provider.terminate([i.id for i in made]))


@pytest.mark.parametrize("code", ["RequestLimitExceeded", "Throttling"])
def test_always_throttled_gives_up_after_the_set_attempts(faults: FaultInjector, ec2: Any, code: str,
                                                           tmp_path: Path) -> None:
    provider = from_spec(tmp_path, {**FAST, "retries": 4})
    tags = fresh_tags()
    faults.fail("RunInstances", code)
    with pytest.raises(ThrottledError, match=f"{code}.*gave up after 4 attempts") as caught:
        run(provider.create(request(2, tags)))
    assert caught.value.attempts == 4 and caught.value.code == code
    assert faults.calls["RunInstances"] == 4
    assert instances_in_moto(ec2, tags) == []
    assert groups_in_moto(ec2, f"cloudherd-{tags['cloudherd:infra']}-web") == []  # the unused group went too


@pytest.mark.parametrize(("code", "error"), [
    ("InsufficientInstanceCapacity", CapacityError),  # a 500 on EC2: the code wins over the status
    ("InstanceLimitExceeded", QuotaError),
    ("VcpuLimitExceeded", QuotaError),
    ("AuthFailure", AuthError),
])
def test_capacity_quota_and_auth_errors_are_not_retried(faults: FaultInjector, ec2: Any, code: str,
                                                        error: type[Exception], tmp_path: Path) -> None:
    provider = from_spec(tmp_path, {**FAST, "retries": 5})
    tags = fresh_tags()
    faults.fail("RunInstances", code)
    with pytest.raises(error, match=code) as caught:
        run(provider.create(request(2, tags)))
    assert faults.calls["RunInstances"] == 1
    assert getattr(caught.value, "code", None) == code and getattr(caught.value, "attempts", None) == 1
    assert "attempts" not in str(caught.value) and "testing" not in str(caught.value)
    assert instances_in_moto(ec2, tags) == []


@pytest.mark.parametrize("code", ["BARE_503", "ServiceUnavailable", "InternalError"])
def test_5xx_then_ok(faults: FaultInjector, code: str, tmp_path: Path) -> None:
    provider = from_spec(tmp_path, FAST)
    tags = fresh_tags()
    faults.fail("RunInstances", code, first=1)
    faults.fail("DescribeInstances", code, first=1)

    async def scenario() -> None:
        made = await provider.create(request(2, tags))
        assert len(made) == 2 and faults.calls["RunInstances"] == 2
        assert {i.id for i in await provider.list(tags)} == {i.id for i in made}  # a page is retried too
        assert faults.calls["DescribeInstances"] == 2
        await provider.terminate([i.id for i in made])

    run(scenario())


def test_seeded_random_faults(faults: FaultInjector, tmp_path: Path) -> None:
    """A third of the calls throttled at random (seeded): every call still succeeds, retries absorb them."""
    provider = from_spec(tmp_path, {**FAST, "retries": 10})
    rule = faults.fail("DescribeRegions", "RequestLimitExceeded", rate=0.33)

    async def scenario() -> None:
        for _ in range(12):
            assert "us-east-1" in await provider.regions()

    run(scenario())
    assert rule.fired == faults.injected["DescribeRegions"] > 0
    assert faults.calls["DescribeRegions"] == 12 + rule.fired
    faults.reset(seed=7)  # the same seed throttles the same calls
    rule_again = faults.fail("DescribeRegions", "RequestLimitExceeded", rate=0.33)
    run(scenario())
    assert rule_again.fired == rule.fired


@pytest.mark.parametrize(("bad", "message"), [
    ({"retries": 0}, "retries: must be ≥ 1"), ({"retries": -2}, "retries: must be ≥ 1"),
    ({"retries": 2.5}, "retries: .*integer"), ({"backoff": -1}, "backoff: must be ≥ 0"),
    ({"backoff_max": "soon"}, "backoff_max: .*number"), ({"budget": {"rate": 0}}, "budget.rate: .*greater than 0"),
    ({"budget": {"rat": 1}}, "budget.rat: unknown key"), ({"rate": 3}, "rate: belongs under 'budget:'"),
    ({"security_group_cleanup_wait": -1}, "security_group_cleanup_wait: must be ≥ 0"),
])
def test_retry_and_budget_settings_are_spec_errors(tmp_path: Path, bad: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=rf"spec-\w+\.yml:3: providers\.east\.{message}"):
        from_spec(tmp_path, bad)
    with pytest.raises(InvalidRequestError, match="provider east"):  # the same checks for settings from code
        make_provider("east", "aws", bad)


# -- security groups ------------------------------------------------------------------------------------


def ingress(group: dict[str, Any]) -> set[tuple[int, str]]:
    return {(p["FromPort"], r["CidrIp"]) for p in group["IpPermissions"] if p["IpProtocol"] == "tcp"
            for r in p.get("IpRanges", []) if p["FromPort"] == p["ToPort"]}


def test_security_group_per_group(faults: FaultInjector, ec2: Any) -> None:
    provider = AwsProvider("aws", {})
    tags = fresh_tags()
    name = f"cloudherd-{tags['cloudherd:infra']}-web"
    users = ec2.create_security_group(GroupName="cloudherd-users-own", Description="not ours")["GroupId"]

    async def scenario() -> None:
        faults.reset()
        made = await provider.create(request(2, tags, ports=[80, 443]))
        [group] = groups_in_moto(ec2, name)
        assert ingress(group) == {(22, "0.0.0.0/0"), (80, "0.0.0.0/0"), (443, "0.0.0.0/0")}
        assert {t["Key"]: t["Value"] for t in group["Tags"]}["cloudherd:infra"] == tags["cloudherd:infra"]
        default_vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        assert group["VpcId"] == default_vpc
        for item in instances_in_moto(ec2, tags):
            assert [g["GroupId"] for g in item["SecurityGroups"]] == [group["GroupId"]]

        more = await provider.create(request(1, tags, ports=[443, 8080]))  # reused, the new port added
        [again] = groups_in_moto(ec2, name)
        assert again["GroupId"] == group["GroupId"]
        assert {p for p, _ in ingress(again)} == {22, 80, 443, 8080}
        assert faults.calls["CreateSecurityGroup"] == 1 and faults.calls["AuthorizeSecurityGroupIngress"] == 2

        await provider.terminate([made[0].id])  # the others still use it: it stays
        assert len(groups_in_moto(ec2, name)) == 1
        await provider.terminate([made[1].id, more[0].id])
        assert groups_in_moto(ec2, name) == []

        # a group the user gave (even named cloudherd-...) is never deleted; allow_from narrows the rules
        narrow = AwsProvider("aws", {"security_group_ids": [users], "allow_from": "10.1.0.0/16"})
        other = fresh_tags()
        mine = await narrow.create(request(1, other, ports=[5432]))
        [group2] = groups_in_moto(ec2, f"cloudherd-{other['cloudherd:infra']}-web")
        assert ingress(group2) == {(22, "10.1.0.0/16"), (5432, "10.1.0.0/16")}
        [item] = instances_in_moto(ec2, other)
        assert {g["GroupId"] for g in item["SecurityGroups"]} == {group2["GroupId"], users}
        await narrow.terminate([mine[0].id])
        assert groups_in_moto(ec2, f"cloudherd-{other['cloudherd:infra']}-web") == []
        assert len(groups_in_moto(ec2, "cloudherd-users-own")) == 1

    run(scenario())
    ec2.delete_security_group(GroupId=users)


def test_open_and_close_ports_are_symmetric_steps(faults: FaultInjector, ec2: Any) -> None:
    provider = AwsProvider("aws", {})
    tags = fresh_tags()
    name = f"cloudherd-{tags['cloudherd:infra']}-web"
    assert provider.supports("ports") and not AwsProvider("aws", {"manage_security_group": False}).supports("ports")

    async def scenario() -> None:
        handle = await provider.open_ports(tags, [8443])
        [group] = groups_in_moto(ec2, name)
        assert (handle.id, handle.name, handle.kind) == (group["GroupId"], name, "security-group")
        assert handle.ports == (22, 8443) and dict(handle.tags) == tags
        assert ingress(group) == {(22, "0.0.0.0/0"), (8443, "0.0.0.0/0")}
        assert (await provider.open_ports(tags, [8443])).id == handle.id  # idempotent: found by its name
        assert faults.calls["CreateSecurityGroup"] == 1
        assert [h.id for h in await provider.list_ports({"cloudherd:infra": tags["cloudherd:infra"]})] == [handle.id]

        made = await provider.create(request(1, tags, ports=[8443]))  # create opens the same group
        assert faults.calls["CreateSecurityGroup"] == 1
        await provider.close_ports(tags)  # a live instance still uses it: it stays
        assert len(groups_in_moto(ec2, name)) == 1
        await provider.terminate([made[0].id])  # the group's last instance: terminate closes it
        assert groups_in_moto(ec2, name) == []
        await provider.open_ports(tags, [])
        await provider.close_ports(tags)
        assert groups_in_moto(ec2, name) == []
        await provider.close_ports(tags)  # nothing left to close: not an error
        assert await provider.list_ports({"cloudherd:infra": tags["cloudherd:infra"]}) == []

    run(scenario())


# -- size by need ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog() -> list[dict[str, Any]]:
    """Every instance type moto serves, from its own data (over HTTP that is ~4 s; moto ignores MaxResults and
    always answers DescribeInstanceTypes with all ~1400 types in one page)."""
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    return list(INSTANCE_TYPES.values())


def smallest_in(catalog: list[dict[str, Any]], cpus: float | None, memory_mib: int | None) -> dict[str, Any]:
    """The expectation, worked out here from the raw catalog: current generation, not metal, on demand, x86_64."""
    fitting = [t for t in catalog
               if t["CurrentGeneration"] and not t["BareMetal"] and "on-demand" in t["SupportedUsageClasses"]
               and "x86_64" in t["ProcessorInfo"]["SupportedArchitectures"]
               and t["VCpuInfo"]["DefaultVCpus"] >= (cpus or 0) and t["MemoryInfo"]["SizeInMiB"] >= (memory_mib or 0)]
    return min(fitting, key=lambda t: (t["VCpuInfo"]["DefaultVCpus"], t["MemoryInfo"]["SizeInMiB"], t["InstanceType"]))


def filters(params: dict[str, list[str]]) -> dict[str, list[str]]:
    """The Filter.N.Name / Filter.N.Value.M parameters of a Query API call, as {name: values}."""
    found: dict[str, list[str]] = {}
    for key, values in params.items():
        if key.startswith("Filter.") and key.endswith(".Name"):
            prefix = key[: -len("Name")]
            found[values[0]] = [params[k][0] for k in sorted((k for k in params if k.startswith(prefix + "Value.")),
                                                             key=lambda k: int(k.rsplit(".", 1)[1]))]
    return found


def test_size_by_need(faults: FaultInjector, catalog: list[dict[str, Any]]) -> None:
    provider = AwsProvider("aws", {})
    tags = fresh_tags()

    async def made_type(need: SizeNeed) -> str:
        [instance] = await provider.create(request(1, tags, size=None, size_need=need))
        return str(instance.extra["type"])

    async def scenario() -> None:
        expected = smallest_in(catalog, 2, 8192)
        assert expected["VCpuInfo"]["DefaultVCpus"] >= 2 and expected["MemoryInfo"]["SizeInMiB"] >= 8192
        assert await made_type(SizeNeed(cpus=2, memory_mib=8192)) == expected["InstanceType"]
        [asked] = [filters(p) for p in faults.calls_of("DescribeInstanceTypes")]  # EC2 filters: less to send
        assert asked == {"current-generation": ["true"], "bare-metal": ["false"],
                         "supported-usage-class": ["on-demand"], "processor-info.supported-architecture": ["x86_64"],
                         "vcpu-info.default-vcpus": ["2"]}
        assert await made_type(SizeNeed(cpus=1.5, memory_mib=8192)) == expected["InstanceType"]
        assert faults.calls["DescribeInstanceTypes"] == 1  # cached

        # no 1-vCPU type has 16 GiB: the whole catalog is read (once), and the answer is still the smallest
        assert await made_type(SizeNeed(cpus=1, memory_mib=16384)) == smallest_in(catalog, 1, 16384)["InstanceType"]
        assert await made_type(SizeNeed(memory_mib=3000)) == smallest_in(catalog, None, 3000)["InstanceType"]
        vcpus = [filters(p).get("vcpu-info.default-vcpus") for p in faults.calls_of("DescribeInstanceTypes")]
        assert vcpus == [["2"], ["1"], None]
        with pytest.raises(InvalidRequestError, match="no size has at least 100000 cpus"):
            await provider.create(request(1, tags, size=None, size_need=SizeNeed(cpus=100000)))
        await provider.terminate([i.id for i in await provider.list(tags)])

    run(scenario())


def test_a_throttled_page_retries_the_list() -> None:
    """moto answers DescribeInstances in one page whatever MaxResults says, so paging is shown with a stub
    boto3 client: a throttled second page fails the list, which the budget asks again from the start."""
    from botocore.exceptions import ClientError

    class Paged:
        def __init__(self) -> None:
            self.tokens: list[str | None] = []

        def describe_instances(self, **params: Any) -> dict[str, Any]:
            token = params.get("NextToken")
            self.tokens.append(token)
            if token == "p2" and self.tokens.count("p2") == 1:
                raise ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"},
                                   "ResponseMetadata": {"HTTPStatusCode": 503}}, "DescribeInstances")
            ids, following = {None: (["i-1", "i-2"], "p2"), "p2": (["i-3"], "p3"), "p3": (["i-4"], None)}[token]
            page: dict[str, Any] = {"Reservations": [{"Instances": [{"InstanceId": i, "State": {"Name": "running"}}
                                                                    for i in ids]}]}
            if following:
                page["NextToken"] = following
            return page

    provider = make_provider("aws", "aws", FAST)
    stub = driver_of(provider)._client_obj = Paged()
    assert [i.id for i in run(provider.list({"cloudherd:infra": "x"}))] == ["i-1", "i-2", "i-3", "i-4"]
    assert stub.tokens == [None, "p2", None, "p2", "p3"]  # the throttled list was asked again as a whole
