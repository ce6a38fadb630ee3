"""The driver's catalog: sizes (size by need: the smallest that fits), images and locations, found by id, else
by name."""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from cloudherd.providers.base import (
    AuthError,
    CreateRequest,
    Image,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    Size,
    SizeNeed,
    ThrottledError,
    matches,
    smallest_fitting,
)
from cloudherd.providers.libcloud.api import LibcloudApi


class LibcloudCatalog(LibcloudApi):
    """Sizes, images and locations of the driver."""

    async def sizes(self, pattern: str | None = None) -> builtins.list[Size]:
        raw = await self._catalog_of("list_sizes", fresh=True)
        return sorted((s for s in (size_of(r) for r in raw) if matches(pattern, s.name)),
                      key=lambda s: (s.cpus, s.memory_mb, s.name))

    async def images(self, pattern: str | None = None) -> builtins.list[Image]:
        raw = await self._catalog_of("list_images", fresh=True)
        found = [Image(str(r.id), str(r.name or r.id), plain(r.extra)) for r in raw]
        return sorted((i for i in found if matches(pattern, i.name) or matches(pattern, i.id)),
                      key=lambda i: (i.name, i.id))

    async def regions(self) -> builtins.list[str]:
        raw = await self._catalog_of("list_locations", fresh=True)
        return sorted({str(loc.name or loc.id) for loc in raw})

    async def default_size(self) -> str | None:
        return self.default_size_name

    async def _size_for(self, request: CreateRequest) -> Any:
        raw = await self._catalog_of("list_sizes")
        wanted = request.size or (None if request.size_need else self.default_size_name)
        if wanted:
            found = pick(raw, wanted)
            if found is None:
                names = ", ".join(sorted(str(s.name) for s in raw)[:12])
                raise NotFoundError(f"libcloud {self.driver_name}: no size {wanted!r} (sizes: {names})")
            return found
        if not raw:
            raise InvalidRequestError(f"libcloud {self.driver_name}: the driver lists no sizes; set size")
        need = request.size_need or SizeNeed()
        sizes = [size_of(r) for r in raw]
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

        if self._kind.get_image is not NodeDriver.get_image and looks_like_id(wanted):
            try:
                return await self._call("get_image", lambda d: d.get_image(wanted))
            except (AuthError, ThrottledError):
                raise
            except ProviderError:
                pass  # not an id after all: look it up by name below
        raw = await self._catalog_of("list_images")
        found = pick(raw, wanted)
        if found is None:
            raise NotFoundError(f"libcloud {self.driver_name}: no image {wanted!r}")
        return found

    async def _location(self) -> Any:
        if not self.location:
            return None
        raw = await self._catalog_of("list_locations")
        found = pick(raw, self.location)
        if found is None:
            names = ", ".join(sorted(str(loc.name or loc.id) for loc in raw)[:12])
            raise NotFoundError(f"libcloud {self.driver_name}: no location {self.location!r} (locations: {names})")
        return found


def size_of(raw: Any) -> Size:
    extra = plain(getattr(raw, "extra", None) or {})
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


def plain(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of a libcloud ``extra`` mapping."""
    plain: dict[str, Any] = {}
    for key, value in extra.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        plain[str(key)] = value
    return plain


def pick(items: Iterable[Any], wanted: str) -> Any | None:
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


def looks_like_id(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", text)
                or re.fullmatch(r"[a-z]+-[0-9a-f]{8,17}", text))  # uuid, or ami-0abc… style ids
