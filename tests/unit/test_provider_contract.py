"""The provider contract itself: wrappers forward every method, ``supports`` answers without calls,
``async with`` closes, one InstanceState, the shared toolkit, and the budget's retries by error type."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from cloudherd.providers import make_provider
from cloudherd.providers.base import (
    AuthError,
    Capability,
    CapacityError,
    CreateRequest,
    Image,
    Instance,
    InstanceState,
    InvalidRequestError,
    NotFoundError,
    PortsHandle,
    Provider,
    ProviderError,
    QuotaError,
    Size,
    ThrottledError,
    TransientError,
)
from cloudherd.providers.budget import BudgetedProvider
from cloudherd.providers.local import LocalProvider
from cloudherd.providers.reach import ReachableProvider
from cloudherd.providers.toolkit import (
    check_login_name,
    check_ports,
    check_request,
    cloud_config,
    error_from_status,
    gather_all,
)
from cloudherd.providers.wrapper import ProviderWrapper, public_methods

REQUEST = CreateRequest(count=1, image=None, size=None, tags={"cloudherd:infra": "x"}, ssh_user="deploy",
                        ssh_public_key="")
# how to call each public method of the contract; a method added to Provider and missing here fails the test
CALLS: dict[str, tuple[Any, ...]] = {
    "create": (REQUEST,), "list": ({},), "terminate": (["i-1"],), "ended": (["i-1"],), "stop": (["i-1"],),
    "start": (["i-1"],),
    "tag": (["i-1"], {"a": "b"}), "sizes": (None,), "images": (None,), "regions": (), "default_size": (),
    "open_ports": ({"cloudherd:infra": "x"}, [80]), "close_ports": ({"cloudherd:infra": "x"},),
    "list_ports": ({},), "close": (), "supports": ("ports",), "take_notices": (),
    "default_user": ("ubuntu-24.04",),
}


class Recording(Provider):
    """A complete driver that answers every call at once and writes down what it was asked."""

    type = "recording"

    def __init__(self, fail_first: builtins.list[Exception] | None = None) -> None:
        super().__init__("rec", {})
        self.calls: builtins.list[tuple[str, tuple[Any, ...]]] = []
        self.fail_first = list(fail_first or [])

    def _note(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.fail_first:
            raise self.fail_first.pop(0)

    def supports(self, capability: Capability | str) -> bool:
        self._note("supports", capability)
        return capability == "ports"

    async def create(self, request: CreateRequest) -> builtins.list[Instance]:
        self._note("create", request)
        return []

    async def list(self, tags: Mapping[str, str]) -> builtins.list[Instance]:
        self._note("list", tags)
        return []

    async def terminate(self, ids: Sequence[str]) -> None:
        self._note("terminate", ids)

    async def ended(self, ids: Sequence[str]) -> dict[str, str]:
        self._note("ended", ids)
        return {}

    async def stop(self, ids: Sequence[str]) -> None:
        self._note("stop", ids)

    async def start(self, ids: Sequence[str]) -> None:
        self._note("start", ids)

    async def tag(self, ids: Sequence[str], tags: Mapping[str, str]) -> None:
        self._note("tag", ids, tags)

    async def sizes(self, pattern: str | None = None) -> builtins.list[Size]:
        self._note("sizes", pattern)
        return [Size("s", 1, 512)]

    async def images(self, pattern: str | None = None) -> builtins.list[Image]:
        self._note("images", pattern)
        return [Image("i", "i")]

    async def regions(self) -> builtins.list[str]:
        self._note("regions")
        return ["r"]

    async def default_size(self) -> str | None:
        self._note("default_size")
        return "s"

    async def open_ports(self, group_tags: Mapping[str, str], ports: Sequence[int]) -> PortsHandle:
        self._note("open_ports", group_tags, ports)
        return PortsHandle("p", "p", "test", dict(group_tags), tuple(ports))

    async def close_ports(self, group_tags: Mapping[str, str]) -> None:
        self._note("close_ports", group_tags)

    async def list_ports(self, tags: Mapping[str, str]) -> builtins.list[PortsHandle]:
        self._note("list_ports", tags)
        return []

    def take_notices(self) -> builtins.list[str]:
        self._note("take_notices")
        return ["a notice"]

    def default_user(self, image: str | None) -> str | None:
        self._note("default_user", image)
        return "its-user"

    async def close(self) -> None:
        self._note("close")


class SameAddress:
    """A reach plugin that leaves instances as they are."""

    async def attach(self, provider: Provider, request: CreateRequest | None,
                     instances: Sequence[Instance]) -> builtins.list[Instance]:
        return list(instances)

    async def detach(self, provider: Provider, ids: Sequence[str]) -> None:
        return None


WRAPPERS = {
    "plain": lambda inner: ProviderWrapper(inner),
    "budget": lambda inner: BudgetedProvider(inner, {"retries": 2, "backoff": 0.001}),
    "reach": lambda inner: ReachableProvider(inner, SameAddress()),
    "reach over budget": lambda inner: ReachableProvider(BudgetedProvider(inner, {}), SameAddress()),
}


def test_the_call_table_covers_the_whole_contract() -> None:
    assert set(CALLS) | {"__aenter__", "__aexit__"} == set(public_methods())


@pytest.mark.parametrize("wrap", WRAPPERS, ids=list(WRAPPERS))
@pytest.mark.parametrize("method", sorted(CALLS))
def test_wrappers_forward_every_method_to_the_inner_driver(wrap: str, method: str) -> None:
    inner = Recording()
    wrapper = WRAPPERS[wrap](inner)
    assert wrapper.type == "recording" and wrapper.name == "rec"
    result = getattr(wrapper, method)(*CALLS[method])
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    assert [name for name, _ in inner.calls] == [method]
    sent = inner.calls[0][1]
    if method == "create":  # the budget gives a create its idempotency token; the rest is as asked
        assert sent[0].count == REQUEST.count and sent[0].tags == REQUEST.tags
    else:
        assert sent == CALLS[method]
    if method == "supports":
        assert result is True
    if method == "take_notices":
        assert result == ["a notice"]
    if method == "default_user":
        assert result == "its-user"


@pytest.mark.parametrize("wrap", WRAPPERS, ids=list(WRAPPERS))
def test_async_with_closes_through_the_wrappers(wrap: str) -> None:
    inner = Recording()

    async def use() -> None:
        async with WRAPPERS[wrap](inner) as provider:
            await provider.regions()

    asyncio.run(use())
    assert [name for name, _ in inner.calls] == ["regions", "close"]


def test_supports_answers_from_the_driver_without_calls(tmp_path: Path) -> None:
    local = LocalProvider("local", {"root": str(tmp_path / "l")})
    everything_but_a_timer = [c for c in Capability if c is not Capability.NODE_TIMER]
    assert all(local.supports(c) for c in everything_but_a_timer)
    assert not local.supports(Capability.NODE_TIMER)  # a local node never shuts itself (or this computer) down
    made = make_provider("here", "local", {"root": str(tmp_path / "m")})
    assert all(made.supports(c) for c in everything_but_a_timer) and not made.supports("node_timer")
    aws = make_provider("cloud", "aws", {"region": "us-east-1"})
    assert aws.supports(Capability.NODE_TIMER) and aws.supports(Capability.SPOT)
    dummy = make_provider("d", "libcloud", {"driver": "dummy", "key": 0})
    assert dummy.supports("sizes") and dummy.supports(Capability.IMAGES)
    assert not dummy.supports("ports") and not dummy.supports("tag")
    assert not dummy.supports("stop_start")  # libcloud's dummy driver cannot stop nodes
    with pytest.raises(InvalidRequestError, match="cannot stop"):
        asyncio.run(dummy.stop(["1"]))
    with pytest.raises(ValueError):
        local.supports("teleport")


def test_the_budget_retries_by_error_type_alone_and_keeps_the_create_token() -> None:
    inner = Recording(fail_first=[ThrottledError("slow", code="Throttling"), TransientError("503", status=503)])
    budget = BudgetedProvider(inner, {"retries": 3, "backoff": 0.001, "backoff_max": 0.01})
    asyncio.run(budget.create(REQUEST))
    tokens = [args[0].token for name, args in inner.calls]
    assert len(tokens) == 3 and tokens[0] and len(set(tokens)) == 1  # one token, given before the first try
    for error in (CapacityError("full"), QuotaError("limit"), AuthError("no"), InvalidRequestError("bad"),
                  NotFoundError("gone"), ProviderError("other")):
        refusing = Recording(fail_first=[error])
        with pytest.raises(type(error)) as caught:
            asyncio.run(BudgetedProvider(refusing, {"retries": 5, "backoff": 0.001}).list({}))
        assert len(refusing.calls) == 1 and caught.value.attempts == 1


def test_instance_state_is_one_enum_that_compares_as_text() -> None:
    instance = Instance(id="i", name="n", state="running", address=None)  # type: ignore[arg-type]
    assert instance.state is InstanceState.RUNNING and instance.state == "running" and instance.alive
    assert f"{instance.state}" == "running"
    assert not Instance(id="i", name="n", state=InstanceState.DEAD, address=None).alive
    with pytest.raises(ValueError):
        Instance(id="i", name="n", state="exploded", address=None)  # type: ignore[arg-type]


def test_provider_errors_carry_code_and_status() -> None:
    error = CapacityError("full", code="InsufficientInstanceCapacity", status=500)
    assert (error.code, error.status, error.attempts, str(error)) == ("InsufficientInstanceCapacity", 500, 1, "full")
    assert ProviderError("x").code is None


@pytest.mark.parametrize(("status", "kind"), [
    (401, AuthError), (403, AuthError), (404, NotFoundError), (408, TransientError), (409, InvalidRequestError),
    (429, ThrottledError), (400, InvalidRequestError), (500, TransientError), (503, TransientError),
    (0, TransientError),
])
def test_the_status_fallback_types_errors(status: int, kind: type[ProviderError]) -> None:
    error = error_from_status("cloud: failed", status, code="X")
    assert type(error) is kind and error.status == status and error.code == "X"


def test_gather_all_runs_every_call_then_raises_the_first_error() -> None:
    done: list[int] = []
    active = [0, 0]  # now, peak

    async def call(n: int) -> int:
        active[0] += 1
        active[1] = max(active)
        await asyncio.sleep(0)
        active[0] -= 1
        done.append(n)
        if n in (2, 4):
            raise NotFoundError(f"no {n}")
        return n

    with pytest.raises(NotFoundError, match="no 2"):
        asyncio.run(gather_all([lambda n=n: call(n) for n in range(6)], limit=2))  # type: ignore[misc]
    assert sorted(done) == list(range(6)) and active[1] <= 2
    assert asyncio.run(gather_all([lambda n=n: call(n) for n in (1, 3)], limit=4)) == [1, 3]  # type: ignore[misc]


def test_request_checks_login_names_ports_and_cloud_init() -> None:
    assert check_request(REQUEST, "t") and not check_request(CreateRequest(0, None, None, {}, "u", ""), "t")
    with pytest.raises(InvalidRequestError, match="t: 2 names given for 1 instances"):
        check_request(CreateRequest(1, None, None, {}, "u", "", names=["a", "b"]), "t")
    with pytest.raises(InvalidRequestError, match="count must be ≥ 0"):
        check_request(CreateRequest(-1, None, None, {}, "u", ""), "t")
    assert check_ports([443, 80, 443], "t") == [80, 443]
    for bad in (0, 70000, True, "80"):
        with pytest.raises(InvalidRequestError, match="not a TCP port"):
            check_ports([bad], "t")  # type: ignore[list-item]
    assert check_login_name("root", "t") == "root"
    with pytest.raises(InvalidRequestError, match="t: 'Bad User' is not a valid login user name"):
        check_login_name("Bad User", "t")
    config = cloud_config("deploy", " ssh-ed25519 AAAA k \n", "t")
    assert config.startswith("#cloud-config\n") and '"ssh-ed25519 AAAA k"' in config and "NOPASSWD" in config
    assert '"disable_root": false' in cloud_config("root", "ssh-ed25519 AAAA k", "t")
