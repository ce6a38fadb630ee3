"""The ``libcloud`` driver: nodes made (one call each, or one bulk call), listed, stopped, started and
destroyed, at most ``concurrency`` calls at a time."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from cloudherd.providers.base import (
    TAG_GROUP,
    TAG_INFRA,
    TAG_TOKEN,
    CreateRequest,
    Instance,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    has_tags,
)
from cloudherd.providers.libcloud.catalog import LibcloudCatalog
from cloudherd.providers.libcloud.nodes import NAME_SEP, Asked, LibcloudNodes, common_name, fresh_name
from cloudherd.providers.toolkit import check_login_name, check_request, gather_all

log = logging.getLogger(__name__)


class LibcloudProvider(LibcloudNodes, LibcloudCatalog):
    """Any Apache Libcloud compute driver behind the cloudherd interface."""

    type = "libcloud"

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

        names = list(request.names) or [fresh_name() for _ in range(request.count)]
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
            cloud_name = self._cloud_name(common_name(todo), tags, tagging)
            nodes = await self._call("create_node", lambda d: d.create_node(
                name=cloud_name, size=size, image=image, ex_mincount=len(todo), ex_maxcount=len(todo), **options))
            made = nodes if isinstance(nodes, list) else [nodes]
            for node in made:
                self._remembered[str(node.id)] = Asked(dict(tags), None, ssh_user)
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
                self._remembered[str(node.id)] = Asked(dict(tags), name, ssh_user)

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
