"""The ``aws`` driver: instances made, listed, tagged, stopped, started and terminated in bulk calls."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cloudherd.providers.aws.api import FILTER_BATCH, LIVE_STATES
from cloudherd.providers.aws.catalog import DEFAULT_IMAGE, DEFAULT_SIZE, Ec2Catalog
from cloudherd.providers.aws.network import Ec2Network
from cloudherd.providers.aws.node_timer import BOOT_SCRIPT, timer_params
from cloudherd.providers.base import (
    SPOT_INTERRUPTED,
    TAG_DEADLINE,
    CreateRequest,
    Instance,
    InstanceState,
    InvalidRequestError,
    ProviderError,
)
from cloudherd.providers.toolkit import boot_data, check_login_name, check_ports, check_request

log = logging.getLogger(__name__)

STATES = {"pending": InstanceState.PENDING, "running": InstanceState.RUNNING, "stopping": InstanceState.STOPPED,
          "stopped": InstanceState.STOPPED, "shutting-down": InstanceState.TERMINATED,
          "terminated": InstanceState.TERMINATED}
SPOT = "spot"
SPOT_TERMINATION = "Server.SpotInstanceTermination"  # the state reason of a spot instance EC2 took back


class AwsProvider(Ec2Network, Ec2Catalog):
    """EC2 in one region; bulk calls, typed errors (retried by the rate budget)."""

    type = "aws"
    node_timer = True  # Capability.NODE_TIMER: see node_timer.py

    def __init__(self, name: str = "aws", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self._key_pairs: set[str] = set()  # the EC2 key pairs this provider object imported (or found there)
        self._notices: list[str] = []

    def take_notices(self) -> list[str]:
        notices, self._notices = self._notices, []
        return notices

    async def create(self, request: CreateRequest) -> list[Instance]:
        if not check_request(request, "aws"):
            return []
        ports = check_ports(request.ports, "aws")
        if request.ssh_public_key.strip() and self.settings.get("cloud_init", True):
            check_login_name(request.ssh_user, "aws")
        image = request.image or str(self.settings.get("image") or DEFAULT_IMAGE)
        if request.size:
            size = request.size
        elif request.size_need is not None:
            size = await self._size_for(request.size_need, image)
        else:
            size = DEFAULT_SIZE
        image_id = await self._image_id(image, size)
        if self.settings.get("key_name"):
            key_name: str | None = str(self.settings["key_name"])
        else:
            key_name = await self._key_pair(request.ssh_public_key) if request.ssh_public_key.strip() else None

        tags = dict(request.tags)
        if request.count == 1 and request.names:
            tags["Name"] = request.names[0]
        timer, notice = timer_params(request, tags)
        if notice:
            self._notices.append(notice)
        if timer:
            tags[TAG_DEADLINE] = str(request.deadline)
        params: dict[str, Any] = {
            "ImageId": image_id, "InstanceType": size, "MinCount": request.count, "MaxCount": request.count,
            "TagSpecifications": [{"ResourceType": "instance",
                                   "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
            # the same token on every attempt: a retried RunInstances returns the first one's instances
            "ClientToken": _client_token(_market_token(request)) if request.token else f"ch-{uuid.uuid4().hex}",
        }
        if request.market == SPOT:
            params["InstanceMarketOptions"] = spot_options(request.max_price)
        params.update(timer)
        if key_name:
            params["KeyName"] = key_name
        group_ids = [str(g) for g in self.settings.get("security_group_ids") or []]
        made_group: str | None = None
        if self.settings.get("manage_security_group", True):
            group_id, made = await self._security_group(request.tags, ports)
            made_group = group_id if made else None  # a failed launch takes it back: open_ports is undone
            group_ids.insert(0, group_id)
            _vpc, subnet = await self._network()
            if subnet:
                params["SubnetId"] = subnet
        elif self._subnet_setting():
            params["SubnetId"] = self._subnet_setting()
        if group_ids:
            params["SecurityGroupIds"] = group_ids
        ssh_user = None
        login = self.settings.get("cloud_init", True) and request.ssh_public_key.strip()
        if login or request.user_data or timer:
            params["UserData"] = boot_data(request, "aws", login=bool(login),
                                           scripts=[BOOT_SCRIPT] if timer else ())
            ssh_user = request.ssh_user if login else None
        try:
            response = await self._call("run_instances", **params)
        except ProviderError:
            if made_group:  # nothing uses the group this create made: do not leave it behind
                await self._delete_groups([made_group])
            raise
        raw = sorted(response.get("Instances", []), key=lambda i: (i.get("AmiLaunchIndex", 0), i["InstanceId"]))
        instances = [_instance(item, ssh_user) for item in raw]
        if request.count > 1 and request.names:
            await self._name_each(instances, request.names)
        return instances

    async def list(self, tags: Mapping[str, str]) -> list[Instance]:
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
        filters.append({"Name": "instance-state-name", "Values": LIVE_STATES})
        items = await self._instances(Filters=filters, MaxResults=1000)
        return sorted((_instance(item) for item in items), key=lambda i: i.id)

    async def ended(self, ids: Sequence[str]) -> dict[str, str]:
        """EC2 keeps describing a terminated instance for a while, with its state reason: a spot interruption is
        told by it.  Asked by a filter, which (unlike InstanceIds) does not fail on ids EC2 no longer knows."""
        unique = list(dict.fromkeys(ids))
        reasons: dict[str, str] = {}
        for start in range(0, len(unique), FILTER_BATCH):
            batch = unique[start:start + FILTER_BATCH]
            items = await self._instances(Filters=[{"Name": "instance-id", "Values": batch}], MaxResults=1000)
            reasons.update((item["InstanceId"], why) for item in items if (why := end_reason(item)))
        return reasons

    async def terminate(self, ids: Sequence[str]) -> None:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return
        try:
            groups = await self._managed_groups_of(unique)
        except ProviderError as exc:  # cleanup is best effort; terminating is not
            log.warning("aws: could not look up the security groups of %d instances: %s", len(unique), exc)
            groups = []
        await self._bulk("terminate_instances", unique)
        if groups:
            await self._cleanup_groups(groups)

    async def tag(self, ids: Sequence[str], tags: Mapping[str, str]) -> None:
        if ids and tags:
            await self._call("create_tags", Resources=list(ids),
                             Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    async def stop(self, ids: Sequence[str]) -> None:
        await self._bulk("stop_instances", ids)

    async def start(self, ids: Sequence[str]) -> None:
        await self._bulk("start_instances", ids)

    async def _name_each(self, instances: Sequence[Instance], names: Sequence[str]) -> None:
        limit = asyncio.Semaphore(8)

        async def name_one(instance: Instance, name: str) -> None:
            async with limit:
                await self._call("create_tags", Resources=[instance.id], Tags=[{"Key": "Name", "Value": name}])
            instance.name = name
            instance.tags["Name"] = name

        results = await asyncio.gather(*(name_one(i, n) for i, n in zip(instances, names, strict=False)),
                                       return_exceptions=True)
        for instance, result in zip(instances, results, strict=False):
            if isinstance(result, BaseException):
                log.warning("could not name %s: %s", instance.id, result)

    async def _key_pair(self, public_key: str) -> str:
        material = public_key.strip()
        name = "cloudherd-" + hashlib.sha256(material.encode()).hexdigest()[:12]
        if name in self._key_pairs:
            return name
        try:
            await self._call("import_key_pair", KeyName=name, PublicKeyMaterial=material.encode())
        except InvalidRequestError as exc:
            if exc.code != "InvalidKeyPair.Duplicate":
                raise
        self._key_pairs.add(name)
        return name


def _instance(item: dict[str, Any], ssh_user: str | None = None) -> Instance:
    tags = {t["Key"]: t["Value"] for t in item.get("Tags", []) or []}
    public, private = item.get("PublicIpAddress"), item.get("PrivateIpAddress")
    state = str(item.get("State", {}).get("Name", "pending"))
    placement = item.get("Placement", {})
    launched: Any = item.get("LaunchTime")
    return Instance(
        id=item["InstanceId"], name=tags.get("Name") or item["InstanceId"],
        state=STATES.get(state, InstanceState.PENDING), address=public or private, port=22,
        private_address=private, tags=tags, ssh_user=ssh_user,
        extra={"type": item.get("InstanceType"), "image": item.get("ImageId"),
               "zone": placement.get("AvailabilityZone"),
               "launched": launched.isoformat() if hasattr(launched, "isoformat") else launched,
               "public_dns": item.get("PublicDnsName") or None, "aws_state": state,
               "market": SPOT if item.get("InstanceLifecycle") == SPOT else "on-demand"},
    )


def spot_options(max_price: float | None) -> dict[str, Any]:
    """RunInstances' market options of a spot create: a one-time request (a replacement is the engine's to make,
    not a persistent request's), terminated when taken back (a stopped spot machine still holds its disk and its
    place in the group); no ``MaxPrice`` caps it at the on-demand price, as EC2 does by default."""
    spot: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
    if max_price:
        spot["MaxPrice"] = str(max_price)
    return {"MarketType": SPOT, "SpotOptions": spot}


def end_reason(item: Mapping[str, Any]) -> str | None:
    """Why a described instance ended, where it was a spot interruption (``spot interruption (<EC2's reason>)``);
    None for any other (a user's terminate, one still alive): only an interruption changes what the engine does."""
    reason = item.get("StateReason") or {}
    code, message = str(reason.get("Code") or ""), str(reason.get("Message") or "")
    if code != SPOT_TERMINATION:
        return None
    # EC2's message begins with the code already ("Server.SpotInstanceTermination: Spot instance termination")
    said = message if message.startswith(code) else ": ".join(p for p in (code, message) if p)
    return f"{SPOT_INTERRUPTED} ({said})"


def _market_token(request: CreateRequest) -> str:
    """The create's token, another for a spot create: the engine asks again on-demand with the same request
    token when spot is refused, and EC2 may hold a token to the parameters it first came with."""
    token = request.token or ""
    return f"{token}-spot" if request.market == SPOT else token


def _client_token(token: str) -> str:
    """EC2 takes up to 64 ASCII characters; longer or odd tokens are hashed (still deterministic)."""
    if len(token) <= 64 and token.isascii() and token.isprintable():
        return token
    return "ch-" + hashlib.sha256(token.encode()).hexdigest()[:61]
