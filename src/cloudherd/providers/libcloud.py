"""The ``libcloud`` provider: the long tail of clouds through Apache Libcloud (``pip install 'cloudherd[libcloud]'``).

Libcloud is imported lazily, when a provider of this type is made.  Settings:

* ``driver`` (required): a libcloud compute provider name as :func:`libcloud.compute.providers.get_driver` knows
  it (``openstack``, ``digitalocean``, ``linode``, ``vultr``, ``dummy``…), or ``package.module:Class`` for a
  driver class of your own.  An unknown name is an :class:`UnknownProviderError` that lists close matches.
* The driver's own constructor arguments: ``args: [...]`` are passed positionally; without ``args``, ``key`` and
  then ``secret`` (when given) are the first two positional arguments, as every libcloud driver takes them.
  **Every other setting not listed below is passed as a keyword argument** (``region``, ``host``, ``port``,
  ``secure``, ``ex_force_auth_url``, ``ex_tenant_name``…); ``kwargs: {...}`` adds keyword arguments whose names
  clash with ours.  A setting ``NAME_env: VAR`` reads setting ``NAME`` from the environment variable ``VAR``
  (``secret_env: OS_PASSWORD``), so that secrets stay out of spec files.
* ``project_id`` (openstack): the token is scoped by the project's id, which libcloud alone cannot do (it
  scopes by ``ex_tenant_name``); an Occopus ``nova`` resource's ``project_id`` comes here.
* Ours: ``image`` and ``size`` (defaults for requests that name none; a request's size need picks the
  smallest fitting size, and with neither the smallest size is used; sizes and images are found by id, else by
  name), ``location`` (id or name, passed to ``create_node``), ``create_options`` (more ``create_node`` keyword
  arguments, e.g. ``{ex_keyname: mykey}``), ``tagging`` (``auto`` | ``metadata`` | ``tags`` | ``name``, see
  below), ``concurrency`` (parallel calls, default 8), ``pool`` (driver objects used in parallel, default
  ``concurrency``; 1 for the in-memory ``dummy`` driver), ``bulk`` (see below), ``cloud_init`` (default true),
  ``ssh_user`` (the login user when cloud-init does not make one).

For example (openstack's factory needs ``api_version: "2.0"`` for the nova 2.x + glance v2 driver)::

    providers:
      mycloud:
        type: libcloud
        driver: openstack
        api_version: "2.0"
        key: alice
        secret_env: OS_PASSWORD
        ex_force_auth_url: https://keystone.example.com:5000
        ex_force_auth_version: 3.x_password
        ex_tenant_name: demo
        ex_domain_name: Default
        image: debian-12
        size: m1.small

Decisions:

* Libcloud is blocking, and one driver object must not serve two calls at once: calls run in worker threads
  (``asyncio.to_thread``), each on a driver object borrowed from a small pool.
* ``create`` makes one ``create_node`` call per instance, at most ``concurrency`` at a time, which honours the
  requested names.  Drivers with a bulk create (``create_node(ex_mincount=, ex_maxcount=)``, the EC2 family) get
  ONE call when no names were asked for, or always with ``bulk: true`` (their nodes then share one name).
  When some creates of a request fail, the nodes it did make are destroyed and the first error is raised.
* Tags, by ``tagging`` (``auto`` picks ``metadata`` when ``create_node`` takes ``ex_metadata``, else ``name``):
  ``metadata`` / ``tags`` pass the tags as ``ex_metadata`` / ``ex_tags`` and read them back from the node's
  ``extra`` (``metadata``, ``tags`` or ``labels``); ``name`` encodes infra and group in the node's name,
  ``ch--<infra>--<group>--<name>``, which ``list`` decodes (such nodes carry only those two tags, so a filter on
  any other tag does not match them).  Tags this provider object asked for are also remembered in memory, for
  drivers that keep neither (``dummy`` ignores names and metadata).  Keys go to the cloud as they are
  (``cloudherd:infra``): clouds whose metadata keys cannot hold ``:`` need ``tagging: name``.
* With ``request.token`` and a driver that stores tags, a retried create returns the first call's instances; with
  name tagging, a requested name that already exists is not created again.
* The SSH key: drivers that take ``auth=NodeAuthSSHKey`` get it; else drivers that take user data get a
  cloud-config that makes ``request.ssh_user`` with the key (``cloud_init: false`` turns this off).
* Ports: ``supports("ports")`` is False — security groups are driver specific (use ``create_options``);
  ``request.ports`` are not opened (a warning says so) and ``open_ports`` is an InvalidRequestError.
* States: running/rebooting/… → running, pending/starting → pending, stopping/stopped/suspended/paused →
  stopped, error → dead, terminated → terminated (left out of ``list``), unknown → pending.
* Errors: ``InvalidCredsError``/401/403 → AuthError, ``RateLimitReachedError``/429/413 → ThrottledError,
  404 → NotFoundError, quota texts → QuotaError, "no valid host"/capacity texts → CapacityError, other 4xx →
  InvalidRequestError, 5xx and dropped connections → TransientError (throttling and transient errors are
  retried by the rate budget; this driver makes one attempt per call).  Messages are one line and never
  contain a credential: every secret-looking setting value is masked.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import difflib
import functools
import importlib
import inspect
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cloudherd.providers.base import (
    TAG_GROUP,
    TAG_INFRA,
    AuthError,
    CapacityError,
    CreateRequest,
    Image,
    Instance,
    InstanceState,
    InvalidRequestError,
    MissingDependencyError,
    NotFoundError,
    Provider,
    ProviderError,
    QuotaError,
    Size,
    SizeNeed,
    ThrottledError,
    TransientError,
    UnknownProviderError,
    has_tags,
    matches,
    smallest_fitting,
)
from cloudherd.providers.toolkit import (
    boot_data,
    check_login_name,
    check_request,
    error_from_status,
    first_line,
    gather_all,
    import_sdk,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

TAG_TOKEN = "cloudherd:token"
NAME_PREFIX = "ch--"
NAME_SEP = "--"
DEFAULT_CONCURRENCY = 8
CATALOG_TTL = 300.0
OURS = {"type", "driver", "args", "kwargs", "image", "size", "location", "create_options", "tagging", "concurrency",
        "pool", "bulk", "cloud_init", "ssh_user", "project_id"}
TAGGINGS = ("auto", "metadata", "tags", "name")
SECRET_WORDS = ("key", "secret", "password", "passwd", "token", "credential")
STATES = {name: InstanceState(state) for state, names in {
    "running": ("running", "rebooting", "reconfiguring", "migrating", "normal", "updating"),
    "pending": ("pending", "starting", "unknown"),
    "stopped": ("stopping", "stopped", "suspended", "paused"),
    "dead": ("error",), "terminated": ("terminated",),
}.items() for name in names}
_QUOTA_RE = re.compile(r"quota|limit exceeded|exceeds? (?:the )?(?:allowed|maximum)", re.IGNORECASE)
_CAPACITY_RE = re.compile(r"no valid host|insufficient (?:\w+ )?capacity|out of capacity|not enough capacity",
                          re.IGNORECASE)


class LibcloudProvider(Provider):
    """Any Apache Libcloud compute driver behind the cloudherd interface."""

    type = "libcloud"

    def __init__(self, name: str = "libcloud", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        providers = import_sdk("libcloud.compute.providers", "libcloud", "apache-libcloud")
        resolved = _resolve_env(self.settings)
        self._secrets = _secret_values(resolved)
        driver = resolved.get("driver")
        if not driver or not isinstance(driver, str):
            raise InvalidRequestError(f"libcloud provider {name}: set 'driver' to a libcloud compute provider name "
                                      "(openstack, digitalocean, dummy…) or to module:Class")
        self.driver_name = driver
        self._cls = _driver_class(providers, driver)
        self._args, self._kwargs = _constructor_arguments(resolved)
        if resolved.get("project_id"):  # keystone v3 scoped by the project's id (libcloud scopes by name)
            if driver != "openstack" or str(resolved.get("api_version", "2.0")) != "2.0":
                raise InvalidRequestError(f"libcloud provider {name}: project_id is for driver openstack "
                                          "(api_version 2.0)")
            from cloudherd.providers.libcloud_openstack import OpenStackByProjectId

            self._cls = OpenStackByProjectId
            self._kwargs.pop("api_version", None)
            self._kwargs["ex_tenant_name"] = str(resolved["project_id"])
        self.tagging = str(resolved.get("tagging") or "auto")
        if self.tagging not in TAGGINGS:
            raise InvalidRequestError(f"libcloud provider {name}: tagging must be one of {', '.join(TAGGINGS)}, "
                                      f"not {self.tagging!r}")
        self.concurrency = _positive_int(name, "concurrency", resolved.get("concurrency", DEFAULT_CONCURRENCY))
        from libcloud.compute.drivers.dummy import DummyNodeDriver

        in_memory = issubclass(self._cls, DummyNodeDriver)
        self.pool_size = _positive_int(name, "pool", resolved.get("pool", 1 if in_memory else self.concurrency))
        self.bulk = resolved.get("bulk")
        self.cloud_init = bool(resolved.get("cloud_init", True))
        self.default_image = _opt_str(resolved.get("image"))
        self.default_size_name = _opt_str(resolved.get("size"))
        self.location = _opt_str(resolved.get("location"))
        self.ssh_user = _opt_str(resolved.get("ssh_user"))
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
        self._remembered: dict[str, _Asked] = {}  # id -> what this object asked for when it made the node
        self._catalog: dict[str, tuple[float, builtins.list[Any]]] = {}
        self._create_params = _parameters(self._kind.create_node)

    def __repr__(self) -> str:
        return f"LibcloudProvider(name={self.name!r}, driver={self.driver_name!r})"

    # -- interface -----------------------------------------------------------------------------------

    async def create(self, request: CreateRequest) -> list[Instance]:
        if not check_request(request, f"libcloud {self.driver_name}"):
            return []
        if request.ssh_public_key.strip() and self.cloud_init:
            check_login_name(request.ssh_user, f"libcloud {self.driver_name}")
        if request.ports:
            log.warning("libcloud %s: ports %s not opened: this provider cannot open ports (use create_options "
                        "for the driver's security groups)", self.driver_name, ", ".join(map(str, request.ports)))
        tagging = self._tagging()
        tags = dict(request.tags)
        if request.token and tagging != "name":
            tags[TAG_TOKEN] = request.token
            existing = await self.list({TAG_TOKEN: request.token})
            if existing:
                return existing
        if tagging == "name":
            for key in (TAG_INFRA, TAG_GROUP):
                if NAME_SEP in tags.get(key, ""):
                    raise InvalidRequestError(f"libcloud {self.driver_name}: tag {key}={tags[key]!r} cannot be "
                                              f"encoded in a node name (it contains '{NAME_SEP}')")

        names = list(request.names) or [_fresh_name() for _ in range(request.count)]
        reused: dict[str, Instance] = {}
        if tagging == "name" and request.names:
            current = {i.name: i for i in await self.list({k: v for k, v in tags.items()
                                                           if k in (TAG_INFRA, TAG_GROUP)})}
            reused = {n: current[n] for n in names if n in current}
        todo = [n for n in names if n not in reused]

        size = await self._size_for(request)
        image = await self._image_for(request)
        location = await self._location()
        options, ssh_user = self._create_kwargs(request, tags, tagging, location)

        bulk = {"ex_mincount", "ex_maxcount"} <= self._create_params and len(todo) > 1 and (
            self.bulk is True or (self.bulk is None and not request.names))
        if bulk:
            cloud_name = self._cloud_name(_common_name(todo), tags, tagging)
            nodes = await self._call("create_node", lambda d: d.create_node(
                name=cloud_name, size=size, image=image, ex_mincount=len(todo), ex_maxcount=len(todo), **options))
            made = nodes if isinstance(nodes, list) else [nodes]
            for node in made:
                self._remembered[str(node.id)] = _Asked(dict(tags), None, ssh_user)
        else:
            limit = asyncio.Semaphore(self.concurrency)

            async def one(name: str) -> Any:
                cloud_name = self._cloud_name(name, tags, tagging)
                async with limit:
                    return await self._call("create_node", lambda d: d.create_node(
                        name=cloud_name, size=size, image=image, **options))

            results = await asyncio.gather(*(one(n) for n in todo), return_exceptions=True)
            made = [r for r in results if not isinstance(r, BaseException)]
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                if made:  # what was made is still ours: clean up so that a retry starts afresh
                    log.warning("libcloud %s: %d of %d creates failed; removing the %d made", self.driver_name,
                                len(failures), len(todo), len(made))
                    try:
                        await self._destroy_nodes(made)
                    except ProviderError as exc:
                        log.warning("libcloud %s: could not remove them: %s", self.driver_name, exc)
                raise failures[0]
            for name, node in zip(todo, made, strict=True):
                self._remembered[str(node.id)] = _Asked(dict(tags), name, ssh_user)

        created = [self._instance(node) for node in made]
        if bulk:
            return [reused[n] for n in names if n in reused] + created
        fresh = dict(zip(todo, created, strict=True))
        return [reused.get(n) or fresh[n] for n in names]

    async def list(self, tags: Mapping[str, str]) -> list[Instance]:
        nodes = await self._call("list_nodes", lambda d: d.list_nodes())
        found = [self._instance(node) for node in nodes]
        live = [i for i in found if i.state != "terminated" and has_tags(i.tags, tags)]
        return sorted(live, key=lambda i: i.id)

    async def terminate(self, ids: Sequence[str]) -> None:
        wanted = set(ids)
        if not wanted:
            return
        nodes = await self._call("list_nodes", lambda d: d.list_nodes())
        await self._destroy_nodes([n for n in nodes if str(n.id) in wanted])

    def supports(self, capability: str) -> bool:
        if capability == "stop_start":
            from libcloud.compute.base import NodeDriver

            return all(getattr(self._kind, m) is not getattr(NodeDriver, m) for m in ("stop_node", "start_node"))
        return super().supports(capability)

    async def stop(self, ids: Sequence[str]) -> None:
        await self._power("stop_node", ids)

    async def start(self, ids: Sequence[str]) -> None:
        await self._power("start_node", ids)

    async def sizes(self, pattern: str | None = None) -> builtins.list[Size]:
        raw = await self._catalog_of("list_sizes", fresh=True)
        return sorted((s for s in (_size(r) for r in raw) if matches(pattern, s.name)),
                      key=lambda s: (s.cpus, s.memory_mb, s.name))

    async def images(self, pattern: str | None = None) -> builtins.list[Image]:
        raw = await self._catalog_of("list_images", fresh=True)
        found = [Image(str(r.id), str(r.name or r.id), _plain(r.extra)) for r in raw]
        return sorted((i for i in found if matches(pattern, i.name) or matches(pattern, i.id)),
                      key=lambda i: (i.name, i.id))

    async def regions(self) -> builtins.list[str]:
        raw = await self._catalog_of("list_locations", fresh=True)
        return sorted({str(loc.name or loc.id) for loc in raw})

    async def default_size(self) -> str | None:
        return self.default_size_name

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

        try:
            return await asyncio.to_thread(run)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._error(operation, exc) from exc

    async def _destroy_nodes(self, nodes: Sequence[Any]) -> None:
        async def one(node: Any) -> None:
            with contextlib.suppress(NotFoundError):  # gone already
                await self._call("destroy_node", lambda d: d.destroy_node(node))
            self._remembered.pop(str(node.id), None)

        await gather_all([functools.partial(one, n) for n in nodes], self.concurrency)

    async def _power(self, method: str, ids: Sequence[str]) -> None:
        from libcloud.compute.base import NodeDriver

        verb = method.split("_")[0]
        if getattr(self._kind, method) is getattr(NodeDriver, method):
            raise InvalidRequestError(f"libcloud driver {self.driver_name} cannot {verb} instances")
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return
        nodes = {str(n.id): n for n in await self._call("list_nodes", lambda d: d.list_nodes())}
        missing = [i for i in wanted if i not in nodes]
        if missing:
            raise NotFoundError(f"libcloud {self.driver_name}: no instance {', '.join(missing)}")
        async def one(node: Any) -> None:
            done = await self._call(method, lambda d: getattr(d, method)(node))
            if done is False:
                raise ProviderError(f"libcloud {self.driver_name} {method}: the cloud refused to {verb} {node.id}")

        await gather_all([functools.partial(one, nodes[i]) for i in wanted], self.concurrency)

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

    # -- create helpers ------------------------------------------------------------------------------

    def _tagging(self) -> str:
        if self.tagging != "auto":
            return self.tagging
        return "metadata" if "ex_metadata" in self._create_params else "name"

    def _cloud_name(self, name: str, tags: Mapping[str, str], tagging: str) -> str:
        if tagging != "name":
            return name
        return NAME_SEP.join([NAME_PREFIX.rstrip("-"), tags.get(TAG_INFRA, ""), tags.get(TAG_GROUP, ""), name])

    def _create_kwargs(self, request: CreateRequest, tags: Mapping[str, str], tagging: str,
                       location: Any) -> tuple[dict[str, Any], str | None]:
        """``create_node``'s keyword arguments, and the login user they set up (None: the image's own)."""
        params = self._create_params
        ssh_user = self.ssh_user
        options: dict[str, Any] = {}
        if tagging == "metadata":
            options["ex_metadata"] = dict(tags)
        elif tagging == "tags":
            options["ex_tags"] = dict(tags)
        if location is not None and "location" in params:
            options["location"] = location
        key = request.ssh_public_key.strip()
        userdata = next((p for p in ("ex_userdata", "ex_user_data") if p in params), None)
        login = False
        if key:
            features = getattr(self._kind, "features", {}).get("create_node", [])
            if "ssh_key" in features and "auth" in params:
                from libcloud.compute.base import NodeAuthSSHKey

                options["auth"] = NodeAuthSSHKey(key)
            elif self.cloud_init and userdata:
                login = True
                ssh_user = request.ssh_user
        if (login or request.user_data) and userdata:
            options[userdata] = boot_data(request, f"libcloud {self.driver_name}", login=login)
        elif request.user_data:
            raise InvalidRequestError(f"libcloud {self.driver_name}: this driver's create_node takes no user data, "
                                      "so the group's cloud-config cannot go to its machines")
        options.update(self.create_options)
        if self.driver_name == "openstack":
            options = _openstack_references(options)
        return options, ssh_user

    async def _size_for(self, request: CreateRequest) -> Any:
        raw = await self._catalog_of("list_sizes")
        wanted = request.size or (None if request.size_need else self.default_size_name)
        if wanted:
            found = _pick(raw, wanted)
            if found is None:
                names = ", ".join(sorted(str(s.name) for s in raw)[:12])
                raise NotFoundError(f"libcloud {self.driver_name}: no size {wanted!r} (sizes: {names})")
            return found
        if not raw:
            raise InvalidRequestError(f"libcloud {self.driver_name}: the driver lists no sizes; set size")
        need = request.size_need or SizeNeed()
        sizes = [_size(r) for r in raw]
        if need.cpus and not any(s.cpus for s in sizes):
            raise InvalidRequestError(f"libcloud {self.driver_name}: the driver does not report cpu counts; "
                                      "ask by memory only or name a size")
        best = smallest_fitting(sizes, need)
        return next(r for r in raw if str(r.id) == best.extra["id"])

    async def _image_for(self, request: CreateRequest) -> Any:
        wanted = request.image or self.default_image
        if not wanted:
            raise InvalidRequestError(f"libcloud {self.driver_name}: no image given: set image in the group or "
                                      "in the provider settings")
        from libcloud.compute.base import NodeDriver

        if self._kind.get_image is not NodeDriver.get_image and _looks_like_id(wanted):
            try:
                return await self._call("get_image", lambda d: d.get_image(wanted))
            except (AuthError, ThrottledError):
                raise
            except ProviderError:
                pass  # not an id after all: look it up by name below
        raw = await self._catalog_of("list_images")
        found = _pick(raw, wanted)
        if found is None:
            raise NotFoundError(f"libcloud {self.driver_name}: no image {wanted!r}")
        return found

    async def _location(self) -> Any:
        if not self.location:
            return None
        raw = await self._catalog_of("list_locations")
        found = _pick(raw, self.location)
        if found is None:
            names = ", ".join(sorted(str(loc.name or loc.id) for loc in raw)[:12])
            raise NotFoundError(f"libcloud {self.driver_name}: no location {self.location!r} (locations: {names})")
        return found

    # -- nodes and errors ----------------------------------------------------------------------------

    def _instance(self, node: Any) -> Instance:
        node_id = str(node.id)
        cloud_name = str(node.name or node_id)
        asked = self._remembered.get(node_id) or _Asked({}, None, None)
        name, name_tags = _decode_name(cloud_name)
        tags = {**name_tags, **asked.tags, **_node_tags(node.extra or {})}
        state_value = str(getattr(node.state, "value", node.state) or "unknown").lower()
        public = [str(ip) for ip in (node.public_ips or []) if ip]
        private = [str(ip) for ip in (node.private_ips or []) if ip]
        public.sort(key=lambda ip: ":" in ip)  # IPv4 first
        private.sort(key=lambda ip: ":" in ip)
        extra: dict[str, Any] = {"libcloud_state": state_value, "cloud_name": cloud_name, "public_ips": public,
                 "private_ips": private, "driver": self.driver_name}
        for key in ("flavorId", "imageId", "availability_zone", "instance_type", "image_id", "zone", "region"):
            value = (node.extra or {}).get(key)
            if isinstance(value, str | int | float):
                extra[key] = value
        return Instance(
            id=node_id, name=asked.name or name,
            state=STATES.get(state_value, InstanceState.PENDING), address=next(iter(public + private), None), port=22,
            private_address=private[0] if private else None, tags=tags, ssh_user=asked.ssh_user or self.ssh_user,
            extra=extra,
        )

    def _clean(self, text: str, limit: int = 300) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = " ".join(text.split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def _error(self, operation: str, exc: Exception) -> ProviderError:
        from libcloud.common.exceptions import BaseHTTPError, RateLimitReachedError
        from libcloud.common.types import InvalidCredsError, LibcloudError, MalformedResponseError
        from libcloud.common.types import ProviderError as LibcloudProviderError
        from libcloud.compute.types import KeyPairDoesNotExistError

        where = f"libcloud {self.driver_name} {operation}"
        if isinstance(exc, InvalidCredsError):
            return AuthError(f"{where}: credentials were refused (check key/secret and the auth settings)",
                             code="401", status=401)
        if isinstance(exc, RateLimitReachedError):
            after = getattr(exc, "retry_after", 0)
            return ThrottledError(f"{where}: rate limited" + (f", retry after {after:g}s" if after else ""),
                                  code="429", status=429)
        if isinstance(exc, KeyPairDoesNotExistError):
            return NotFoundError(f"{where}: key pair {self._clean(str(getattr(exc, 'name', '')))} does not exist")
        if isinstance(exc, MalformedResponseError):  # a proxy's error page, a truncated answer: try again
            return TransientError(f"{where}: the cloud sent a malformed response ({self._clean(str(exc.value))})")
        if isinstance(exc, BaseHTTPError | LibcloudProviderError):
            if isinstance(exc, BaseHTTPError):
                code, detail = int(exc.code or 0), str(exc.message)
            else:
                code, detail = int(getattr(exc, "http_code", 0) or 0), str(exc.value)
            return _http_error(where, code, self._clean(detail))
        if isinstance(exc, NotImplementedError):
            return InvalidRequestError(f"{where}: not supported by this driver")
        if isinstance(exc, LibcloudError):
            return ProviderError(f"{where}: {self._clean(str(exc.value))}")
        if _is_connection_error(exc):
            return TransientError(f"{where}: could not reach the cloud: {exc.__class__.__name__}: "
                                  f"{self._clean(first_line(exc))}")
        if isinstance(exc, TypeError | ValueError | KeyError):
            return InvalidRequestError(f"{where}: {exc.__class__.__name__}: {self._clean(first_line(exc))}")
        return ProviderError(f"{where}: {exc.__class__.__name__}: {self._clean(first_line(exc))}")


# -- helpers (module level: no provider state) ------------------------------------------------------


@dataclass(frozen=True)
class _Asked:
    """What a create asked for: the tags, the name (drivers such as dummy ignore it) and the login user."""

    tags: dict[str, str]
    name: str | None
    ssh_user: str | None


def _driver_class(providers: Any, name: str) -> Any:
    if ":" in name:
        module_name, _, class_name = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise UnknownProviderError(f"libcloud driver class {name!r} cannot be imported: {exc}") from exc
        return cls
    known = {str(k).lower(): k for k in providers.DRIVERS}
    key = known.get(name.lower())
    if key is None:
        close = difflib.get_close_matches(name.lower(), known, n=5, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see libcloud's list of compute providers)"
        raise UnknownProviderError(f"unknown libcloud compute driver {name!r}{hint}")
    try:
        return providers.get_driver(key)
    except ImportError as exc:
        raise MissingDependencyError(f"libcloud driver {name!r} needs a package that is not installed: {exc}") from exc
    except Exception as exc:  # libcloud raises a bare Exception for retired providers
        raise UnknownProviderError(f"libcloud driver {name!r} cannot be used: {first_line(exc)}") from exc


def _openstack_references(options: dict[str, Any]) -> dict[str, Any]:
    """``networks`` (ids) and ``ex_security_groups`` (names) written as text in ``create_options``, as the
    objects the OpenStack driver reads them from (it takes ``.id`` / ``.name`` of each)."""
    from types import SimpleNamespace

    out = dict(options)
    for key in ("networks", "ex_security_groups"):
        if isinstance(out.get(key), list):
            out[key] = [SimpleNamespace(id=str(v), name=str(v)) if isinstance(v, str) else v for v in out[key]]
    return out


def _resolve_env(settings: Mapping[str, Any]) -> dict[str, Any]:
    resolved = {k: v for k, v in settings.items() if not k.endswith("_env")}
    for key, var in settings.items():
        if key.endswith("_env"):
            name = key[: -len("_env")]
            value = os.environ.get(str(var))
            if value is None:
                raise AuthError(f"libcloud provider: setting {name} comes from ${var}, which is not set")
            resolved[name] = value
    return resolved


def _constructor_arguments(settings: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    kwargs = {k: v for k, v in settings.items() if k not in OURS and k not in ("key", "secret")}
    extra = settings.get("kwargs") or {}
    if not isinstance(extra, Mapping):
        raise InvalidRequestError("libcloud provider: kwargs must be a mapping")
    kwargs.update(extra)
    if settings.get("args") is not None:
        args = settings["args"]
        if not isinstance(args, list | tuple):
            raise InvalidRequestError("libcloud provider: args must be a list")
        positional = builtins.list(args)
        for name in ("key", "secret"):
            if name in settings:
                kwargs[name] = settings[name]
        return positional, kwargs
    positional = []
    if "key" in settings:
        positional.append(settings["key"])
        if "secret" in settings:
            positional.append(settings["secret"])
    elif "secret" in settings:
        kwargs["secret"] = settings["secret"]
    return positional, kwargs


def _secret_values(settings: Mapping[str, Any]) -> builtins.list[str]:
    """Every value that may be a credential: masked in messages (longest first)."""
    found: set[str] = set()

    def add(value: Any) -> None:
        if isinstance(value, str | int) and not isinstance(value, bool) and len(str(value)) >= 4:
            found.add(str(value))

    for key, value in settings.items():
        lowered = key.lower()
        if key == "args" and isinstance(value, list | tuple):
            for item in value:
                add(item)
        elif key == "kwargs" and isinstance(value, Mapping):
            for inner_key, inner in value.items():
                if any(w in str(inner_key).lower() for w in SECRET_WORDS):
                    add(inner)
        elif any(w in lowered for w in SECRET_WORDS):
            add(value)
    return sorted(found, key=len, reverse=True)


def _positive_int(provider: str, name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise InvalidRequestError(f"libcloud provider {provider}: {name} must be a whole number ≥ 1, not {value!r}")
    return number


def _opt_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _parameters(fn: Any) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _fresh_name() -> str:
    import secrets

    return "ch-" + secrets.token_hex(4)


def _common_name(names: Sequence[str]) -> str:
    first, last = min(names), max(names)
    size = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), min(len(first), len(last)))
    prefix = first[:size].rstrip("-_.")
    return prefix if prefix and prefix not in names else _fresh_name()


def _decode_name(cloud_name: str) -> tuple[str, dict[str, str]]:
    """(our name, tags) of a node name; ``ch--<infra>--<group>--<name>`` carries infra and group."""
    if not cloud_name.startswith(NAME_PREFIX):
        return cloud_name, {}
    parts = cloud_name[len(NAME_PREFIX):].split(NAME_SEP, 2)
    if len(parts) != 3:
        return cloud_name, {}
    infra, group, name = parts
    tags = {}
    if infra:
        tags[TAG_INFRA] = infra
    if group:
        tags[TAG_GROUP] = group
    return name or cloud_name, tags


def _node_tags(extra: Mapping[str, Any]) -> dict[str, str]:
    """Key/value tags a driver shows in ``node.extra`` (``metadata``, ``tags`` or ``labels``)."""
    found: dict[str, str] = {}
    for key in ("labels", "metadata", "tags"):  # later ones win
        value = extra.get(key)
        if isinstance(value, Mapping) and isinstance(value.get("items"), list):  # GCE metadata shape
            value = {i.get("key"): i.get("value") for i in value["items"] if isinstance(i, Mapping)}
        if isinstance(value, Mapping):
            found.update({str(k): str(v) for k, v in value.items() if k is not None and v is not None})
    return found


def _size(raw: Any) -> Size:
    extra = _plain(getattr(raw, "extra", None) or {})
    cpus: Any = getattr(raw, "vcpus", None)
    for key in ("vcpus", "cpus", "cpu", "vcpu", "cores", "cpu_count"):
        if cpus:
            break
        cpus = extra.get(key)
    try:
        cpu_count = float(cpus or 0)
    except (TypeError, ValueError):
        cpu_count = 0.0
    extra.update({"id": str(raw.id), "disk_gb": raw.disk, "price": raw.price})
    return Size(str(raw.name or raw.id), cpu_count, int(raw.ram or 0), extra)


def _plain(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of a libcloud ``extra`` mapping."""
    plain: dict[str, Any] = {}
    for key, value in extra.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        plain[str(key)] = value
    return plain


def _pick(items: Iterable[Any], wanted: str) -> Any | None:
    """The item whose id is ``wanted``, else whose name is (exactly, then ignoring case); a name twice is an error."""
    items = builtins.list(items)
    for item in items:
        if str(item.id) == wanted:
            return item
    for exact in (True, False):
        same = [i for i in items if (str(i.name) == wanted if exact else str(i.name).lower() == wanted.lower())]
        if len(same) == 1:
            return same[0]
        if len(same) > 1:
            ids = ", ".join(str(i.id) for i in same[:5])
            raise InvalidRequestError(f"libcloud: {len(same)} catalog entries are named {wanted!r}; "
                                      f"use an id ({ids})")
    return None


def _looks_like_id(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", text)
                or re.fullmatch(r"[a-z]+-[0-9a-f]{8,17}", text))  # uuid, or ami-0abc… style ids


def _http_error(where: str, status: int, detail: str) -> ProviderError:
    text = f"{where}: HTTP {status}: {detail}" if status else f"{where}: {detail}"
    code = str(status) if status else None  # libcloud keeps no cloud error code; the status is the code
    if status in (401, 407):
        return AuthError(f"{where}: HTTP {status}: credentials were refused", code=code, status=status)
    if _QUOTA_RE.search(detail):
        return QuotaError(text, code=code, status=status)
    if status in (413, 429):
        return ThrottledError(text, code=code, status=status)
    if _CAPACITY_RE.search(detail):
        return CapacityError(text, code=code, status=status)
    if status == 403:
        return AuthError(f"{where}: HTTP 403: the credentials lack permission ({detail})", code=code, status=status)
    if status == 503 and "retry" in detail.lower():
        return ThrottledError(text, code=code, status=status)
    if status == 0:  # an error without a status is not known to be worth another try
        return ProviderError(text)
    return error_from_status(text, status, code)


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


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError | OSError):
        return True
    try:
        import requests
    except ImportError:  # pragma: no cover - libcloud depends on requests
        return False
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)
