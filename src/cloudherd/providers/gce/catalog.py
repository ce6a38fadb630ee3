"""Compute Engine's catalog: image aliases (image families of public projects), machine types (size by need:
the smallest that fits), the project's zones."""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping
from typing import Any

from cloudherd.providers.base import CreateRequest, Image, NotFoundError, Size, SizeNeed, matches, smallest_fitting
from cloudherd.providers.gce.api import GceApi
from cloudherd.providers.gce.labels import NAME_RE

DEFAULT_SIZE = "e2-small"
DEFAULT_IMAGE = "debian-12"

# alias: (image project, amd64 family, arm64 family)
ALIASES: dict[str, tuple[str, str, str]] = {
    "debian-11": ("debian-cloud", "debian-11", "debian-11-arm64"),
    "debian-12": ("debian-cloud", "debian-12", "debian-12-arm64"),
    "debian-13": ("debian-cloud", "debian-13", "debian-13-arm64"),
    "ubuntu-20.04": ("ubuntu-os-cloud", "ubuntu-2004-lts", "ubuntu-2004-lts-arm64"),
    "ubuntu-22.04": ("ubuntu-os-cloud", "ubuntu-2204-lts", "ubuntu-2204-lts-arm64"),
    "ubuntu-24.04": ("ubuntu-os-cloud", "ubuntu-2404-lts-amd64", "ubuntu-2404-lts-arm64"),
    "rocky-9": ("rocky-linux-cloud", "rocky-linux-9", "rocky-linux-9-arm64"),
    "cos": ("cos-cloud", "cos-stable", "cos-arm64-stable"),
}

_ARM_SIZE_RE = re.compile(r"^(t2a|c4a|n4a|a4x)-")


class GceCatalog(GceApi):
    """Images, machine types (cached on the provider object) and zones."""

    def __init__(self, name: str = "gce", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self._sizes: builtins.list[Size] | None = None

    async def sizes(self, pattern: str | None = None) -> builtins.list[Size]:
        if self._sizes is None:
            self._sizes = await self._run("machineTypes.list", self._machine_types)
        return [s for s in self._sizes if matches(pattern, s.name)]

    async def images(self, pattern: str | None = None) -> builtins.list[Image]:
        """The aliases (each an image family of a public project) and the project's own images; one call."""
        found = [Image(f"projects/{proj}/global/images/family/{amd}", alias,
                       {"project": proj, "family": amd, "arm64_family": arm})
                 for alias, (proj, amd, arm) in ALIASES.items()]

        def run() -> builtins.list[Any]:
            client = self._client("ImagesClient")
            return [i for i in client.list(project=self.project, timeout=self.request_timeout, retry=None)]

        for item in await self._run("images.list", run):
            if item.deprecated and item.deprecated.state in ("OBSOLETE", "DELETED"):
                continue
            found.append(Image(f"projects/{self.project}/global/images/{item.name}", item.name,
                               {"project": self.project, "family": item.family or None,
                                "created": item.creation_timestamp or None, "status": item.status or None}))
        return [i for i in found if matches(pattern, i.name) or matches(pattern, str(i.extra.get("family") or ""))]

    async def regions(self) -> builtins.list[str]:
        """The project's zones that are up (GCE places instances in zones)."""

        def run() -> builtins.list[str]:
            client = self._client("ZonesClient")
            return [z.name for z in client.list(project=self.project, timeout=self.request_timeout,
                                                retry=None) if z.status in ("", "UP")]

        return sorted(await self._run("zones.list", run))

    async def default_size(self) -> str | None:
        if self.settings.get("size"):
            return str(self.settings["size"])
        sizes = await self.sizes()
        if not sizes or any(s.name == DEFAULT_SIZE for s in sizes):
            return DEFAULT_SIZE
        return smallest_fitting(sizes, SizeNeed(cpus=1, memory_mib=1024)).name

    def source_image(self, image: str, size: str | None = None) -> str:
        """The ``sourceImage`` of an alias (``debian-12``, ``ubuntu-24.04``, ...), ``family/NAME``, an own
        image's name or a full image path/URL."""
        if image.startswith(("https://", "projects/", "global/")):
            return image
        alias = ALIASES.get(image.lower())
        if alias is not None:
            proj, amd, arm = alias
            family = arm if size and _ARM_SIZE_RE.match(size) else amd
            return f"projects/{proj}/global/images/family/{family}"
        if image.startswith("family/") and NAME_RE.match(image[len("family/"):]):
            return f"projects/{self.project}/global/images/{image}"
        if NAME_RE.match(image):
            return f"projects/{self.project}/global/images/{image}"
        raise NotFoundError(f"gce: unknown image '{image}' (use an alias such as {', '.join(ALIASES)}, "
                            "family/NAME, an image of this project or projects/P/global/images/...)")

    def _boot_disk(self, source_image: str) -> Any:
        compute = self._compute
        params = compute.AttachedDiskInitializeParams(source_image=source_image)
        if self.settings.get("disk_size_gb"):
            params.disk_size_gb = int(self.settings["disk_size_gb"])
        if self.settings.get("disk_type"):
            params.disk_type = str(self.settings["disk_type"])
        return compute.AttachedDisk(boot=True, auto_delete=True, initialize_params=params)

    async def _size_for(self, request: CreateRequest) -> str:
        if request.size:
            return request.size
        if request.size_need is not None:
            return smallest_fitting(await self.sizes(), request.size_need).name
        return await self.default_size() or DEFAULT_SIZE

    def _machine_types(self) -> builtins.list[Size]:
        client = self._client("MachineTypesClient")
        sizes = []
        for item in client.list(project=self.project, zone=self.zone, timeout=self.request_timeout,
                                retry=None):
            if item.deprecated and item.deprecated.state in ("OBSOLETE", "DELETED"):
                continue
            sizes.append(Size(item.name, float(item.guest_cpus), int(item.memory_mb),
                              {"shared_cpu": bool(item.is_shared_cpu), "description": item.description or None,
                               "deprecated": item.deprecated.state if item.deprecated else None}))
        return sorted(sizes, key=lambda s: s.name)
