"""The ``gce`` driver: instances made in one bulkInsert (on-demand or Spot VMs), listed by label, stopped, started
and deleted; a Spot VM GCE took back told by the zone's ``compute.instances.preempted`` operations."""

from __future__ import annotations

import builtins
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cloudherd.providers.base import (
    SPOT_INTERRUPTED,
    CreateRequest,
    Instance,
    InstanceState,
    InvalidRequestError,
    ProviderError,
)
from cloudherd.providers.gce.api import PREEMPTED, parse_time
from cloudherd.providers.gce.catalog import DEFAULT_IMAGE, GceCatalog
from cloudherd.providers.gce.labels import decode_labels, encode_labels, instance_name, request_id
from cloudherd.providers.gce.network import RULE_PREFIX, GceNetwork
from cloudherd.providers.toolkit import check_login_name, check_ports, check_request

log = logging.getLogger(__name__)

_P, _R, _S = InstanceState.PENDING, InstanceState.RUNNING, InstanceState.STOPPED
STATES = {"PROVISIONING": _P, "STAGING": _P, "REPAIRING": _P, "RUNNING": _R,
          "STOPPING": _S, "SUSPENDING": _S, "SUSPENDED": _S, "TERMINATED": _S}

_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
SPOT, ON_DEMAND = "spot", "on-demand"


class GceProvider(GceNetwork, GceCatalog):
    """Compute Engine in one zone; bulk calls, typed errors."""

    type = "gce"

    async def create(self, request: CreateRequest) -> builtins.list[Instance]:
        if not check_request(request, "gce"):
            return []
        spot = _spot(request)
        user = request.ssh_user
        key = request.ssh_public_key.strip()
        if key:
            check_login_name(user, "gce", _USER_RE)
        labels = encode_labels(request.tags)
        check_ports(request.ports, "gce")
        size = await self._size_for(request)
        source_image = self.source_image(request.image or str(self.settings.get("image") or DEFAULT_IMAGE), size)
        names = [instance_name(n) for n in request.names]
        if len(set(names)) != len(names):
            raise InvalidRequestError("gce: the instance names are not unique (after making them valid GCE names)")
        network_tags: builtins.list[str] = []
        if request.ports and self.supports("ports"):
            network_tags.append((await self.open_ports(request.tags, request.ports)).name)

        compute = self._compute
        props = compute.InstanceProperties(
            machine_type=size, labels=labels, disks=[self._boot_disk(source_image)],
            network_interfaces=[self._nic()],
        )
        items = [compute.Items(key="ssh-keys", value=f"{user}:{key}")] if key else []
        if request.user_data:  # GCE's images run cloud-init (or the guest agent's startup) on this key
            items.append(compute.Items(key="user-data", value=request.user_data))
        if items:
            props.metadata = compute.Metadata(items=items)
        if network_tags:
            props.tags = compute.Tags(items=network_tags)
        if spot:  # deleted when taken back: no stopped VM left behind, billed for its disk
            props.scheduling = compute.Scheduling(provisioning_model="SPOT", instance_termination_action="DELETE",
                                                  automatic_restart=False, on_host_maintenance="TERMINATE")
        resource = compute.BulkInsertInstanceResource(count=request.count, min_count=request.count,
                                                      instance_properties=props)
        if names:
            resource.per_instance_properties = {
                n: compute.BulkInsertInstanceResourcePerInstanceProperties(name=n) for n in names}
            mine = re.compile("|".join(map(re.escape, names)))
        else:
            prefix = "ch-" + hashlib.sha256((request.token or uuid.uuid4().hex).encode()).hexdigest()[:8] + "-"
            resource.name_pattern = prefix + "#" * max(4, len(str(request.count)))
            mine = re.compile(re.escape(prefix) + r"\d+")
        bulk = compute.BulkInsertInstanceRequest(project=self.project, zone=self.zone,
                                                 bulk_insert_instance_resource_resource=resource)
        if request.token:  # a Spot create's own: refused, it is asked again on-demand with the same token
            bulk.request_id = request_id(request.token + ("\nspot" if spot else ""), names)
        deadline = time.monotonic() + self.operation_timeout
        log.info("gce: bulkInsert of %d %s%s instances in %s/%s", request.count, size, " Spot" if spot else "",
                 self.project, self.zone)

        def run() -> builtins.list[Any]:
            op = self._client("InstancesClient").bulk_insert_unary(request=bulk, timeout=self.request_timeout)
            self._wait(op, "bulkInsert", deadline)
            while True:
                found = [i for i in self._list_raw(request.tags) if mine.fullmatch(i.name)]
                waiting = [i for i in found if STATES.get(i.status) == "pending" and not _addresses(i)[0]]
                if len(found) >= request.count and not waiting:
                    return found
                if time.monotonic() + self.poll_interval > deadline:
                    log.warning("gce: %d of %d instances listed with an address after bulkInsert",
                                len(found) - len(waiting), request.count)
                    return found
                time.sleep(self.poll_interval)

        raw = await self._run("bulkInsert", run)
        order = {n: i for i, n in enumerate(names)}
        raw.sort(key=lambda i: (order.get(i.name, len(order)), i.name))
        ssh_user = user if key else None
        return [self._instance(i, ssh_user) for i in raw]

    async def list(self, tags: Mapping[str, str]) -> builtins.list[Instance]:
        raw = await self._run("instances.list", lambda: self._list_raw(tags))
        going = {i.name: i for i in raw if _spot_going(i)}
        if going:  # a Spot VM stopping after GCE took it back is being deleted: gone, as ended() will say
            try:
                preempted = await self._run("zoneOperations.list", self._preemptions)
            except ProviderError as exc:  # not known for sure: listed as they are (stopping)
                log.warning("gce: could not tell whether %s were preempted: %s", ", ".join(sorted(going)), exc)
                preempted = {}
            gone = {n for n, i in going.items() if n in preempted and _after(preempted[n], i.creation_timestamp)}
            raw = [i for i in raw if i.name not in gone]
        return sorted((self._instance(i) for i in raw), key=lambda i: i.id)

    async def ended(self, ids: Sequence[str]) -> dict[str, str]:
        """The Spot VMs among ``ids`` (instance names) that GCE took back: a ``compute.instances.preempted``
        operation of the zone names them.  GCE says nothing more of a deleted VM: the others are left out."""
        wanted = set(ids)
        if not wanted:
            return {}
        preempted = await self._run("zoneOperations.list", self._preemptions)
        return {name: f"{SPOT_INTERRUPTED} ({PREEMPTED} at {op.insert_time or 'a time GCE did not say'})"
                for name, op in preempted.items() if name in wanted}

    async def terminate(self, ids: Sequence[str]) -> None:
        names = set(ids)
        if not names:
            return
        rules: set[str] = set()
        if self.supports("ports"):  # the rules of the group(s) going, closed below once nothing carries them
            listed = await self._run("instances.list", lambda: self._list_raw({}))
            rules = {t for i in listed if i.name in names for t in (i.tags.items if i.tags else [])
                     if t.startswith(RULE_PREFIX)}
        await self._each("delete", ids, missing_ok=True)
        if rules:
            try:
                await self._close_rules(rules)
            except ProviderError as exc:  # cleanup is best effort; the instances are gone
                log.warning("gce: could not delete the firewall rules %s: %s", ", ".join(sorted(rules)), exc)

    async def stop(self, ids: Sequence[str]) -> None:
        await self._each("stop", ids, missing_ok=False)

    async def start(self, ids: Sequence[str]) -> None:
        await self._each("start", ids, missing_ok=False)

    def _instance(self, item: Any, ssh_user: str | None = None) -> Instance:
        public, private = _addresses(item)
        status = str(item.status or "PROVISIONING")
        if ssh_user is None and item.metadata:
            for entry in item.metadata.items:
                if entry.key == "ssh-keys" and ":" in (entry.value or ""):
                    ssh_user = entry.value.split(":", 1)[0].strip() or None
                    break
        return Instance(
            id=item.name, name=item.name, state=STATES.get(status, InstanceState.PENDING),
            address=public or private, port=22, private_address=private, tags=decode_labels(item.labels),
            ssh_user=ssh_user,
            extra={"gce_id": str(item.id) if item.id else None, "zone": (item.zone or self.zone).rsplit("/", 1)[-1],
                   "type": (item.machine_type or "").rsplit("/", 1)[-1] or None, "gce_status": status,
                   "created": item.creation_timestamp or None, "project": self.project, "market": _market(item)},
        )


def _spot(request: CreateRequest) -> bool:
    """Whether the request is for Spot VMs; what GCE cannot do refused before any call."""
    if request.market not in (SPOT, ON_DEMAND):
        raise InvalidRequestError(f"gce: unknown market '{request.market}' (spot or on-demand)")
    if request.market == SPOT and request.max_price is not None:
        raise InvalidRequestError(
            f"gce: Spot VMs have no maximum price (max_price {request.max_price:g} asked): GCE bills them at its "
            "current Spot price and takes no bid (maxRunDuration limits how long a VM runs, not what it costs); "
            "remove max_price from the group's market")
    return request.market == SPOT


def _market(item: Any) -> str:
    """spot for a Spot VM (or a legacy preemptible one, taken back the same way), else on-demand."""
    scheduling = item.scheduling
    return SPOT if scheduling and (scheduling.provisioning_model == "SPOT" or scheduling.preemptible) else ON_DEMAND


def _spot_going(item: Any) -> bool:
    """A Spot VM that is stopping or stopped and which GCE deletes when it takes it back."""
    return (_market(item) == SPOT and item.status in ("STOPPING", "TERMINATED")
            and item.scheduling.instance_termination_action == "DELETE")


def _after(op: Any, created: str | None) -> bool:
    """Whether the operation is of this VM's life, not of an earlier VM of the same name."""
    made, when = parse_time(created), parse_time(op.insert_time)
    return made is None or when is None or when >= made


def _addresses(item: Any) -> tuple[str | None, str | None]:
    public = private = None
    for nic in item.network_interfaces:
        private = private or nic.network_i_p or None
        for config in nic.access_configs:
            public = public or config.nat_i_p or None
    return public, private
