"""EC2's catalog: image aliases resolved to the newest public image of their publisher, instance types (size
by need: the smallest eligible type that fits, see the package notes), regions, each cached per provider."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import math
import re
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from cloudherd.providers.aws.api import Ec2Api
from cloudherd.providers.base import (
    Image,
    InvalidRequestError,
    NotFoundError,
    Size,
    SizeNeed,
    matches,
    smallest_fitting,
)

DEFAULT_SIZE = "t3.micro"
DEFAULT_IMAGE = "ubuntu-24.04"

CANONICAL = "099720109477"
DEBIAN = "136693071363"
AMAZON = "amazon"

_ARM_SIZE_RE = re.compile(r"^(a1|[a-z]+\d+g[a-z]*)\.")


class Ec2Catalog(Ec2Api):
    """Images, instance types and regions (cached on the provider object)."""

    def __init__(self, name: str = "aws", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        # caches, one set per provider object
        self._catalog_all: list[Size] | None = None
        self._eligible: dict[tuple[str, int | None], list[Size]] = {}  # (arch, vCPUs or None for all) -> types
        self._catalog_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary())
        self._image_arch: dict[str, str] = {}

    async def sizes(self, pattern: str | None = None) -> builtins.list[Size]:
        if self._catalog_all is None and pattern and re.fullmatch(r"[A-Za-z0-9-]+", pattern):
            # a plain substring and no catalog yet: let EC2 filter (much less to fetch than the whole catalog)
            found = await self._types([{"Name": "instance-type", "Values": [f"*{pattern.lower()}*"]}])
        else:
            found = await self._catalog()
        return sorted((s for s in found if matches(pattern, s.name)), key=lambda s: s.name)

    async def images(self, pattern: str | None = None) -> builtins.list[Image]:
        """The known aliases (newest x86_64 image of each) and the account's own images; two calls."""
        aliases = ["debian-12", "debian-11", "ubuntu-24.04", "ubuntu-22.04", "ubuntu-20.04", "al2023", "al2"]
        specs = {alias: alias_spec(alias, "x86_64") for alias in aliases}
        owners = sorted({owner for spec in specs.values() if spec for owner in spec[0]})
        names = sorted({spec[1] for spec in specs.values() if spec})
        public = await self._call("describe_images", Owners=owners, Filters=[
            {"Name": "name", "Values": names}, {"Name": "architecture", "Values": ["x86_64"]},
            {"Name": "state", "Values": ["available"]}])
        own = await self._call("describe_images", Owners=["self"], MaxResults=1000)
        found: list[Image] = []
        for alias, spec in specs.items():
            assert spec is not None
            candidates = [i for i in public.get("Images", []) if _fnmatch(i.get("Name", ""), spec[1])
                          and (i.get("OwnerId") in spec[0] or i.get("ImageOwnerAlias") in spec[0])]
            if candidates:
                best = _newest(candidates)
                found.append(Image(best["ImageId"], alias, _image_extra(best)))
        for item in own.get("Images", []):
            found.append(Image(item["ImageId"], item.get("Name") or item["ImageId"], _image_extra(item)))
        return [i for i in found if matches(pattern, i.name) or matches(pattern, str(i.extra.get("ami_name", "")))]

    async def regions(self) -> builtins.list[str]:
        response = await self._call("describe_regions")
        return sorted(r["RegionName"] for r in response.get("Regions", []))

    def default_user(self, image: str | None) -> str | None:
        return alias_user(image)

    async def default_size(self) -> str | None:
        return DEFAULT_SIZE

    async def _image_id(self, image: str, size: str) -> str:
        if image.startswith("ami-"):
            return image
        arch = str(self.settings.get("architecture") or ("arm64" if _ARM_SIZE_RE.match(size) else "x86_64"))
        spec = alias_spec(image, arch)
        if spec is None:
            raise NotFoundError(f"aws: unknown image alias '{image}' (use an ami-... id, debian-N, ubuntu-YY.MM, "
                                "debian-latest, ubuntu-latest, al2023 or al2)")
        owners, pattern = spec
        response = await self._call("describe_images", Owners=owners, Filters=[
            {"Name": "name", "Values": [pattern]}, {"Name": "architecture", "Values": [arch]},
            {"Name": "state", "Values": ["available"]}])
        images = response.get("Images", [])
        if not images:
            raise NotFoundError(f"aws: image alias '{image}' matches no {arch} image in {self.region}")
        best: str = _newest(images)["ImageId"]
        return best

    # -- size by need --------------------------------------------------------------------------------

    async def _size_for(self, need: SizeNeed, image: str) -> str:
        """The smallest eligible instance type that meets ``need`` (see the package notes)."""
        arch = await self._architecture(image)
        if need.cpus is not None and need.cpus > 0:
            # vCPU counts are whole: if a type with exactly ceil(cpus) fits, it beats every bigger one
            tier = await self._candidates(arch, math.ceil(need.cpus))
            with contextlib.suppress(InvalidRequestError):  # none of them fits: look at them all
                return smallest_fitting(tier, need).name
        try:
            return smallest_fitting(await self._candidates(arch, None), need).name
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"aws in {self.region}: {exc} (among current-generation on-demand {arch} "
                                      "instance types)") from exc

    async def _architecture(self, image: str) -> str:
        if self.settings.get("architecture"):
            return str(self.settings["architecture"])
        if not image.startswith("ami-"):
            return "x86_64"  # aliases follow the size; x86_64 is the default for sizes chosen by need
        if image not in self._image_arch:
            found = (await self._call("describe_images", ImageIds=[image])).get("Images", [])
            if not found:
                raise NotFoundError(f"aws: image {image} not found in {self.region}")
            self._image_arch[image] = str(found[0].get("Architecture") or "x86_64")
        return self._image_arch[image]

    def _catalog_lock(self) -> asyncio.Lock:
        """One lock per event loop (asyncio locks are bound to their loop): concurrent creates fetch once."""
        loop = asyncio.get_running_loop()
        with self._lock:
            lock = self._catalog_locks.get(loop)
            if lock is None:
                lock = self._catalog_locks[loop] = asyncio.Lock()
            return lock

    async def _catalog(self) -> builtins.list[Size]:
        """Every instance type of the region, fetched once per provider object."""
        async with self._catalog_lock():
            if self._catalog_all is None:
                self._catalog_all = await self._types(None)
            return self._catalog_all

    async def _candidates(self, arch: str, vcpus: int | None) -> builtins.list[Size]:
        """The types size-by-need may pick for ``arch`` (with exactly ``vcpus`` vCPUs when given).

        EC2 filters (eligibility, vCPU count) so that only those are sent; each answer is cached, and a cached
        whole catalog (from :meth:`sizes`) or whole eligible set serves every later question.
        """
        async with self._catalog_lock():
            found = self._catalog_all or self._eligible.get((arch, None)) or self._eligible.get((arch, vcpus))
            if found is None:
                filters = [{"Name": "current-generation", "Values": ["true"]},
                           {"Name": "bare-metal", "Values": ["false"]},
                           {"Name": "supported-usage-class", "Values": ["on-demand"]},
                           {"Name": "processor-info.supported-architecture", "Values": [arch]}]
                if vcpus is not None:
                    filters.append({"Name": "vcpu-info.default-vcpus", "Values": [str(vcpus)]})
                found = self._eligible[(arch, vcpus)] = await self._types(filters)
        return [s for s in found if _eligible(s, arch) and (vcpus is None or s.cpus == vcpus)]

    async def _types(self, filters: builtins.list[dict[str, Any]] | None) -> builtins.list[Size]:
        params: dict[str, Any] = {"MaxResults": 100}
        if filters:
            params["Filters"] = filters
        return [_size(item) for item in await self._pages("describe_instance_types", "InstanceTypes", **params)]


def _size(item: dict[str, Any]) -> Size:
    return Size(item["InstanceType"], float(item.get("VCpuInfo", {}).get("DefaultVCpus", 0)),
                int(item.get("MemoryInfo", {}).get("SizeInMiB", 0)),
                {"arch": item.get("ProcessorInfo", {}).get("SupportedArchitectures", []),
                 "current": bool(item.get("CurrentGeneration", False)), "bare_metal": bool(item.get("BareMetal")),
                 "usage": item.get("SupportedUsageClasses", [])})


def _eligible(size: Size, arch: str) -> bool:
    """What size-by-need may pick: current generation, not bare metal, on demand, the image's architecture."""
    return (bool(size.extra.get("current")) and not size.extra.get("bare_metal")
            and arch in size.extra.get("arch", []) and "on-demand" in size.extra.get("usage", ["on-demand"]))


def alias_user(alias: str | None) -> str | None:
    """The default login user of an image alias' distribution (as its publisher documents it)."""
    name = (alias or "").lower()
    if re.fullmatch(r"debian-(\d+|latest)", name):
        return "admin"
    if re.fullmatch(r"ubuntu-(\d\d\.?\d\d(-lts)?|latest)", name):
        return "ubuntu"
    if name in ("al2023", "amazon-linux-2023", "al2", "amazon-linux-2"):
        return "ec2-user"
    return None


def alias_spec(alias: str, arch: str) -> tuple[list[str], str] | None:
    """(owners, name pattern) of an image alias, or None when the alias is unknown."""
    deb_arch = "arm64" if arch == "arm64" else "amd64"
    alias = alias.lower()
    if alias == "debian-latest":  # OGC's names: the newest of the distribution
        return [DEBIAN], f"debian-*-{deb_arch}-*"
    if alias == "ubuntu-latest":
        return [CANONICAL], f"ubuntu/images/hvm-ssd*/ubuntu-*-{deb_arch}-server-*"
    if m := re.fullmatch(r"debian-(\d+)", alias):
        return [DEBIAN], f"debian-{m.group(1)}-{deb_arch}-*"
    if m := re.fullmatch(r"ubuntu-(\d\d)\.?(\d\d)(?:-lts)?", alias):  # ubuntu-24.04; OGC's ubuntu-2004(-lts)
        return [CANONICAL], f"ubuntu/images/hvm-ssd*/ubuntu-*-{m.group(1)}.{m.group(2)}-{deb_arch}-server-*"
    if alias in ("al2023", "amazon-linux-2023"):
        return [AMAZON], f"al2023-ami-2023.*-{arch}"
    if alias in ("al2", "amazon-linux-2"):
        return [AMAZON], f"amzn2-ami-hvm-2.0.*-{arch}-gp2"
    return None


def _newest(images: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return max(images, key=lambda i: (i.get("CreationDate", ""), i.get("Name", ""), i["ImageId"]))


def _fnmatch(name: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(name, pattern)


def _image_extra(item: dict[str, Any]) -> dict[str, Any]:
    return {"ami_name": item.get("Name"), "owner": item.get("OwnerId"), "created": item.get("CreationDate"),
            "arch": item.get("Architecture")}
