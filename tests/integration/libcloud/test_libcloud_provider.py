"""The libcloud provider: libcloud's Dummy driver end to end, and the real OpenStack driver against a real HTTP
server on 127.0.0.1 that answers with the fixture files apache-libcloud ships (see tests/support/libcloud_wire.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from libcloud_wire import BulkDummyDriver, OpenStackWire, fixtures_shipped

from cloudherd.providers import make_provider
from cloudherd.providers.base import (
    TAG_GROUP,
    TAG_INFRA,
    TAG_OWNER,
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
    UnknownProviderError,
)
from cloudherd.providers.libcloud import LibcloudProvider

TAGS = {TAG_INFRA: "inf1", TAG_GROUP: "web", TAG_OWNER: "alice"}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey alice@test"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def request(count: int = 2, *, image: str | None = "Ubuntu 9.10", size: str | None = None,
            names: tuple[str, ...] | None = None, tags: dict[str, str] | None = None, **more) -> CreateRequest:  # type: ignore[no-untyped-def]
    if names is None:
        names = tuple(f"stack-web-{i}" for i in range(count))
    return CreateRequest(count=count, image=image, size=size, tags=tags or TAGS, ssh_user="deploy",
                         ssh_public_key=KEY, names=names, **more)


# -- Dummy ---------------------------------------------------------------------------------------------


@pytest.fixture
def dummy() -> LibcloudProvider:
    return LibcloudProvider("dummy", {"driver": "dummy", "key": 0})


def test_dummy_catalogs(dummy: LibcloudProvider) -> None:
    sizes = run(dummy.sizes())
    assert [(s.name, s.memory_mb) for s in sizes] == [("Small", 128), ("Medium", 512), ("Big", 4096),
                                                      ("XXL Big", 8192)]
    assert sizes[0].extra["id"] == "1" and sizes[0].extra["disk_gb"] == 4
    assert [s.name for s in run(dummy.sizes("big"))] == ["Big", "XXL Big"]
    assert [i.name for i in run(dummy.images())] == ["Slackware 4", "Ubuntu 9.04", "Ubuntu 9.10"]
    assert [i.id for i in run(dummy.images("ubuntu"))] == ["2", "1"]
    assert run(dummy.regions()) == ["Island Datacenter", "London Loft", "Paul's Room"]
    assert run(dummy.default_size()) is None


def test_dummy_end_to_end(dummy: LibcloudProvider) -> None:
    async def scenario() -> None:
        made = await dummy.create(request(2, size_need=SizeNeed(memory_mib=500)))
        # Dummy ignores the name it is given: the provider reports the names asked for, and remembers the tags
        assert [i.name for i in made] == ["stack-web-0", "stack-web-1"]
        assert [i.extra["cloud_name"] for i in made] == ["dummy-3", "dummy-4"]
        assert all(i.state == "running" and i.tags == TAGS for i in made)
        assert [i.address for i in made] == ["127.0.0.3", "127.0.0.4"]

        assert [i.id for i in await dummy.list({TAG_INFRA: "inf1"})] == [i.id for i in made]
        assert [i.id for i in await dummy.list({TAG_INFRA: "inf1", TAG_GROUP: "web"})] == [i.id for i in made]
        assert await dummy.list({TAG_INFRA: "other"}) == []
        everything = await dummy.list({})
        assert {i.name for i in everything} == {"dummy-1", "dummy-2", "stack-web-0", "stack-web-1"}

        await dummy.terminate([made[0].id, "no-such-node"])
        assert [i.id for i in await dummy.list({TAG_INFRA: "inf1"})] == [made[1].id]
        await dummy.terminate([made[0].id])  # gone already: not an error
        await dummy.terminate([made[1].id])
        assert await dummy.list({TAG_INFRA: "inf1"}) == []

    run(scenario())


def test_dummy_sizes_by_need_and_name(dummy: LibcloudProvider) -> None:
    async def scenario() -> None:
        # the smallest size with at least 1000 MiB is "Big"; Dummy reports the size it made (s1) in extra only
        made = await dummy.create(request(1, size_need=SizeNeed(memory_mib=1000)))
        assert made[0].state == "running"
        with pytest.raises(InvalidRequestError, match="does not report cpu counts"):
            await dummy.create(request(1, size_need=SizeNeed(cpus=2)))
        with pytest.raises(InvalidRequestError, match="no size has at least"):
            await dummy.create(request(1, size_need=SizeNeed(memory_mib=10**6)))
        with pytest.raises(NotFoundError, match=r"no size 'huge'.*Small"):
            await dummy.create(request(1, size="huge"))
        assert len(await dummy.create(request(1, size="Medium"))) == 1
        assert len(await dummy.create(request(1, size="3"))) == 1  # by id

    run(scenario())


def test_dummy_refusals(dummy: LibcloudProvider) -> None:
    async def scenario() -> None:
        made = await dummy.create(request(1))
        with pytest.raises(InvalidRequestError, match="libcloud driver dummy cannot stop instances"):
            await dummy.stop([made[0].id])
        with pytest.raises(InvalidRequestError, match="cannot start"):
            await dummy.start([made[0].id])
        with pytest.raises(NotFoundError, match="no image 'Windows'"):
            await dummy.create(request(1, image="Windows"))
        with pytest.raises(InvalidRequestError, match="no image given"):
            await dummy.create(request(1, image=None))
        with pytest.raises(InvalidRequestError, match="3 names given for 2"):
            await dummy.create(request(2, names=("a", "b", "c")))
        assert await dummy.create(request(0, names=())) == []

    run(scenario())


def test_settings_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnknownProviderError, match=r"unknown libcloud compute driver 'opnstack' \(did you mean "
                                                   r"openstack"):
        LibcloudProvider("x", {"driver": "opnstack"})
    assert issubclass(UnknownProviderError, InvalidRequestError)
    with pytest.raises(InvalidRequestError, match="set 'driver'"):
        LibcloudProvider("x", {})
    with pytest.raises(InvalidRequestError, match=r"bad driver arguments.*creds"):
        LibcloudProvider("x", {"driver": "dummy"})  # Dummy needs one positional argument
    with pytest.raises(InvalidRequestError, match="tagging must be one of"):
        LibcloudProvider("x", {"driver": "dummy", "key": 0, "tagging": "labels"})
    with pytest.raises(InvalidRequestError, match="concurrency must be"):
        LibcloudProvider("x", {"driver": "dummy", "key": 0, "concurrency": 0})
    with pytest.raises(UnknownProviderError, match="cannot be imported"):
        LibcloudProvider("x", {"driver": "no_such_module:Driver"})
    # settings NAME_env read NAME from the environment; unset is an AuthError naming the variable
    monkeypatch.setenv("DUMMY_CREDS", "5")
    provider = LibcloudProvider("x", {"driver": "dummy", "key_env": "DUMMY_CREDS"})
    assert len(run(provider.list({}))) == 5
    monkeypatch.delenv("DUMMY_CREDS")
    with pytest.raises(AuthError, match=r"\$DUMMY_CREDS, which is not set"):
        LibcloudProvider("x", {"driver": "dummy", "key_env": "DUMMY_CREDS"})


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "libcloud.compute.providers", None)  # import now fails
    with pytest.raises(MissingDependencyError, match=r"pip install 'cloudherd\[libcloud\]'"):
        LibcloudProvider("x", {"driver": "dummy", "key": 0})


def test_name_tagging_survives_a_fresh_memory() -> None:
    """A driver that keeps names but no metadata: infra and group live in the node name."""
    provider = LibcloudProvider("named", {"driver": "libcloud_wire:NamedDummyDriver", "key": 0})

    async def scenario() -> None:
        made = await provider.create(request(2))
        assert [i.extra["cloud_name"] for i in made] == ["ch--inf1--web--stack-web-0", "ch--inf1--web--stack-web-1"]
        provider._remembered.clear()  # as a new process would see them: only the names carry tags
        found = await provider.list({TAG_INFRA: "inf1"})
        assert [(i.name, i.tags) for i in found] == [("stack-web-0", {TAG_INFRA: "inf1", TAG_GROUP: "web"}),
                                                     ("stack-web-1", {TAG_INFRA: "inf1", TAG_GROUP: "web"})]
        assert [i.private_address for i in found] == ["10.0.0.101", "10.0.0.102"]
        assert await provider.list({TAG_INFRA: "inf1", TAG_OWNER: "alice"}) == []  # owner is not in the name
        # a retried create with the same names makes only what is missing
        again = await provider.create(request(3))
        assert [i.name for i in again] == ["stack-web-0", "stack-web-1", "stack-web-2"]
        assert [i.id for i in again[:2]] == [i.id for i in made]
        assert len(await provider.list({TAG_INFRA: "inf1"})) == 3
        with pytest.raises(InvalidRequestError, match="cannot be encoded"):
            await provider.create(request(1, tags={TAG_INFRA: "a--b"}))
        # stop and start where the driver has them
        await provider.stop([made[0].id])
        states = {i.id: i.state for i in await provider.list({TAG_INFRA: "inf1"})}
        assert states[made[0].id] == "stopped" and states[made[1].id] == "running"
        await provider.start([made[0].id])
        assert {i.state for i in await provider.list({TAG_INFRA: "inf1"})} == {"running"}
        with pytest.raises(NotFoundError, match="no instance nope"):
            await provider.stop(["nope"])

    run(scenario())


def test_bulk_create_and_metadata_tags() -> None:
    BulkDummyDriver.bulk_calls.clear()
    provider = LibcloudProvider("bulk", {"driver": "libcloud_wire:BulkDummyDriver", "key": 0})

    async def scenario() -> None:
        made = await provider.create(request(3, names=(), token="tok-1"))
        assert BulkDummyDriver.bulk_calls == [3]  # one call for all three
        assert len({i.id for i in made}) == 3
        provider._remembered.clear()  # the tags now come back from the driver itself (extra['tags'])
        found = await provider.list({TAG_INFRA: "inf1"})
        assert [i.id for i in found] == sorted(i.id for i in made)
        assert found[0].tags == {**TAGS, "cloudherd:token": "tok-1"}
        # the same token again: the first call's instances, nothing new
        again = await provider.create(request(3, names=(), token="tok-1"))
        assert sorted(i.id for i in again) == sorted(i.id for i in made) and BulkDummyDriver.bulk_calls == [3]
        # with names, one create_node per name (so each is honoured)
        named = await provider.create(request(2, tags={TAG_INFRA: "inf2"}))
        assert BulkDummyDriver.bulk_calls == [3, 1, 1]
        assert [i.name for i in named] == ["stack-web-0", "stack-web-1"]

    run(scenario())


# -- OpenStack, through libcloud's own fixtures over real HTTP -----------------------------------------

pytestmark_openstack = pytest.mark.skipif(not fixtures_shipped(), reason="apache-libcloud ships no fixtures")


@pytest.fixture
def wire() -> Iterator[OpenStackWire]:
    if not fixtures_shipped():
        pytest.skip("this apache-libcloud wheel ships no openstack fixtures")
    with OpenStackWire() as server:
        yield server


@pytest.fixture
def openstack(wire: OpenStackWire) -> LibcloudProvider:
    return LibcloudProvider("os", wire.settings())


def test_openstack_catalogs_from_fixtures(wire: OpenStackWire, openstack: LibcloudProvider) -> None:
    sizes = run(openstack.sizes())
    # _flavors_detail.json: eight "slices"; sorted by cpus, then memory
    assert [(s.name, s.cpus, s.memory_mb) for s in sizes] == [
        ("256 slice", 1, 256), ("512 slice", 1, 512), ("1GB slice", 1, 1024), ("2GB slice", 2, 2048),
        ("4GB slice", 2, 4096), ("8GB slice", 4, 8192), ("15.5GB slice", 8, 16384), ("30GB slice", 8, 30720)]
    assert sizes[0].extra["id"] == "1" and sizes[0].extra["disk_gb"] == 10
    images = run(openstack.images())
    # _images_v2.json has a "next" page (_images_v2_page2.json): both are read
    assert sorted(i.id for i in images) == ["4bd743f8-7e7d-4568-8f31-b3f06b90e70a",
                                            "f24a3c1b-d52a-4116-91da-25b3eee8f55c",
                                            "f24a3c1b-d52a-4116-91da-25b3eee8f55e"]
    assert {i.name for i in images} == {"hypernode"} and images[0].extra["os_distro"] == "ubuntu"
    assert [r.query for r in wire.calls("GET", "/image/v2/images")][-1]["marker"] == [
        "e7a40226-3523-4f0f-87d8-d8dc91bbf4a3"]
    # keystone v3 password auth, scoped to the project
    auth = wire.calls("POST", "/v3/auth/tokens")[0].body["auth"]
    assert auth["identity"]["password"]["user"] == {"name": "alice", "password": "s3cr3t-Pa55word",
                                                    "domain": {"name": "Default"}}
    assert auth["scope"]["project"]["name"] == "admin"
    assert all(r.headers.get("x-auth-token") for r in wire.requests if not r.path.startswith("/v3/"))


def test_openstack_list_parses_fixture_servers(openstack: LibcloudProvider) -> None:
    found = {i.id: i for i in run(openstack.list({}))}
    # _servers_detail.json: 12064 ACTIVE and 12065 BUILD, with public and private networks
    assert set(found) == {"12064", "12065"}
    active, building = found["12064"], found["12065"]
    assert (active.name, active.state, active.address, active.private_address) == (
        "lc-test", "running", "50.57.94.30", "10.182.64.29")
    assert building.state == "pending" and building.extra["libcloud_state"] == "pending"
    assert active.extra["public_ips"][0] == "50.57.94.30" and active.extra["flavorId"] == "2"
    assert run(openstack.list({TAG_INFRA: "inf1"})) == []


def test_openstack_create_list_stop_start_terminate(wire: OpenStackWire, openstack: LibcloudProvider) -> None:
    async def scenario() -> None:
        made = await openstack.create(request(3, image="f24a3c1b-d52a-4116-91da-25b3eee8f55e",
                                              size_need=SizeNeed(cpus=2, memory_mib=3000), token="inf1-web"))
        posts = wire.calls("POST", "/compute/v2.1/servers")
        assert len(posts) == 3
        bodies = sorted((p.body["server"] for p in posts), key=lambda b: b["name"])
        assert [b["name"] for b in bodies] == ["stack-web-0", "stack-web-1", "stack-web-2"]
        for body in bodies:
            assert body["flavorRef"] == "5"  # 4GB slice: the smallest with 2 cpus and 3000 MiB
            assert body["imageRef"] == "f24a3c1b-d52a-4116-91da-25b3eee8f55e"
            assert body["metadata"] == {**TAGS, "cloudherd:token": "inf1-web"}
            user_data = base64.b64decode(body["user_data"]).decode()
            assert user_data.startswith("#cloud-config\n")
            config = json.loads(user_data.split("\n", 1)[1])
            assert config["users"][1]["name"] == "deploy" and config["users"][1]["ssh_authorized_keys"] == [KEY]
        # the image id was checked with glance, not by listing every image
        assert wire.calls("GET", "/image/v2/images/f24a3c1b-d52a-4116-91da-25b3eee8f55e")
        assert [i.name for i in made] == ["stack-web-0", "stack-web-1", "stack-web-2"]
        assert all(i.state == "pending" and i.ssh_user == "deploy" and i.tags[TAG_GROUP] == "web" for i in made)

        found = await openstack.list({TAG_INFRA: "inf1"})
        assert sorted(i.id for i in found) == sorted(i.id for i in made)
        # a retried create with the same token finds them and sends nothing
        assert sorted(i.id for i in await openstack.create(request(3, image="f24a3c1b-d52a-4116-91da-25b3eee8f55e",
                                                                   token="inf1-web"))) == sorted(i.id for i in made)
        assert len(wire.calls("POST", "/compute/v2.1/servers")) == 3

        await openstack.stop([made[0].id])
        assert wire.calls("POST", f"/compute/v2.1/servers/{made[0].id}/action")[0].body == {"os-stop": None}
        assert {i.id: i.state for i in await openstack.list({TAG_INFRA: "inf1"})}[made[0].id] == "stopped"
        await openstack.start([made[0].id])
        assert wire.actions == [(made[0].id, "os-stop"), (made[0].id, "os-start")]
        assert {i.id: i.state for i in await openstack.list({TAG_INFRA: "inf1"})}[made[0].id] == "running"

        await openstack.terminate([made[0].id, "not-a-server"])
        assert [r.path for r in wire.requests if r.method == "DELETE"] == [f"/compute/v2.1/servers/{made[0].id}"]
        # a server that vanishes between list and delete (404) is gone, not an error
        wire.fail("DELETE", f"/compute/v2.1/servers/{made[1].id}", 404,
                  {"itemNotFound": {"code": 404, "message": "Instance could not be found"}})
        await openstack.terminate([i.id for i in made])
        assert [i.id for i in await openstack.list({TAG_INFRA: "inf1"})] == [made[1].id]  # (the 404 lied)

    run(scenario())


def test_openstack_image_by_name(wire: OpenStackWire, openstack: LibcloudProvider) -> None:
    # three fixture images are all called "hypernode": a name is ambiguous, the message lists ids
    with pytest.raises(InvalidRequestError, match="3 catalog entries are named 'hypernode'; use an id"):
        run(openstack.create(request(1, image="hypernode", size="1GB slice")))
    assert wire.calls("POST", "/compute/v2.1/servers") == []


def test_openstack_partial_failure_is_rolled_back(wire: OpenStackWire, openstack: LibcloudProvider) -> None:
    wire.fail("POST", "/compute/v2.1/servers", 403,
              {"forbidden": {"code": 403, "message": "Quota exceeded for instances: Requested 1, but already "
                                                     "used 10 of 10 instances"}})
    with pytest.raises(QuotaError, match=r"HTTP 403: .*Quota exceeded for instances"):
        run(openstack.create(request(3, image="f24a3c1b-d52a-4116-91da-25b3eee8f55e", size="1GB slice")))
    assert len(wire.calls("POST", "/compute/v2.1/servers")) == 3
    assert len([r for r in wire.requests if r.method == "DELETE"]) == 2  # the two that were made
    assert run(openstack.list({TAG_INFRA: "inf1"})) == []


@pytest.mark.parametrize(("status", "body", "headers", "error", "text"), [
    (401, {"error": {"code": 401, "message": "The request you have made requires authentication."}}, {},
     AuthError, "HTTP 401: credentials were refused"),
    (413, {"overLimit": {"code": 413, "message": "This request was rate-limited.", "retryAfter": "2"}},
     {"Retry-After": "2"}, ThrottledError, "HTTP 413: .*rate-limited"),
    (429, {"overLimit": {"code": 429, "message": "Too many requests"}}, {"Retry-After": "3"},
     ThrottledError, "rate limited, retry after 3s"),
    (403, {"forbidden": {"code": 403, "message": "Policy doesn't allow os_compute_api:servers:index"}}, {},
     AuthError, "lack permission"),
    (404, {"itemNotFound": {"code": 404, "message": "not here"}}, {}, NotFoundError, "HTTP 404"),
    (400, {"badRequest": {"code": 400, "message": "Invalid filter"}}, {}, InvalidRequestError,
     "HTTP 400: .*Invalid filter"),
    (500, {"computeFault": {"code": 500, "message": "No valid host was found."}}, {}, CapacityError,
     "No valid host"),
    (500, {"computeFault": {"code": 500, "message": "Unexpected API Error."}}, {}, TransientError, "HTTP 500"),
])
def test_openstack_error_mapping(wire: OpenStackWire, openstack: LibcloudProvider, status: int, body: object,
                                 headers: dict[str, str], error: type[Exception], text: str) -> None:
    wire.fail("GET", "/compute/v2.1/servers/detail", status, body, headers)
    with pytest.raises(error, match=text) as caught:
        run(openstack.list({}))
    message = str(caught.value)
    assert message.startswith("libcloud openstack list_nodes: ") and "\n" not in message
    assert "s3cr3t-Pa55word" not in message
    assert type(caught.value) is error and caught.value.status == status  # type: ignore[attr-defined]


def test_openstack_5xx_and_throttling_are_retried_by_the_budget(wire: OpenStackWire, tmp_path: Path) -> None:
    """Built as users build it (a spec entry → make_provider): the one retry layer sees typed errors."""
    from cloudherd.spec import load_spec

    entry = {"type": "libcloud", **wire.settings(), "retries": 3, "backoff": 0.001, "backoff_max": 0.01,
             "budget": {"rate": 100}}
    path = tmp_path / "cloudherd.yml"
    path.write_text(f"name: t\nproviders:\n  os: {json.dumps(entry)}\ngroups:\n  web: {{provider: os}}\n")
    config = load_spec(path).spec.providers["os"]
    provider = make_provider("os", config.type, config.model_extra or {})
    driver = provider.inner  # type: ignore[attr-defined]
    assert isinstance(driver, LibcloudProvider) and "retries" not in driver._kwargs  # not a driver argument
    servers = "/compute/v2.1/servers/detail"
    before = len(wire.calls("GET", servers))
    wire.fail("GET", servers, 503, times=1)
    wire.fail("GET", servers, 429, {"overLimit": {"code": 429, "message": "Too many requests"}}, times=1)
    run(provider.list({}))
    assert len(wire.calls("GET", servers)) - before == 3
    wire.fail("GET", servers, 500, {"computeFault": {"code": 500, "message": "No valid host was found."}})
    with pytest.raises(CapacityError):
        run(provider.list({}))
    assert len(wire.calls("GET", servers)) - before == 4  # capacity: never retried
    assert not provider.supports("ports") and provider.supports("stop_start")
    with pytest.raises(InvalidRequestError, match="cannot open ports"):
        run(provider.open_ports({"cloudherd:infra": "x"}, [80]))


def test_openstack_wrong_password_and_secret_masking(wire: OpenStackWire) -> None:
    provider = LibcloudProvider("os", wire.settings(secret="wrong-Pa55word-123"))
    with pytest.raises(AuthError) as caught:
        run(provider.sizes())
    assert "credentials were refused" in str(caught.value) and "wrong-Pa55word-123" not in str(caught.value)
    # a cloud that echoes the password back in an error: the message masks it
    good = LibcloudProvider("os", wire.settings())
    wire.fail("GET", "/compute/v2.1/flavors/detail", 400,
              {"badRequest": {"code": 400, "message": "bad password s3cr3t-Pa55word for alice"}})
    with pytest.raises(InvalidRequestError) as echoed:
        run(good.sizes())
    assert "s3cr3t-Pa55word" not in str(echoed.value) and "bad password *** for ***" in str(echoed.value)


def test_openstack_unreachable() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    provider = LibcloudProvider("os", {
        "driver": "openstack", "api_version": "2.0", "key": "alice", "secret": "s3cr3t-Pa55word",
        "ex_force_auth_url": url, "ex_force_auth_version": "3.x_password", "ex_tenant_name": "admin",
        "ex_force_base_url": f"{url}/compute/v2.1", "timeout": 5})
    with pytest.raises(TransientError, match="could not reach the cloud") as caught:
        run(provider.list({}))
    assert "s3cr3t-Pa55word" not in str(caught.value)
