"""The generated blocking twins (cloudherd.api.twin): complete, same signatures, one loop thread, refused in a loop."""

from __future__ import annotations

import ast
import asyncio
import contextvars
import inspect
import os
import re
import signal
import sys
import threading
from pathlib import Path

import pytest

from cloudherd.api import (
    AsyncDataCenter,
    Client,
    DataCenter,
    InfrastructureManager,
    Machine,
    SyncClient,
    SyncInfrastructureManager,
    SyncMachine,
)
from cloudherd.api.ogc import OgcActions, SyncOgcActions
from cloudherd.api.twin import LOOP, REFUSAL, Twin, check_twin, public_coroutines
from cloudherd.errors import UsageError

TWINS = [(SyncClient, Client), (SyncOgcActions, OgcActions), (DataCenter, AsyncDataCenter), (SyncMachine, Machine),
         (SyncInfrastructureManager, InfrastructureManager)]
SPECIAL = {"__aenter__": "__enter__", "__aexit__": "__exit__"}
seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


class Toy:
    """A small async class to twin."""

    def __init__(self, name: str = "toy") -> None:
        self.name = name
        self.cleaned = threading.Event()

    async def where(self) -> tuple[threading.Thread, asyncio.AbstractEventLoop]:
        """Which thread and loop ran this."""
        return threading.current_thread(), asyncio.get_running_loop()

    async def me(self) -> Toy:
        return self

    async def others(self) -> list[Toy]:
        return [Toy("a"), Toy("b")]

    async def context(self) -> str:
        return seen.get()

    async def slow(self) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            self.cleaned.set()

    def plain(self, x: int) -> int:
        return x + 1


class SyncToy(Twin[Toy], of=Toy):
    pass


def test_every_public_coroutine_method_has_its_twin_with_the_same_signature_and_docstring() -> None:
    for twin, source in TWINS:
        names = public_coroutines(source)
        assert names, source
        for name in names:
            ours = getattr(twin, SPECIAL.get(name, name))
            theirs = getattr(source, name)
            assert not inspect.iscoroutinefunction(ours), (twin, name)
            a, b = inspect.signature(theirs), inspect.signature(ours)
            assert list(a.parameters.values()) == list(b.parameters.values()), (twin, name)
            renamed = str(a.return_annotation)
            for original, its_twin in ((Machine, SyncMachine), (AsyncDataCenter, DataCenter), (Client, SyncClient)):
                renamed = re.sub(rf"\b{original.__name__}\b", its_twin.__name__, renamed)
            assert str(b.return_annotation) == renamed, (twin, name)
            assert ours.__doc__ == theirs.__doc__, (twin, name)
    assert inspect.signature(SyncClient.__init__) == inspect.signature(Client.__init__)
    assert inspect.signature(SyncInfrastructureManager.__init__) == inspect.signature(InfrastructureManager.__init__)


def test_the_completeness_check_names_a_missing_method() -> None:
    class Source:
        async def one(self) -> int:
            return 1

    class Complete(Twin[Source], of=Source):
        pass

    check_twin(Complete)

    async def two(self: Source) -> int:
        return 2

    Source.two = two  # type: ignore[attr-defined]  # a method added to the original, not to its twin
    with pytest.raises(TypeError, match=r"Complete has no blocking twin of Source\.two"):
        check_twin(Complete)

    with pytest.raises(TypeError, match=r"Broken has no blocking twin of Source\.one"):
        class Broken(Twin[Source], of=Source):  # an override that does not block
            async def one(self) -> int:
                return 1


def test_one_loop_thread_serves_every_call_and_every_twin(tmp_path: Path) -> None:
    toy, other = SyncToy(), SyncToy("other")
    first_thread, first_loop = toy.where()
    again = toy.where()
    assert again == (first_thread, first_loop) and other.where() == (first_thread, first_loop)
    assert first_thread is not threading.current_thread() and first_thread.daemon
    assert first_thread is LOOP.thread and first_thread.is_alive()
    with SyncClient(f"sqlite:///{tmp_path / 'state.db'}") as herd:  # the real twins too
        herd.ls()
        herd.ls()
    assert toy.where() == (first_thread, first_loop)
    named = [t for t in threading.enumerate() if t.name == "cloudherd-twins"]
    assert named == [first_thread]


def test_a_call_inside_a_running_loop_is_refused_and_its_coroutine_closed() -> None:
    toy = SyncToy()

    async def inside() -> None:
        with pytest.raises(UsageError, match=re.escape(REFUSAL)):
            toy.where()

    asyncio.run(inside())
    with pytest.raises(UsageError, match="running event loop"):  # from the loop's own thread too (a callback)
        LOOP.run(_call_from_loop(toy))


async def _call_from_loop(toy: SyncToy) -> object:
    return toy.where()


def test_results_are_adopted_and_plain_methods_forwarded() -> None:
    toy = SyncToy("x")
    assert toy.me() is toy
    others = toy.others()
    assert [type(o) for o in others] == [SyncToy, SyncToy] and [o.aio.name for o in others] == ["a", "b"]
    assert toy.plain(1) == 2
    assert inspect.signature(SyncToy.others).return_annotation == "list[SyncToy]"


def test_the_callers_context_variables_reach_the_call() -> None:
    token = seen.set("from the caller")
    try:
        assert SyncToy().context() == "from the caller"
    finally:
        seen.reset(token)


@pytest.mark.skipif(sys.platform != "linux", reason="signals to the main thread")
def test_ctrl_c_cancels_the_call_and_waits_for_its_clean_up() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread")
    toy = SyncToy()
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        toy.slow()
    assert toy.aio.cleaned.is_set()  # the coroutine's finally ran before the interrupt reached the caller


def test_mypy_sees_every_generated_method() -> None:
    """Each twin declares, under ``if TYPE_CHECKING:``, every public coroutine method it gets (or defines it)."""
    for twin, source in TWINS:
        declared: set[str] = set()
        for cls in twin.__mro__:
            if cls.__module__.startswith("cloudherd.api") and issubclass(cls, Twin) and cls is not Twin:
                declared |= _declared(cls)
        missing = {SPECIAL.get(n, n) for n in public_coroutines(source)} - declared
        assert not missing, f"{twin.__name__} declares no {sorted(missing)} for mypy"


def _declared(cls: type) -> set[str]:
    tree = ast.parse(inspect.getsource(sys.modules[cls.__module__]))
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    names: set[str] = set()
    for item in ast.walk(node):
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(item.name)
        elif isinstance(item, ast.Assign):
            names |= {t.id for t in item.targets if isinstance(t, ast.Name)}
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names.add(item.target.id)
    return names


def test_an_override_in_a_twin_stays_in_the_twins_made_from_it() -> None:
    class Pet:
        async def sound(self) -> str:
            return "..."

        async def name(self) -> str:
            return "pet"

    class Dog(Pet):
        async def fetch(self) -> str:
            return "ball"

    class SyncPet(Twin[Pet], of=Pet):
        def sound(self) -> str:  # an explicit override: the compatibility faces' kind
            return "woof"

    class SyncDog(SyncPet, of=Dog):
        pass

    dog = SyncDog()
    assert (dog.sound(), dog.name(), dog.fetch()) == ("woof", "pet", "ball")
    assert "sound" not in SyncDog._twin_made and {"name", "fetch"} <= SyncDog._twin_made


PROBE = '''
from typing import assert_type

from cloudherd.api import DataCenter, SyncClient, SyncInfrastructureManager, SyncMachine
from cloudherd.api.manager import MaintenanceProcess
from cloudherd.api.types import Infrastructure, Size


def probe(d: DataCenter, m: SyncInfrastructureManager) -> None:
    with SyncClient("sqlite://") as c:
        assert_type(c, SyncClient)
        assert_type(c.up("spec.yml", wait=1.0), str)
        assert_type(c.launch("spec.yml"), Infrastructure)
    assert_type(d.machines(), list[SyncMachine])
    assert_type(d.machines()[0].refresh(), SyncMachine)
    assert_type(d.machines()[0].public_ips, list[str])
    assert_type(d.packages(), list[Size])
    assert_type(d.datacenter("aws"), DataCenter)
    assert_type(m.start_provisioning("x"), MaintenanceProcess)
    SyncClient("sqlite://").up(1)  # the one error expected: mypy sees the parameters
'''


def test_mypy_types_the_generated_methods(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    probe = tmp_path / "twin_probe.py"
    probe.write_text(PROBE)
    repo = Path(__file__).resolve().parents[2]
    out, err, _ = api.run(["--config-file", str(repo / "pyproject.toml"), "--cache-dir", str(repo / ".mypy_cache"),
                           str(probe)])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1 and 'twin_probe.py:20: error: Argument 1 has incompatible type "int"' in errors[0], \
        out + err
