"""Blocking twins of the async API, generated from it: :class:`SyncClient`, :class:`DataCenter`, :class:`SyncMachine`…

Why generated: a hand-copied twin drifts (a parameter added on one side only, a method forgotten), and running
each call in ``asyncio.run`` gave every call its own event loop, so that anything made on one loop (a lock, a
semaphore, a connection) was a stranger to the next.  A twin class names its async original,
``class SyncMachine(Twin[Machine], of=Machine)``, and gets, for every public member of it:

* each coroutine method as a blocking one with the same signature and docstring, run to completion on
  **one event loop in a daemon thread**, shared by every twin of the process and started on first use.  A call
  from inside a running event loop is refused (:class:`~cloudherd.errors.UsageError`): it would block that loop.
  Ctrl-C while waiting cancels the call on the loop and waits for its clean-up, as ``asyncio.run`` did.  The
  call sees the caller's context variables; its callbacks (``on_event``, ``on_line``…) run on the loop's thread;
* each other public method called as it is, and each property read through;
* ``__aenter__`` / ``__aexit__`` as ``__enter__`` / ``__exit__``.

What comes back is adopted: the async original itself is the twin (``refresh()`` returns the same
:class:`SyncMachine`), and an object of a class that has a twin (a :class:`Machine`, alone or in a list) comes
back as that twin; return annotations say so (``_twin_error`` does the same for what an error carries).  A
member the twin class (or a twin it derives from) defines itself is its own: an override, such as the
compatibility faces' extras.  At import, :func:`check_twin` makes sure every public coroutine method of the
original has its blocking twin.

mypy cannot see generated members: each twin declares them under ``if TYPE_CHECKING:`` with
:func:`blocking` (which keeps the parameters for the type checker), or as a stub where the result is adopted;
a test checks that the declarations name every generated method.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import functools
import inspect
import re
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar, cast

from cloudherd.errors import UsageError

P = ParamSpec("P")
R = TypeVar("R")
A = TypeVar("A")

REFUSAL = ("the blocking API cannot run inside a running event loop: use cloudherd.api.Client (async) there, "
           "with await")
_SPECIAL = {"__aenter__": "__enter__", "__aexit__": "__exit__"}
_twins: dict[type, type[Twin[Any]]] = {}  # async original -> its twin, for adopting results


class _LoopThread:
    """The one event loop the twins run on, in a daemon thread, (re)started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="cloudherd-twins", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def run(self, coroutine: Coroutine[Any, Any, R]) -> R:
        """Run ``coroutine`` to completion on the loop; refused inside a running event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coroutine.close()
            raise UsageError(REFUSAL)
        loop = self.loop()
        context = contextvars.copy_context()  # the caller's context, as asyncio.run would have given it
        done = threading.Event()
        tasks: list[asyncio.Task[R]] = []

        def start() -> None:
            task = loop.create_task(coroutine, context=context)
            task.add_done_callback(lambda _: done.set())
            tasks.append(task)

        loop.call_soon_threadsafe(start)
        interrupted = False
        while True:
            try:
                done.wait()
                break
            except KeyboardInterrupt:  # cancel the call and let it clean up; a second Ctrl-C stops waiting
                if interrupted:
                    raise
                interrupted = True
                loop.call_soon_threadsafe(lambda: tasks[0].cancel())
        task = tasks[0]
        if interrupted and task.cancelled():
            raise KeyboardInterrupt
        return task.result()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what still runs on the loop (bounded), then end it (at exit)."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None or not thread.is_alive():
            return

        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            if rest:
                await asyncio.wait(rest, timeout=timeout)
            await loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_rest(), loop).result(timeout + 1)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)


LOOP = _LoopThread()
atexit.register(LOOP.stop)


def run_blocking(coroutine: Coroutine[Any, Any, R]) -> R:
    """Run ``coroutine`` to completion on the twins' loop; refused, clearly, inside a running event loop."""
    return LOOP.run(coroutine)


def blocking(method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]) -> Callable[Concatenate[Any, P], R]:
    """For the type checker only (under ``TYPE_CHECKING``): the blocking twin of ``method``, same parameters."""
    raise NotImplementedError("blocking() declares a generated twin for mypy; twins are made by Twin")


class Twin(Generic[A]):
    """The base of a generated blocking twin; ``aio`` is the async original each call goes to."""

    aio: A
    twin_of: ClassVar[type]
    _twin_made: ClassVar[frozenset[str]] = frozenset()  # the members generated here (not overrides)

    def __init_subclass__(cls, *, of: type | None = None) -> None:
        super().__init_subclass__()
        if of is None:
            return
        cls.twin_of = of
        _twins[of] = cls
        written = {name for twin in cls.__mro__ if issubclass(twin, Twin) and twin is not Twin
                   for name in vars(twin) if name not in vars(twin).get("_twin_made", ())}  # overrides
        made: dict[int, Any] = {}  # an alias (``packages = sizes``) stays one function
        for name, member in inspect.getmembers(of):
            if not (name in _SPECIAL or name == "__init__" or not name.startswith("_")) \
                    or _SPECIAL.get(name, name) in written:
                continue
            if id(member) not in made:
                made[id(member)] = _member(of, name, member)
            if made[id(member)] is not None:
                setattr(cls, _SPECIAL.get(name, name), made[id(member)])
        cls._twin_made = frozenset(_SPECIAL.get(n, n) for n in vars(cls)) - written
        try:
            check_twin(cls)
        except TypeError:
            del _twins[of]
            raise

    @classmethod
    def _twin_over(cls, original: Any) -> Any:
        """A twin over ``original`` (an instance of the async class), made without calling ``__init__``."""
        twin = cls.__new__(cls)
        twin.aio = original
        return twin

    def _twin_error(self, error: Exception) -> None:
        """Hand out what an error raised by the original carries as twins, too (override: nothing here)."""

    def _twin_result(self, value: Any) -> Any:
        """``value`` as the twin API hands it out: the original as this twin, other originals as theirs."""
        if value is self.aio:
            return self
        if isinstance(value, list):
            return [self._twin_result(v) for v in value]
        twin = _twins.get(type(value))
        return twin._twin_over(value) if twin is not None else value


def _member(source: type, name: str, member: Any) -> Any:
    """The twin's member for ``source``'s public ``name`` (None: nothing to make)."""
    if name == "__init__":
        return _constructor(source)
    if isinstance(inspect.getattr_static(source, name), property):
        return property(lambda self: getattr(self.aio, name), doc=member.__doc__ if member else None)
    if inspect.iscoroutinefunction(member):
        def call(self: Twin[Any], *args: Any, **kwargs: Any) -> Any:
            try:
                return self._twin_result(LOOP.run(getattr(self.aio, name)(*args, **kwargs)))
            except Exception as exc:
                self._twin_error(exc)
                raise
    elif inspect.isfunction(member):
        def call(self: Twin[Any], *args: Any, **kwargs: Any) -> Any:
            return self._twin_result(getattr(self.aio, name)(*args, **kwargs))
    else:
        return None  # a class attribute, a constant: read on the original
    call = functools.wraps(member)(call)
    call.__name__ = _SPECIAL.get(name, member.__name__)
    call.__qualname__ = call.__name__
    signature = inspect.signature(member)
    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        return_annotation=_renamed(signature.return_annotation))
    del call.__wrapped__  # help() and inspect show __signature__: the twin's, with its results' twins
    return call


def _constructor(source: type) -> Callable[..., None]:
    def __init__(self: Twin[Any], *args: Any, **kwargs: Any) -> None:
        self.aio = source(*args, **kwargs)

    original = cast(Any, source).__init__
    __init__.__doc__ = original.__doc__
    __init__.__signature__ = inspect.signature(original)  # type: ignore[attr-defined]
    return __init__


def _renamed(annotation: Any) -> Any:
    """A return annotation with each async class that has a twin named as its twin (``list[SyncMachine]``)."""
    if not isinstance(annotation, str):
        return annotation
    for source, twin in _twins.items():
        annotation = re.sub(rf"\b{source.__name__}\b", twin.__name__, annotation)
    return annotation


def public_coroutines(source: type) -> list[str]:
    """The public coroutine methods of ``source`` (``async with``'s included): what a twin must have."""
    return sorted(name for name, member in inspect.getmembers(source, inspect.iscoroutinefunction)
                  if not name.startswith("_") or name in _SPECIAL)


def check_twin(twin: type[Twin[Any]]) -> None:
    """Every public coroutine method of the twin's original has a blocking twin (TypeError otherwise)."""
    source = twin.twin_of
    missing = [name for name in public_coroutines(source)
               if not callable(getattr(twin, _SPECIAL.get(name, name), None))
               or inspect.iscoroutinefunction(getattr(twin, _SPECIAL.get(name, name)))]
    if missing:
        raise TypeError(f"{twin.__name__} has no blocking twin of {source.__name__}.{', '.join(missing)}: "
                        f"add them")
