"""The ``aws`` provider: EC2 instances through boto3 (imported lazily: ``pip install 'cloudherd[aws]'``).

Settings: ``region`` (else ``AWS_DEFAULT_REGION`` / ``AWS_REGION``, else us-east-1), ``endpoint_url`` (else
boto3 honours ``AWS_ENDPOINT_URL`` itself), ``image`` (default image, ``ubuntu-24.04``), ``subnet_id`` (or
``subnet``), ``vpc``, ``security_group_ids`` (a list, added to ours), ``allow_from`` (CIDR or list of CIDRs the
group's ports are open to, default ``0.0.0.0/0``), ``manage_security_group`` (default true),
``security_group_cleanup_wait`` (seconds, default 120), ``architecture``, ``cloud_init`` (default true, see
below), ``key_name`` (an EC2 key pair of yours for the instances, instead of one imported from cloudherd's
key).  Retries are the rate budget's (``retries``, ``backoff``, ``backoff_max`` of the provider entry).
Credentials come from boto3's own chain, or from the environment variables that ``access_key_id_env`` and
``secret_access_key_env`` name (an Occopus auth-data file puts them there); they never appear in messages.

Decisions:

* Every EC2 call goes through :meth:`AwsProvider._run`: one attempt (boto3's own retries are off,
  ``total_max_attempts=1``, so one attempt is one HTTP request), its failure a typed error carrying EC2's
  code: throttling (``RequestLimitExceeded``, ``Throttling``…) is a :class:`ThrottledError`, 5xx answers and
  dropped connections a :class:`TransientError` — both retried by the rate budget — and capacity, quota, auth
  and invalid requests are never retried (the engine fails over on them).  The error code wins over the HTTP
  status: EC2 sends ``InsufficientInstanceCapacity`` as a 500.
* ``create`` makes all instances in ONE ``run_instances`` call with a ``ClientToken`` (from ``request.token``;
  the rate budget gives every create one before its first attempt), the same on every retry, so a retried
  call cannot launch twice on real EC2.
  Every instance carries the request's tags.  ``Name``: with one instance it is set in the same call; with
  several, ``create_tags`` is called once per instance afterwards (best effort: a failure there is logged, the
  instances are still returned).
* Security group (:meth:`open_ports` / :meth:`close_ports`): each (infra, group) gets
  ``cloudherd-<infra>-<group>`` in the default VPC (or the ``vpc`` / the subnet's VPC), tagged with the group's
  tags and ``cloudherd:managed``, open on TCP 22 and the ports from ``allow_from``; found again by name, newly
  listed ports are added (none are removed).  ``create`` opens it; a group made by a create whose
  ``run_instances`` fails is deleted again.  ``terminate`` closes the cloudherd groups of the terminated
  instances once no instance uses them any more (waiting up to ``security_group_cleanup_wait`` for
  shutting-down ones; best effort, failures are logged).
* Size by need: with no ``request.size`` and a ``request.size_need``, the smallest current-generation,
  on-demand, non-metal type of the image's architecture that fits (``smallest_fitting``).  The types with
  exactly ``ceil(cpus)`` vCPUs are asked for first (a server-side filter, one quick call); only when none fits
  is the whole catalog read.  Both are cached on the provider object.
* Images: an ``ami-...`` id is used as is; an alias (``debian-12``, ``ubuntu-24.04``, ``al2023``, ``al2``)
  is resolved to the newest matching public image of its publisher, for the size's architecture
  (Graviton sizes such as ``t4g.*`` get arm64).
* The login user: with ``cloud_init`` on, user data asks cloud-init to create ``request.ssh_user`` with the
  request's key and password-less sudo, so the same user works on every image; the key is also imported as
  an EC2 key pair (``cloudherd-<12 hex of its sha256>``) for the image's default user.
* ``list`` returns pending, running, stopping and stopped instances (shutting-down ones are on their way
  out and are left out like terminated ones); ``stopping`` is reported as ``stopped``.  One
  ``DescribeInstances`` call per 1000 instances.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import logging
import math
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    NotFoundError,
    PortsHandle,
    Provider,
    ProviderError,
    QuotaError,
    Size,
    SizeNeed,
    ThrottledError,
    TransientError,
    matches,
    smallest_fitting,
)
from cloudherd.providers.toolkit import (
    SSH_PORT,
    boot_data,
    check_login_name,
    check_ports,
    check_request,
    error_from_status,
    import_sdk,
    one_line,
    safe_url,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_REGION = "us-east-1"
DEFAULT_SIZE = "t3.micro"
DEFAULT_IMAGE = "ubuntu-24.04"
BATCH = 1000  # the most ids EC2 takes in one start/stop/terminate call
FILTER_BATCH = 200  # ids per filter value list
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
STATES = {"pending": InstanceState.PENDING, "running": InstanceState.RUNNING, "stopping": InstanceState.STOPPED,
          "stopped": InstanceState.STOPPED, "shutting-down": InstanceState.TERMINATED,
          "terminated": InstanceState.TERMINATED}
GONE_CODES = {"InvalidInstanceID.NotFound", "IncorrectInstanceState"}

CANONICAL = "099720109477"
DEBIAN = "136693071363"
AMAZON = "amazon"

CAPACITY_CODES = {"InsufficientInstanceCapacity", "InsufficientHostCapacity", "Unsupported"}
QUOTA_CODES = {"InstanceLimitExceeded", "VcpuLimitExceeded"}
THROTTLE_CODES = {"RequestLimitExceeded", "Throttling", "ThrottlingException"}
AUTH_CODES = {"AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch",
              "ExpiredToken"}
NOT_FOUND_CODES = {"InvalidInstanceID.NotFound", "InvalidAMIID.NotFound"}
TRANSIENT_CODES = {"ServiceUnavailable", "Unavailable", "InternalError", "InternalFailure", "RequestTimeout",
                   "RequestTimeoutException"}
_ARM_SIZE_RE = re.compile(r"^(a1|[a-z]+\d+g[a-z]*)\.")

DEFAULT_CLEANUP_WAIT = 120.0
CLEANUP_POLL = 5.0
GROUP_PREFIX = "cloudherd-"
TAG_MANAGED = "cloudherd:managed"  # on the security groups cloudherd made (and may delete)
_GROUP_NAME_BAD = re.compile(r"[^A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]")


_loader: list[Any] = []  # botocore's data loader, shared by every provider's session
_loader_lock = threading.Lock()


def _session(boto3: Any) -> Any:
    """A new boto3 session (its own credentials and config) that shares the parsed API models of the others:
    reading EC2's model again costs ~0.6 s per session."""
    import botocore.session

    core = botocore.session.get_session()
    with _loader_lock:
        if _loader:
            core.register_component("data_loader", _loader[0])
        else:
            _loader.append(core.get_component("data_loader"))
    return boto3.session.Session(botocore_session=core)


class AwsProvider(Provider):
    """EC2 in one region; bulk calls, typed errors (retried by the rate budget)."""

    type = "aws"

    def __init__(self, name: str = "aws", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self._boto3 = import_sdk("boto3", "aws", "boto3")
        self.region = str(self.settings.get("region") or os.environ.get("AWS_DEFAULT_REGION")
                          or os.environ.get("AWS_REGION") or DEFAULT_REGION)
        endpoint = self.settings.get("endpoint_url")
        self.endpoint_url = str(endpoint) if endpoint else None
        self.cleanup_wait = self._number("security_group_cleanup_wait", DEFAULT_CLEANUP_WAIT, minimum=0.0)
        allow = self.settings.get("allow_from") or ["0.0.0.0/0"]
        self.allow_from = [str(c) for c in ([allow] if isinstance(allow, str) else allow)]
        self._client_obj: Any = None
        self._lock = threading.Lock()
        # caches, one set per provider object
        self._catalog_all: list[Size] | None = None
        self._eligible: dict[tuple[str, int | None], list[Size]] = {}  # (arch, vCPUs or None for all) -> types
        self._catalog_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary())
        self._image_arch: dict[str, str] = {}
        self._key_pairs: set[str] = set()
        self._network_ids: tuple[str, str | None] | None = None

    def _number(self, key: str, default: float, minimum: float) -> float:
        raw = self.settings.get(key)
        if raw is None:
            return default
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if not value >= minimum:
            raise InvalidRequestError(f"aws provider {self.name}: setting '{key}' must be a number ≥ {minimum:g}, "
                                      f"not {raw!r}")
        return value

    def supports(self, capability: str) -> bool:
        if capability == "ports":
            return bool(self.settings.get("manage_security_group", True))
        return super().supports(capability)

    # -- interface -----------------------------------------------------------------------------------

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
        params: dict[str, Any] = {
            "ImageId": image_id, "InstanceType": size, "MinCount": request.count, "MaxCount": request.count,
            "TagSpecifications": [{"ResourceType": "instance",
                                   "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
            # the same token on every attempt: a retried RunInstances returns the first one's instances
            "ClientToken": _client_token(request.token) if request.token else f"ch-{uuid.uuid4().hex}",
        }
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
        if login or request.user_data:
            params["UserData"] = boot_data(request, "aws", login=bool(login))
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
        specs = {alias: _alias_spec(alias, "x86_64") for alias in aliases}
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

    async def open_ports(self, group_tags: Mapping[str, str], ports: Sequence[int]) -> PortsHandle:
        """The group's security group, made when missing, open on TCP 22 and ``ports`` (see the module notes)."""
        wanted = check_ports(ports, "aws")
        group_id, _made = await self._security_group(group_tags, wanted)
        return PortsHandle(group_id, _group_name(group_tags), "security-group", _group_tags(group_tags),
                           tuple(sorted({SSH_PORT, *wanted})))

    async def close_ports(self, group_tags: Mapping[str, str]) -> None:
        """Delete the group's security group once no instance uses it (waiting a while for shutting-down
        ones); one still used by live instances stays."""
        vpc, _subnet = await self._network()
        found = await self._pages("describe_security_groups", "SecurityGroups", Filters=[
            {"Name": "group-name", "Values": [_group_name(group_tags)]}, {"Name": "vpc-id", "Values": [vpc]},
            {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}])
        if found:
            await self._cleanup_groups([str(g["GroupId"]) for g in found])

    async def list_ports(self, tags: Mapping[str, str]) -> builtins.list[PortsHandle]:
        filters = [{"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}]
        filters += [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
        found = await self._pages("describe_security_groups", "SecurityGroups", Filters=filters)
        handles = []
        for group in found:
            group_tags = {t["Key"]: t["Value"] for t in group.get("Tags", []) or []}
            ports = sorted({int(p["FromPort"]) for p in group.get("IpPermissions", []) if "FromPort" in p})
            handles.append(PortsHandle(str(group["GroupId"]), str(group.get("GroupName", "")), "security-group",
                                       _group_tags(group_tags), tuple(ports)))
        return sorted(handles, key=lambda h: h.name)

    async def close(self) -> None:
        with self._lock:
            client, self._client_obj = self._client_obj, None
        if client is not None:
            await asyncio.to_thread(client.close)

    # -- calls and errors ----------------------------------------------------------------------

    def _client(self) -> Any:
        with self._lock:
            if self._client_obj is None:
                from botocore.config import Config

                # boto3's own retries off: one attempt of ours is one HTTP request, and boto3 would also retry
                # InsufficientInstanceCapacity (a 500), delaying the engine's failover.
                config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, user_agent_extra="cloudherd")
                kwargs: dict[str, Any] = {"region_name": self.region, "config": config}
                if self.endpoint_url:
                    kwargs["endpoint_url"] = self.endpoint_url
                kwargs.update(self._credentials())
                self._client_obj = _session(self._boto3).client("ec2", **kwargs)
            return self._client_obj

    def _credentials(self) -> dict[str, str]:
        """The keys named by ``access_key_id_env`` / ``secret_access_key_env`` (both or neither), read now."""
        names = {arg: self.settings.get(f"{key}_env") for arg, key in (
            ("aws_access_key_id", "access_key_id"), ("aws_secret_access_key", "secret_access_key"))}
        if not any(names.values()):
            return {}
        missing = [str(n) for n in names.values() if not n or not os.environ.get(str(n))]
        if missing:
            raise AuthError(f"aws provider {self.name}: the environment has no {' / '.join(missing) or 'key'} "
                            "(give both access_key_id_env and secret_access_key_env, and set them)")
        return {arg: os.environ[str(name)] for arg, name in names.items()}

    async def _run(self, operation: str, fn: Callable[[], T]) -> T:
        """Run one blocking boto3 call in a thread, once; its failure becomes a typed error."""
        try:
            return await asyncio.to_thread(fn)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._error(operation, exc) from exc

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            result: dict[str, Any] = getattr(self._client(), operation)(**params)
            return result

        return await self._run(operation, run)

    async def _pages(self, operation: str, key: str, **params: Any) -> builtins.list[dict[str, Any]]:
        """Every item under ``key`` over all pages (a failed page fails the whole, retried as one call)."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = await self._call(operation, **params, **({"NextToken": token} if token else {}))
            found.extend(page.get(key, []))
            token = page.get("NextToken")
            if not token:
                return found

    async def _instances(self, **params: Any) -> builtins.list[dict[str, Any]]:
        reservations = await self._pages("describe_instances", "Reservations", **params)
        return [i for r in reservations for i in r.get("Instances", [])]

    def _error(self, operation: str, exc: Exception) -> Exception:
        from botocore import exceptions as bx

        where = f"aws {operation} in {self.region}"
        if isinstance(exc, bx.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            return _client_error(where, operation, code, status, str(error.get("Message", "")))
        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
            return AuthError(f"{where}: no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                             "AWS_SECRET_ACCESS_KEY, or run 'aws configure'")
        if isinstance(exc, bx.EndpointConnectionError):
            endpoint = safe_url(str(exc.kwargs.get("endpoint_url", "")))
            return TransientError(f"{where}: could not connect to the endpoint {endpoint}")
        if isinstance(exc, bx.ParamValidationError):
            return InvalidRequestError(f"{where}: {one_line(str(exc))}")
        if isinstance(exc, bx.ConnectionError | bx.HTTPClientError):  # dropped or timed out: worth another try
            return TransientError(f"{where}: {exc.__class__.__name__}: {one_line(str(exc))}")
        if isinstance(exc, bx.BotoCoreError):
            return ProviderError(f"{where}: {exc.__class__.__name__}: {one_line(str(exc))}")
        return exc

    async def _bulk(self, operation: str, ids: Sequence[str]) -> None:
        """One call per 1000 ids; ids already gone (unknown, terminated) are dropped and the call retried."""
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), BATCH):
            batch = unique[start:start + BATCH]
            try:
                await self._call(operation, InstanceIds=batch)
            except (NotFoundError, InvalidRequestError) as exc:
                if exc.code not in GONE_CODES:
                    raise
                live = await self._live(batch)
                if live:
                    await self._call(operation, InstanceIds=live)

    async def _live(self, ids: Sequence[str]) -> builtins.list[str]:
        """Which of ``ids`` still exist (a filter, unlike InstanceIds, does not fail on unknown ids)."""
        items = await self._instances(Filters=[{"Name": "instance-id", "Values": list(ids)},
                                               {"Name": "instance-state-name", "Values": LIVE_STATES}],
                                      MaxResults=1000)
        return [i["InstanceId"] for i in items]

    # -- create helpers ------------------------------------------------------------------------------

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

    async def _image_id(self, image: str, size: str) -> str:
        if image.startswith("ami-"):
            return image
        arch = str(self.settings.get("architecture") or ("arm64" if _ARM_SIZE_RE.match(size) else "x86_64"))
        spec = _alias_spec(image, arch)
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
        """The smallest eligible instance type that meets ``need`` (see the module notes)."""
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

    # -- security groups -----------------------------------------------------------------------------

    def _subnet_setting(self) -> str | None:
        subnet = self.settings.get("subnet_id") or self.settings.get("subnet")
        return str(subnet) if subnet else None

    async def _network(self) -> tuple[str, str | None]:
        """(VPC id, subnet id or None for EC2's default subnet): the subnet's, the ``vpc`` or the default VPC."""
        if self._network_ids is not None:
            return self._network_ids
        subnet = self._subnet_setting()
        vpc = str(self.settings.get("vpc") or self.settings.get("vpc_id") or "") or None
        if subnet:
            found = (await self._call("describe_subnets", SubnetIds=[subnet])).get("Subnets", [])
            if not found:
                raise NotFoundError(f"aws: subnet {subnet} not found in {self.region}")
            if vpc and found[0]["VpcId"] != vpc:
                raise InvalidRequestError(f"aws: subnet {subnet} is not in the VPC {vpc}")
            vpc = str(found[0]["VpcId"])
        elif vpc:  # a VPC but no subnet: EC2 needs one, take its default-for-zone or first subnet
            subnets = (await self._call("describe_subnets", Filters=[{"Name": "vpc-id", "Values": [vpc]}])
                       ).get("Subnets", [])
            if not subnets:
                raise InvalidRequestError(f"aws: the VPC {vpc} has no subnet in {self.region}; set 'subnet'")
            best = min(subnets, key=lambda s: (not s.get("DefaultForAz"), s.get("AvailabilityZone", ""),
                                               s["SubnetId"]))
            subnet = str(best["SubnetId"])
        else:
            vpcs = (await self._call("describe_vpcs", Filters=[{"Name": "is-default", "Values": ["true"]}])
                    ).get("Vpcs", [])
            if not vpcs:
                raise InvalidRequestError(f"aws: no default VPC in {self.region}; set 'vpc' or 'subnet'")
            vpc = str(vpcs[0]["VpcId"])
        self._network_ids = (vpc, subnet)
        return self._network_ids

    async def _security_group(self, tags: Mapping[str, str], ports: Sequence[int]) -> tuple[str, bool]:
        """Find or make the group of (infra, group) and open SSH and ``ports`` on it: (group id, made now)."""
        name = _group_name(tags)
        vpc, _subnet = await self._network()
        lookup = [{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}]
        found = (await self._call("describe_security_groups", Filters=lookup)).get("SecurityGroups", [])
        made = False
        if found:
            group = found[0]
        else:
            group_tags = {**tags, "Name": name, TAG_MANAGED: "true"}
            try:
                created = await self._call(
                    "create_security_group", GroupName=name, VpcId=vpc,
                    Description=f"cloudherd: SSH and the listed ports of {name[len(GROUP_PREFIX):]}"[:255],
                    TagSpecifications=[{"ResourceType": "security-group",
                                        "Tags": [{"Key": k, "Value": v} for k, v in group_tags.items()]}])
                group, made = {"GroupId": created["GroupId"], "IpPermissions": []}, True
            except InvalidRequestError as exc:  # made meanwhile by another create
                if exc.code != "InvalidGroup.Duplicate":
                    raise
                group = (await self._call("describe_security_groups", Filters=lookup))["SecurityGroups"][0]
        group_id = str(group["GroupId"])
        missing = [(port, cidr) for port in sorted({SSH_PORT, *ports}) for cidr in self.allow_from
                   if not _allows(group.get("IpPermissions", []), port, cidr)]
        if missing:
            await self._authorize(group_id, missing)
        return group_id, made

    async def _authorize(self, group_id: str, rules: Sequence[tuple[int, str]]) -> None:
        try:
            await self._call("authorize_security_group_ingress", GroupId=group_id,
                             IpPermissions=[_permission(port, cidr) for port, cidr in rules])
        except InvalidRequestError as exc:  # one rule appeared meanwhile: add the others one by one
            if exc.code != "InvalidPermission.Duplicate":
                raise
            for port, cidr in rules:
                try:
                    await self._call("authorize_security_group_ingress", GroupId=group_id,
                                     IpPermissions=[_permission(port, cidr)])
                except InvalidRequestError as again:
                    if again.code != "InvalidPermission.Duplicate":
                        raise

    async def _managed_groups_of(self, ids: Sequence[str]) -> builtins.list[str]:
        """The cloudherd-made security groups the instances ``ids`` are in."""
        candidates: set[str] = set()
        for start in range(0, len(ids), FILTER_BATCH):
            batch = list(ids[start:start + FILTER_BATCH])
            items = await self._instances(Filters=[{"Name": "instance-id", "Values": batch}], MaxResults=1000)
            candidates |= {g["GroupId"] for i in items for g in i.get("SecurityGroups", [])
                           if str(g.get("GroupName", "")).startswith(GROUP_PREFIX)}
        if not candidates:
            return []
        groups = await self._pages("describe_security_groups", "SecurityGroups", Filters=[
            {"Name": "group-id", "Values": sorted(candidates)}, {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}])
        return sorted(str(g["GroupId"]) for g in groups)

    async def _cleanup_groups(self, group_ids: Sequence[str]) -> None:
        """Delete the groups no instance uses any more; wait a while for shutting-down ones.  Best effort."""
        deadline = time.monotonic() + self.cleanup_wait
        waiting = list(group_ids)
        try:
            while waiting:
                users = await self._instances(Filters=[
                    {"Name": "instance.group-id", "Values": waiting},
                    {"Name": "instance-state-name", "Values": [*LIVE_STATES, "shutting-down"]}], MaxResults=1000)
                live = {g["GroupId"] for i in users if i.get("State", {}).get("Name") in LIVE_STATES
                        for g in i.get("SecurityGroups", [])}
                leaving = {g["GroupId"] for i in users for g in i.get("SecurityGroups", [])} - live
                free = [g for g in waiting if g not in live and g not in leaving]
                busy = await self._delete_groups(free)  # still attached for a moment after the instances went
                waiting = [g for g in waiting if g in leaving or g in busy]
                if waiting and time.monotonic() + CLEANUP_POLL > deadline:
                    log.warning("aws: security groups %s still in use after %.0fs; left in place",
                                ", ".join(waiting), self.cleanup_wait)
                    return
                if waiting:
                    await asyncio.sleep(CLEANUP_POLL)
        except ProviderError as exc:
            log.warning("aws: could not clean up security groups %s: %s", ", ".join(waiting), exc)

    async def _delete_groups(self, group_ids: Sequence[str]) -> builtins.list[str]:
        """Delete each group (best effort): the ones still in use (DependencyViolation)."""
        busy: list[str] = []
        for group_id in group_ids:
            try:
                await self._call("delete_security_group", GroupId=group_id)
            except ProviderError as exc:
                if exc.code == "DependencyViolation":
                    busy.append(group_id)
                elif exc.code != "InvalidGroup.NotFound":
                    log.warning("aws: could not delete the security group %s: %s", group_id, exc)
        return busy


# -- helpers (module level: no provider state) ------------------------------------------------------


def _group_name(tags: Mapping[str, str]) -> str:
    """``cloudherd-<infra>-<group>`` in the characters EC2 allows in a VPC security group name."""
    parts = [tags.get(TAG_INFRA) or "", tags.get(TAG_GROUP) or ""]
    name = GROUP_PREFIX + "-".join(p for p in parts if p) if any(parts) else GROUP_PREFIX + "default"
    return _GROUP_NAME_BAD.sub("-", name)[:255]


def _group_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The tags that name a group: infra and group."""
    return {k: str(tags[k]) for k in (TAG_INFRA, TAG_GROUP) if k in tags}


def _permission(port: int, cidr: str) -> dict[str, Any]:
    permission: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
    if ":" in cidr:
        permission["Ipv6Ranges"] = [{"CidrIpv6": cidr, "Description": "cloudherd"}]
    else:
        permission["IpRanges"] = [{"CidrIp": cidr, "Description": "cloudherd"}]
    return permission


def _allows(permissions: Iterable[dict[str, Any]], port: int, cidr: str) -> bool:
    """Whether an ingress rule already lets ``cidr`` reach TCP ``port``."""
    for perm in permissions:
        protocol = str(perm.get("IpProtocol", ""))
        if protocol == "-1":
            in_range = True
        elif protocol in ("tcp", "6"):
            in_range = int(perm.get("FromPort", -1)) <= port <= int(perm.get("ToPort", -1))
        else:
            continue
        cidrs = {r.get("CidrIp") for r in perm.get("IpRanges", [])} | {r.get("CidrIpv6") for r in
                                                                         perm.get("Ipv6Ranges", [])}
        if in_range and cidr in cidrs:
            return True
    return False


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


_CODE_TYPES: tuple[tuple[set[str], type[ProviderError]], ...] = (
    (CAPACITY_CODES, CapacityError), (QUOTA_CODES, QuotaError), (THROTTLE_CODES, ThrottledError),
    (NOT_FOUND_CODES, NotFoundError), (TRANSIENT_CODES, TransientError))


def _client_error(where: str, operation: str, code: str, status: int, message: str) -> ProviderError:
    """The typed error of an EC2 error code (HTTP status as the fallback)."""
    if code in AUTH_CODES:  # AWS's text can quote the access key id or the string it signed: drop it
        return AuthError(f"{where}: {code}: credentials were refused or lack permission for {operation}",
                         code=code, status=status)
    text = f"{where}: {code}: {one_line(message)}"
    for codes, kind in _CODE_TYPES:
        if code in codes:
            return kind(text, code=code, status=status)
    return error_from_status(text, status, code)


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


def _alias_spec(alias: str, arch: str) -> tuple[list[str], str] | None:
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
               "public_dns": item.get("PublicDnsName") or None, "aws_state": state},
    )


def _client_token(token: str) -> str:
    """EC2 takes up to 64 ASCII characters; longer or odd tokens are hashed (still deterministic)."""
    if len(token) <= 64 and token.isascii() and token.isprintable():
        return token
    return "ch-" + hashlib.sha256(token.encode()).hexdigest()[:61]
