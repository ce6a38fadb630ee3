"""Orphans: machines that carry cloudherd's tags but that no infrastructure in the database accounts for.

They appear when state is lost (a deleted database, a different ``CLOUDHERD_DB``) or when someone
else's cloudherd made them.  ``gc`` finds them (``--delete`` removes them); ``adopt`` brings them under
an infrastructure.  Machines of an open intent are in flight, not orphans: the journal settles them.

Network rules are found too: a security group or firewall rule that ``open_ports`` made for a group
(``Provider.list_ports``) and that no live machine of that group uses any more — a crash between opening
the ports and launching, or between terminating and closing, leaves one.  ``--delete`` closes them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cloudherd.engine.context import snapshot
from cloudherd.engine.templates import new_indices
from cloudherd.errors import UsageError
from cloudherd.lifecycle import InfraState, NodeState
from cloudherd.providers import Provider, make_provider
from cloudherd.providers.base import (
    TAG_GROUP,
    TAG_INFRA,
    TAG_INTENT,
    Capability,
    Instance,
    InstanceState,
    PortsHandle,
)
from cloudherd.providers.wrapper import ProviderWrapper
from cloudherd.state.models import Infrastructure
from cloudherd.state.repo import Store


@dataclass
class Orphan:
    """A machine (``kind`` "machine") or a network rule ``open_ports`` made (``ports`` set; ``kind`` its kind:
    "security-group", "firewall"), seen as an :class:`Instance` so that every orphan has one shape."""

    provider: str
    instance: Instance
    why: str
    kind: str = "machine"
    ports: PortsHandle | None = None

    @classmethod
    def of_ports(cls, provider: str, handle: PortsHandle, why: str) -> Orphan:
        instance = Instance(id=handle.id, name=handle.name, state=InstanceState.DEAD, address=None,
                            tags=dict(handle.tags), extra={"ports": list(handle.ports)})
        return cls(provider, instance, why, handle.kind, handle)

    def as_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "id": self.instance.id, "name": self.instance.name,
                "state": self.instance.state, "address": self.instance.address,
                "infra": self.instance.tags.get(TAG_INFRA), "group": self.instance.tags.get(TAG_GROUP),
                "why": self.why, "kind": self.kind}


def known_providers(store: Store, only: str | None = None) -> dict[str, Provider]:
    """Providers to look in: ``local``, plus every provider the recorded infrastructures used (with their
    settings), or just ``only`` (a provider name from those, or a type configured from the environment)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {"local": ("local", {})}
    signatures = {("local", "{}")}
    for infra in store.infrastructures(include_destroyed=True):
        try:
            spec = snapshot(infra).spec
        except Exception:  # an old snapshot that no longer loads: skip its providers
            continue
        for group in spec.groups.values():
            config = spec.providers.get(group.provider)
            kind, settings = (config.type, config.settings) if config else (group.provider, {})
            signature = (kind, json.dumps(settings, sort_keys=True, default=str))
            if signature in signatures:
                continue
            signatures.add(signature)
            label = group.provider if group.provider not in found else f"{group.provider}#{len(found)}"
            found[label] = (kind, settings)
    if only:
        found = {k: v for k, v in found.items() if k.split("#")[0] == only or v[0] == only} or {only: (only, {})}
    return {label: make_provider(label.split("#")[0], kind, settings) for label, (kind, settings) in found.items()}


async def find_orphans(store: Store, provider: str | None = None) -> list[Orphan]:
    infras = {i.id: i for i in store.infrastructures(include_destroyed=True)}
    tracked: set[str] = set()  # provider ids of live nodes, whatever infrastructure tag the machine carries
    open_intents = store.open_intents()
    in_flight = {intent.id for intent in open_intents}
    busy = {intent.infrastructure_id for intent in open_intents}  # their network rules may be brand new
    for infra in infras.values():
        for node in store.nodes(infra.id):
            if node.provider_id and node.state != NodeState.TERMINATED:
                tracked.add(node.provider_id)
    orphans: list[Orphan] = []
    providers = known_providers(store, provider)
    seen: set[str] = set()
    try:
        for name, driver in providers.items():
            listed = await driver.list({})
            for instance in listed:
                infra_id = instance.tags.get(TAG_INFRA)
                if not infra_id or instance.id in seen or instance.state == InstanceState.TERMINATED:
                    continue
                seen.add(instance.id)
                if instance.tags.get(TAG_INTENT) in in_flight or instance.id in tracked:
                    continue
                owner = infras.get(infra_id)
                if owner is None:
                    why = f"its infrastructure {infra_id} is not in this database"
                elif owner.state == InfraState.DESTROYED:
                    why = f"its infrastructure {infra_id} ({owner.name}) is destroyed"
                else:
                    why = f"no node of {infra_id} ({owner.name}) is this machine"
                orphans.append(Orphan(name, instance, why))
            if driver.supports(Capability.PORTS):
                orphans += await _ports_orphans(name, driver, listed, infras, busy)
            orphans += _host_leftovers(name, driver)
    finally:
        for driver in providers.values():
            await driver.close()
    return orphans


LEFTOVER_KINDS = ("netns", "cgroup")


def _inner(driver: Provider) -> Provider:
    return driver.driver if isinstance(driver, ProviderWrapper) else driver


def _host_leftovers(name: str, driver: Provider) -> list[Orphan]:
    """What gone nodes left on this computer (a local driver's network namespaces, cgroups), as orphans of
    their kind: asked of any driver that keeps such things (``leftovers()``), not of one driver by type."""
    leftovers = getattr(_inner(driver), "leftovers", None)
    if leftovers is None:
        return []
    return [Orphan(name, Instance(id=ident, name=ident, state=InstanceState.DEAD, address=None), why, kind)
            for kind, ident, why in leftovers()]


async def _ports_orphans(name: str, driver: Provider, listed: Sequence[Instance], infras: dict[str, Infrastructure],
                         busy: set[str]) -> list[Orphan]:
    """The network rules of ``driver`` whose group has no live machine (and no create in flight)."""
    live = {(i.tags.get(TAG_INFRA), i.tags.get(TAG_GROUP)) for i in listed if i.alive or i.state == "stopped"}
    found = []
    for handle in await driver.list_ports({}):
        infra_id, group = handle.tags.get(TAG_INFRA), handle.tags.get(TAG_GROUP)
        if not infra_id or (infra_id, group) in live or infra_id in busy:
            continue
        owner = infras.get(infra_id)
        if owner is None:
            why = f"its infrastructure {infra_id} is not in this database"
        elif owner.state == InfraState.DESTROYED:
            why = f"its infrastructure {infra_id} ({owner.name}) is destroyed"
        else:
            why = f"no machine of {infra_id} ({owner.name}) group {group} uses it"
        found.append(Orphan.of_ports(name, handle, why))
    return found


async def delete_orphans(store: Store, orphans: Sequence[Orphan]) -> int:
    by_provider: dict[str, list[str]] = {}
    rules: dict[str, list[PortsHandle]] = {}
    leftovers = [o for o in orphans if o.kind in LEFTOVER_KINDS]
    for orphan in orphans:
        if orphan.kind in LEFTOVER_KINDS:
            continue
        if orphan.ports is not None:
            rules.setdefault(orphan.provider, []).append(orphan.ports)
        else:
            by_provider.setdefault(orphan.provider, []).append(orphan.instance.id)
    providers = known_providers(store)
    try:
        for name, ids in by_provider.items():
            driver = providers.get(name) or make_provider(name, name, {})
            await driver.terminate(ids)
            store.add_event(None, "gc", f"terminated {len(ids)} orphan(s) on {name}: {', '.join(ids)}")
        for name, handles in rules.items():  # after the machines: a rule goes once nothing uses it
            driver = providers.get(name) or make_provider(name, name, {})
            for handle in handles:
                await driver.close_ports(handle.tags)
            store.add_event(None, "gc", f"closed {len(handles)} orphan network rule(s) on {name}: "
                            f"{', '.join(h.name for h in handles)}")
        for orphan in leftovers:
            keeper = _inner(providers.get(orphan.provider) or make_provider(orphan.provider, "local", {}))
            remove = getattr(keeper, "remove_leftover", None)
            if remove is not None:
                remove(orphan.kind, orphan.instance.id)
        if leftovers:
            store.add_event(None, "gc", f"removed {len(leftovers)} leftover(s) of gone local nodes: "
                            f"{', '.join(o.instance.id for o in leftovers)}")
    finally:
        for driver in providers.values():
            await driver.close()
    return sum(len(ids) for ids in by_provider.values()) + sum(len(h) for h in rules.values()) + len(leftovers)


async def adopt(store: Store, infra: Infrastructure, group: str, ids: Sequence[str]) -> list[str]:
    """Make orphans ``ids`` nodes of ``group`` in ``infra`` (``booting``: the next ``up`` deploys them)."""
    row = next((g for g in infra.groups if g.name == group), None)
    if row is None:
        raise UsageError(f"no group '{group}' in {infra.name} (groups: {', '.join(g.name for g in infra.groups)})")
    orphans = {o.instance.id: o for o in await find_orphans(store) if o.kind == "machine"}  # machines only
    missing = [i for i in ids if i not in orphans]
    if missing:
        raise UsageError(f"not orphans (see `cloudherd gc`): {', '.join(missing)}")
    nodes = store.nodes(infra.id)
    free = iter(new_indices(nodes, group, len(ids)))
    wrong = [i for i in ids if orphans[i].provider.split("#")[0] != row.provider]
    if wrong:
        raise UsageError(f"group {group} uses provider {row.provider}; {', '.join(wrong)} are on another provider")
    providers = known_providers(store, row.provider)
    try:  # retag first: from now on the infrastructure finds them by its own tag
        driver = next(iter(providers.values()))
        await driver.tag(list(ids), {TAG_INFRA: infra.id, TAG_GROUP: group})
    finally:
        for each in providers.values():
            await each.close()
    made = []
    for instance_id in ids:
        orphan = orphans[instance_id]
        index = next(free)
        name = f"{infra.name}-{group}-{index}"
        store.add_nodes(infra.id, [{
            "group_name": group, "name": name, "index": index, "provider": row.provider,
            "provider_id": instance_id, "state": "booting", "address": orphan.instance.address,
            "private_address": orphan.instance.private_address, "port": orphan.instance.port,
            "ssh_user": orphan.instance.ssh_user, "host_key": orphan.instance.host_key,
            "workdir": orphan.instance.workdir,
        }])
        made.append(name)
    store.add_event(infra.id, "adopt", f"adopted {', '.join(ids)} into group {group} as {', '.join(made)}")
    return made
