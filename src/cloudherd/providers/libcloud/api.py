"""Libcloud calls: the driver class made with the settings, driver objects lent from a small pool to worker
threads (one must not serve two calls at once), catalogs cached for a while."""

from __future__ import annotations

import builtins
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from cloudherd.providers.base import InvalidRequestError
from cloudherd.providers.libcloud.errors import sdk_error
from cloudherd.providers.libcloud.settings import (
    DEFAULT_CONCURRENCY,
    TAGGINGS,
    constructor_arguments,
    driver_class,
    opt_str,
    positive_int,
    resolve_env,
    secret_values,
)
from cloudherd.providers.sdk import SdkDriver
from cloudherd.providers.toolkit import import_sdk

log = logging.getLogger(__name__)

T = TypeVar("T")

CATALOG_TTL = 300.0


class LibcloudApi(SdkDriver):
    """One libcloud driver class and its pool of driver objects."""

    def __init__(self, name: str = "libcloud", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        providers = import_sdk("libcloud.compute.providers", "libcloud", "apache-libcloud")
        resolved = resolve_env(self.settings)
        self._secret_list = secret_values(resolved)
        driver = resolved.get("driver")
        if not driver or not isinstance(driver, str):
            raise InvalidRequestError(f"libcloud provider {name}: set 'driver' to a libcloud compute provider name "
                                      "(openstack, digitalocean, dummy…) or to module:Class")
        self.driver_name = driver
        self._cls = driver_class(providers, driver)
        self._args, self._kwargs = constructor_arguments(resolved)
        if resolved.get("project_id"):  # keystone v3 scoped by the project's id (libcloud scopes by name)
            if driver != "openstack" or str(resolved.get("api_version", "2.0")) != "2.0":
                raise InvalidRequestError(f"libcloud provider {name}: project_id is for driver openstack "
                                          "(api_version 2.0)")
            from cloudherd.providers.libcloud.openstack import OpenStackByProjectId

            self._cls = OpenStackByProjectId
            self._kwargs.pop("api_version", None)
            self._kwargs["ex_tenant_name"] = str(resolved["project_id"])
        self.tagging = str(resolved.get("tagging") or "auto")
        if self.tagging not in TAGGINGS:
            raise InvalidRequestError(f"libcloud provider {name}: tagging must be one of {', '.join(TAGGINGS)}, "
                                      f"not {self.tagging!r}")
        self.concurrency = positive_int(name, "concurrency", resolved.get("concurrency", DEFAULT_CONCURRENCY))
        from libcloud.compute.drivers.dummy import DummyNodeDriver

        in_memory = issubclass(self._cls, DummyNodeDriver)
        self.pool_size = positive_int(name, "pool", resolved.get("pool", 1 if in_memory else self.concurrency))
        self.bulk = resolved.get("bulk")
        self.cloud_init = bool(resolved.get("cloud_init", True))
        self.default_image = opt_str(resolved.get("image"))
        self.default_size_name = opt_str(resolved.get("size"))
        self.location = opt_str(resolved.get("location"))
        self.ssh_user = opt_str(resolved.get("ssh_user"))
        create_options = resolved.get("create_options") or {}
        if not isinstance(create_options, Mapping):
            raise InvalidRequestError(f"libcloud provider {name}: create_options must be a mapping")
        self.create_options = dict(create_options)

        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._lock = threading.Lock()
        first = self._new_driver()  # validates the arguments now; no network call yet
        self._pool.put(first)
        self._made = 1
        self._kind = type(first)  # factories such as openstack's pick the class by api_version
        self._catalog: dict[str, tuple[float, builtins.list[Any]]] = {}
        self._create_params = _parameters(self._kind.create_node)

    def __repr__(self) -> str:
        return f"LibcloudProvider(name={self.name!r}, driver={self.driver_name!r})"

    async def close(self) -> None:
        with self._lock:
            while True:
                try:
                    self._pool.get_nowait()
                except queue.Empty:
                    break
            self._made = 0

    # -- drivers and calls ---------------------------------------------------------------------------

    def _new_driver(self) -> Any:
        try:
            return self._cls(*self._args, **self._kwargs)
        except TypeError as exc:
            raise InvalidRequestError(f"libcloud {self.driver_name}: bad driver arguments: "
                                      f"{self._clean(str(exc))} (pass them as settings, or args: [...])") from exc
        except Exception as exc:
            raise self._error("setup", exc) from exc

    def _borrow(self) -> Any:
        """A driver object for this thread's call alone: an idle one, a new one while the pool may grow, or wait."""
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            grow = self._made < self.pool_size
            if grow:
                self._made += 1
        if not grow:
            return self._pool.get()
        try:
            return self._new_driver()
        except BaseException:
            with self._lock:
                self._made -= 1
            raise

    async def _call(self, operation: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(driver)`` in a worker thread on a borrowed driver; failures become typed errors."""

        def run() -> T:
            driver = self._borrow()
            try:
                return fn(driver)
            finally:
                self._pool.put(driver)

        return await self._run(operation, run)


    async def _catalog_of(self, method: str, *, fresh: bool = False) -> builtins.list[Any]:
        cached = self._catalog.get(method)
        if cached and not fresh and time.monotonic() - cached[0] < CATALOG_TTL:
            return cached[1]
        def fetch(driver: Any) -> builtins.list[Any]:
            if method == "list_sizes":
                _note_missing_prices(driver)
            return builtins.list(getattr(driver, method)())

        items = await self._call(method, fetch)
        self._catalog[method] = (time.monotonic(), items)
        return items

    def _secrets(self) -> Iterable[str]:
        return self._secret_list

    def _error(self, operation: str, exc: Exception) -> Exception:
        return sdk_error(f"libcloud {self.driver_name} {operation}", exc, self._clean)


def _parameters(fn: Any) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


_prices_checked: set[str] = set()


def _note_missing_prices(driver: Any) -> None:
    """Tell libcloud's price cache that a driver has no prices.

    Libcloud caches only the prices it finds: for a driver without any (openstack…) it parses its 2 MB pricing
    file again for every size of every ``list_sizes`` (~0.1 s each).  Caching "none" gives the same prices.
    """
    name = getattr(driver, "api_name", None)
    if not isinstance(name, str) or name in _prices_checked:
        return
    _prices_checked.add(name)
    try:
        from libcloud import pricing

        if name not in pricing.PRICING_DATA.get("compute", {}):
            try:
                pricing.get_pricing("compute", name)
            except KeyError:
                pricing.set_pricing("compute", name, {})
    except Exception as exc:  # only an optimisation
        log.debug("libcloud prices for %s: %s", name, exc)
