"""The ``local`` driver: real SSH machines on this computer, behind the provider interface."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import ipaddress
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cloudherd.providers.base import (
    FAULTS,
    SPOT_INTERRUPTED,
    TAG_TOKEN,
    CreateRequest,
    Image,
    Instance,
    InvalidRequestError,
    PortsHandle,
    Size,
    has_tags,
    matches,
)
from cloudherd.providers.local import net, sandbox
from cloudherd.providers.local.faults import FAULT_ACTIONS
from cloudherd.providers.local.meta import SIZES, limits_of, memory_mb, read_meta, write_meta
from cloudherd.providers.local.nodes import LocalNodes
from cloudherd.providers.local.processes import stop_processes
from cloudherd.providers.local.rootless import rootless, subordinate_ids
from cloudherd.providers.toolkit import check_ports, check_request

ENDED = ".ended"  # the root's folder of why interrupted nodes ended (no node.json: listing skips it)


class LocalProvider(LocalNodes):
    """Machines on this computer; settings: ``root`` (nodes folder), ``server`` (auto|openssh|builtin),
    ``isolation`` (auto|required|none: a sandbox per node, see :mod:`~cloudherd.providers.local.sandbox`),
    ``shared`` (host folders every node sees, ``HOST[:NODE]``)."""

    type = "local"
    listing_lag = 0.0  # a node is listed the moment create returns (its node.json is written first)

    async def create(self, request: CreateRequest) -> list[Instance]:
        if not check_request(request, "local"):
            return []
        if request.token:
            existing = await self.list({TAG_TOKEN: request.token})
            if existing:
                return existing
        sshd = self._sshd_binary()
        isolated = self._isolated(sshd)
        if isolated and rootless() and subordinate_ids() is None:
            sshd = None  # OpenSSH's privilege separation needs more than one user: cloudherd's server runs inside
        limits = limits_of(request.size, request.size_need)
        nodes = []
        for index in range(request.count):
            name = request.names[index] if index < len(request.names) else None
            nodes.append(self._prepare_node(request, name, openssh=sshd is not None, isolated=isolated,
                                            limits=limits))
        await asyncio.gather(*(self._launch(node, sshd) for node in nodes), return_exceptions=False)
        return [self._instance(node) for node in nodes]

    async def list(self, tags: Mapping[str, str]) -> list[Instance]:
        found = []
        for folder in sorted(self.root.iterdir()):
            meta = read_meta(folder)
            if meta is not None and has_tags(meta.get("tags", {}), tags):
                found.append(self._instance(meta))
        return found

    async def terminate(self, ids: Sequence[str]) -> None:
        await asyncio.gather(*(asyncio.to_thread(self._terminate_one, node_id) for node_id in ids))

    async def tag(self, ids: Sequence[str], tags: Mapping[str, str]) -> None:
        for node_id in ids:
            meta = self._meta(node_id)
            meta["tags"] = {**meta.get("tags", {}), **tags}
            write_meta(self.root / node_id, meta)

    async def stop(self, ids: Sequence[str]) -> None:
        for node_id in ids:
            meta = self._meta(node_id)
            stop_processes(self.root / node_id, meta)
            meta["stopped"] = True
            write_meta(self.root / node_id, meta)

    async def start(self, ids: Sequence[str]) -> None:
        sshd = self._sshd_binary()
        metas = []
        for node_id in ids:
            meta = self._meta(node_id)
            meta["stopped"] = False
            metas.append(meta)
        await asyncio.gather(*(self._launch(meta, sshd if meta["server"] == "openssh" else None) for meta in metas))

    async def sizes(self, pattern: str | None = None) -> builtins.list[Size]:
        found = [Size("host", float(os.cpu_count() or 1), memory_mb(), {"note": "no limits: the whole computer"})]
        found += [Size(name, float(limit.cpus or 0), int(limit.memory_mib or 0), {"note": "cgroup limits"})
                  for name, limit in SIZES.items() if name != "host"]
        return [size for size in found if matches(pattern, size.name)]

    def take_notices(self) -> builtins.list[str]:
        notices, self._notices = self._notices, []
        return notices

    async def fault(self, node_id: str, kind: str, peer: str | None = None) -> str:
        """Make node ``node_id`` misbehave on purpose (``crash``, ``hang``, ``partition``) or undo it (``heal``);
        returns what was done, in words.  ``peer`` (an address) limits a partition to the traffic between the
        node and that one.  For testing what cloudherd (and a user's health checks) do then."""
        if kind not in FAULTS:
            raise InvalidRequestError(f"unknown fault {kind!r} (known: {', '.join(FAULTS)})")
        meta = self._meta(node_id)
        if kind == "interrupt":
            return await self._interrupt(meta)
        folder = self.root / node_id
        if peer is not None:
            try:
                ipaddress.ip_address(peer)
            except ValueError:
                raise InvalidRequestError(f"not an address to partition from: {peer!r}") from None
            meta["partition_peer"] = peer
        done = await asyncio.to_thread(FAULT_ACTIONS[kind], folder, meta)
        meta.pop("partition_peer", None)
        write_meta(folder, meta)
        return done

    async def _interrupt(self, meta: dict[str, Any]) -> str:
        """A spot machine taken back, as a cloud does it: ended at once, and the reason kept for :meth:`ended`."""
        if meta.get("market") != "spot":
            raise InvalidRequestError(f"local node {meta['name']} is not a spot machine: only those are interrupted")
        ledger = self.root / ENDED
        ledger.mkdir(exist_ok=True)
        (ledger / meta["id"]).write_text(f"{SPOT_INTERRUPTED} (local: the spot market took the machine back)")
        await self.terminate([meta["id"]])
        return "interrupted: the spot machine was taken back and ended"

    async def ended(self, ids: Sequence[str]) -> dict[str, str]:
        """Why interrupted nodes ended (what ``interrupt`` kept); other ended nodes leave nothing to say."""
        found = {}
        for node_id in ids:
            with contextlib.suppress(OSError):
                found[node_id] = (self.root / ENDED / Path(node_id).name).read_text()
        return found

    def leftovers(self) -> builtins.list[tuple[str, str, str]]:
        """What nodes that are gone left on this computer (kind, id, why): network namespaces (with their
        links) whose node folder is gone, and node cgroups with no process.  A reboot clears both; a killed
        cloudherd between a node's end and its cleanup leaves them, and ``gc`` finds them here."""
        root = self.root.resolve()
        found = [("netns", name, "its node is gone (a namespace left by a killed process)")
                 for name in (net.leftovers() if net.unavailable() is None else [])
                 if (made_for := net.owner(name)) is not None and made_for.is_relative_to(root)]
        found += [("cgroup", str(folder), "its node is gone and no process is left in it")
                  for folder in sandbox.stale_cgroups(self._cgroup_prefix())
                  if not (self.root / folder.name.removeprefix(self._cgroup_prefix())).exists()]
        return found

    def remove_leftover(self, kind: str, ident: str) -> None:
        """Remove one of :meth:`leftovers` (found again first: only what still is a leftover goes)."""
        if (kind, ident) not in {(k, i) for k, i, _ in self.leftovers()}:
            return
        if kind == "netns":
            net.release(ident)
        else:
            sandbox.remove_cgroups([ident])

    async def images(self, pattern: str | None = None) -> builtins.list[Image]:
        image = Image("host", "host", {"note": "nodes run this computer's system"})
        return [image] if matches(pattern, image.name) else []

    async def regions(self) -> builtins.list[str]:
        return ["local"]

    async def default_size(self) -> str | None:
        return "host"

    async def open_ports(self, group_tags: Mapping[str, str], ports: Sequence[int]) -> PortsHandle:
        """Nothing to do: a local node's loopback address answers on every port it listens on."""
        wanted = check_ports(ports, "local")
        return PortsHandle("loopback", "loopback", "none", dict(group_tags), tuple(sorted({22, *wanted})))

    async def close_ports(self, group_tags: Mapping[str, str]) -> None:
        """Nothing was opened."""
