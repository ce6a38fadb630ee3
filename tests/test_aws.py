"""The aws provider against moto's EC2, served over real HTTP on 127.0.0.1 (boto3 itself is not mocked)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from cloudherd.providers import make_provider
from cloudherd.providers.aws import AwsProvider
from cloudherd.providers.base import (
    CreateRequest,
    InvalidRequestError,
    MissingDependencyError,
    NotFoundError,
    ProviderError,
)

AMI = "ami-03c3da4cfa8e8943a"  # al2023 x86_64, shipped with moto for us-east-1
AL2023_X86 = {"ami-03c3da4cfa8e8943a", "ami-0d27e0fb3bac4d724", "ami-0ac48d91c7d16772c"}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm8fOKWKm0JyQkqLlrcMy52Rb5ZKk6y7n9bZPf8p6xq test@cloudherd"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", url)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        try:
            yield url
        finally:
            server.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def request(count: int, tags: dict[str, str], **kwargs: Any) -> CreateRequest:
    fields: dict[str, Any] = {"image": AMI, "size": "t3.micro", "ssh_user": "deploy", "ssh_public_key": KEY}
    fields.update(kwargs)
    return CreateRequest(count=count, tags=tags, **fields)


def fresh_tags() -> dict[str, str]:
    return {"cloudherd:infra": "inf-" + uuid.uuid4().hex[:8], "cloudherd:group": "web"}


def test_make_provider_imports_the_driver(endpoint: str) -> None:
    provider = make_provider("aws", "aws", {})
    assert isinstance(provider, AwsProvider)
    assert provider.type == "aws" and provider.name == "aws"
    assert provider.region == "us-east-1"
    assert run(provider.default_size()) == "t3.micro"


def test_missing_boto3_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    probe = "import sys; sys.modules['boto3'] = None; import cloudherd.providers.aws; print('ok')"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr  # the module imports without boto3
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an uninstalled package looks like to import
    with pytest.raises(MissingDependencyError, match=r"pip install 'cloudherd\[aws\]'"):
        AwsProvider("aws", {})


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


def test_same_token_twice(endpoint: str) -> None:
    """Real EC2 returns the first call's instances for a repeated ClientToken; moto makes new ones."""
    provider = AwsProvider("aws", {})
    tags = fresh_tags()
    token = "tok-" + uuid.uuid4().hex

    async def scenario() -> tuple[list[str], list[str], int]:
        first = await provider.create(request(2, tags, token=token))
        again = await provider.create(request(2, tags, token=token))
        listed = await provider.list(tags)
        await provider.terminate([i.id for i in listed])
        return [i.id for i in first], [i.id for i in again], len(listed)

    first, again, listed = run(scenario())
    assert len(first) == 2 and len(again) == 2
    # moto 5 ignores ClientToken: a second run_instances makes two more instances (EC2 would not).
    assert set(first).isdisjoint(again)
    assert listed == 4


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


def test_list_of_100_takes_one_describe_call(endpoint: str) -> None:
    provider = AwsProvider("aws", {})
    tags = fresh_tags()

    async def scenario() -> int:
        made = await provider.create(request(100, tags))
        calls: list[str] = []
        provider._client().meta.events.register("before-call.ec2.DescribeInstances",
                                                lambda model, **_: calls.append(model.name))
        found = await provider.list(tags)
        assert len(found) == 100 and {i.id for i in found} == {i.id for i in made}
        describe_calls = len(calls)
        await provider.terminate([i.id for i in made])
        assert await provider.list(tags) == []
        return describe_calls

    assert run(scenario()) == 1


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


def test_unreachable_endpoint_is_a_provider_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    provider = AwsProvider("aws", {"endpoint_url": f"http://user:secret@127.0.0.1:{port}", "region": "us-east-1"})
    with pytest.raises(ProviderError, match=f"127.0.0.1:{port}") as caught:
        run(provider.regions())
    assert "secret" not in str(caught.value)
