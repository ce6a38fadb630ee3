"""The Python API's shape: typed frozen results, a sync twin with the same signatures, clients that close."""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path

import pydantic
import pytest

from cloudherd.api import AsyncDataCenter, Client, DataCenter, SyncClient, types
from cloudherd.errors import UsageError

PUBLIC = sorted(name for name, member in inspect.getmembers(Client, inspect.iscoroutinefunction)
                if not name.startswith("_"))


def test_every_async_method_has_a_sync_twin_with_the_same_signature() -> None:
    assert "exec" in PUBLIC and "status" in PUBLIC and "sizes" in PUBLIC
    for name in PUBLIC:
        twin = getattr(SyncClient, name, None)
        assert twin is not None, f"SyncClient lacks {name}"
        assert not inspect.iscoroutinefunction(twin), f"SyncClient.{name} must block, not return a coroutine"
        theirs, ours = inspect.signature(getattr(Client, name)), inspect.signature(twin)
        assert list(theirs.parameters.values()) == list(ours.parameters.values()), name
        assert theirs.return_annotation == ours.return_annotation, name
        assert (twin.__doc__ or "").strip(), f"SyncClient.{name} has no docstring"


OGC_CALLS = ("launch", "deploy", "exec", "destroy")


def test_ogc_calls_and_their_async_twins_are_on_both_clients() -> None:
    # OGC's naming: the call on one thing, and ``_async`` on many at once; on Client both are coroutines,
    # on SyncClient both block (and so fall under the twin check above)
    for name in OGC_CALLS:
        assert name in PUBLIC and f"{name}_async" in PUBLIC, name
        for cls in (Client, SyncClient):
            many = inspect.signature(getattr(cls, f"{name}_async"))
            first = list(many.parameters.values())[1]
            assert "Sequence" in str(first.annotation) or first.annotation == "Targets", (cls.__name__, name)
    assert inspect.iscoroutinefunction(Client.launch_async) and not inspect.iscoroutinefunction(SyncClient.launch_async)


def test_the_data_center_twins_have_the_same_signatures() -> None:
    public = sorted(n for n, _ in inspect.getmembers(AsyncDataCenter, inspect.iscoroutinefunction)
                    if not n.startswith("_"))
    assert {"machines", "num_machines", "create_machine", "sizes", "images", "default_size", "packages"} <= set(public)
    for name in public:
        twin = getattr(DataCenter, name, None)
        assert twin is not None and not inspect.iscoroutinefunction(twin), name
        theirs, ours = inspect.signature(getattr(AsyncDataCenter, name)), inspect.signature(twin)
        assert list(theirs.parameters.values()) == list(ours.parameters.values()), name
        assert str(ours.return_annotation) == str(theirs.return_annotation).replace("Machine", "SyncMachine"), name
        assert (twin.__doc__ or "").strip(), f"DataCenter.{name} has no docstring"
    assert inspect.signature(AsyncDataCenter.__init__) == inspect.signature(DataCenter.__init__)


def test_no_method_takes_untyped_keyword_bags() -> None:
    for cls in (Client, SyncClient):
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            for parameter in inspect.signature(member).parameters.values():
                assert parameter.kind is not inspect.Parameter.VAR_KEYWORD, f"{cls.__name__}.{name}(**…)"


def test_results_are_api_values_never_rows() -> None:
    allowed = {"list", "str", "None"} | {n for n, v in vars(types).items() if isinstance(v, type)
                                         and issubclass(v, pydantic.BaseModel)}
    for name in PUBLIC:
        returned = str(Client.__annotations__.get(name) or getattr(Client, name).__annotations__["return"])
        words = set(re.findall(r"[A-Za-z_]+", returned))
        assert words <= allowed, f"Client.{name} returns {returned}"
        for word in words - {"list", "str", "None"}:
            assert getattr(types, word).model_config.get("frozen"), word


def test_values_are_frozen(tmp_path: Path) -> None:
    with SyncClient(f"sqlite:///{tmp_path / 'state.db'}") as herd:
        setup = herd.init()
        assert herd.ls() == []
    with pytest.raises(pydantic.ValidationError):
        setup.user = "someone else"  # type: ignore[misc]


def test_sync_client_refuses_inside_an_event_loop(tmp_path: Path) -> None:
    herd = SyncClient(f"sqlite:///{tmp_path / 'state.db'}")

    async def inside() -> None:
        with pytest.raises(UsageError, match="running event loop"):
            herd.ls()

    asyncio.run(inside())


def test_clients_close_and_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"

    async def use() -> None:
        async with Client(url) as herd:
            await herd.init()
            engine = herd.store.engine
        assert herd._store is None  # closed: the engine was disposed
        assert engine.pool.checkedout() == 0
        async with Client(url) as again:
            assert await again.ls() == []

    asyncio.run(use())


def test_unknown_infrastructure_is_a_usage_error(tmp_path: Path) -> None:
    with SyncClient(f"sqlite:///{tmp_path / 'state.db'}") as herd, pytest.raises(UsageError, match="nosuch"):
        herd.status("nosuch")


def test_catalog_through_the_api(tmp_path: Path) -> None:
    with SyncClient(f"sqlite:///{tmp_path / 'state.db'}") as herd:
        sizes = herd.sizes("local")
    assert sizes and all(isinstance(s, types.Size) for s in sizes)
    assert sum(s.default for s in sizes) == 1
