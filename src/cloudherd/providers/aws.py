"""The ``aws`` provider: EC2 instances through boto3 (imported lazily: ``pip install 'cloudherd[aws]'``).

Settings: ``region`` (else ``AWS_DEFAULT_REGION`` / ``AWS_REGION``, else us-east-1), ``endpoint_url`` (else
boto3 honours ``AWS_ENDPOINT_URL`` itself), ``image`` (default image, ``ubuntu-24.04``), ``subnet_id``,
``security_group_ids`` (a list), ``cloud_init`` (default true, see below).  Credentials come from boto3's own
chain only and never appear in messages.

Decisions:

* ``create`` makes all instances in ONE ``run_instances`` call (``ClientToken`` from ``request.token``, so
  a retried create returns the first call's instances on real EC2).  Every instance carries the request's
  tags.  ``Name``: with one instance it is set in the same call; with several, ``create_tags`` is called
  once per instance afterwards (best effort: a failure there is logged, the instances are still returned).
* Images: an ``ami-...`` id is used as is; an alias (``debian-12``, ``ubuntu-24.04``, ``al2023``, ``al2``)
  is resolved to the newest matching public image of its publisher, for the size's architecture
  (Graviton sizes such as ``t4g.*`` get arm64).
* The login user: with ``cloud_init`` on, user data asks cloud-init to create ``request.ssh_user`` with the
  request's key and password-less sudo, so the same user works on every image; the key is also imported as
  an EC2 key pair (``cloudherd-<12 hex of its sha256>``) for the image's default user.
* ``list`` returns pending, running, stopping and stopped instances (shutting-down ones are on their way
  out and are left out like terminated ones); ``stopping`` is reported as ``stopped``.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from cloudherd.providers.base import (
    AuthError,
    CapacityError,
    CreateRequest,
    Image,
    Instance,
    InvalidRequestError,
    MissingDependencyError,
    NotFoundError,
    Provider,
    ProviderError,
    QuotaError,
    Size,
    ThrottledError,
    matches,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_REGION = "us-east-1"
DEFAULT_SIZE = "t3.micro"
DEFAULT_IMAGE = "ubuntu-24.04"
BATCH = 1000  # the most ids EC2 takes in one start/stop/terminate call
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
STATES = {"pending": "pending", "running": "running", "stopping": "stopped", "stopped": "stopped",
          "shutting-down": "terminated", "terminated": "terminated"}
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
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_ARM_SIZE_RE = re.compile(r"^(a1|[a-z]+\d+g[a-z]*)\.")


def _import_boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise MissingDependencyError("the aws provider needs boto3: pip install 'cloudherd[aws]'") from exc
    return boto3


class AwsProvider(Provider):
    """EC2 in one region; bulk calls, typed errors."""

    type = "aws"

    def __init__(self, name: str = "aws", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self._boto3 = _import_boto3()
        self.region = str(self.settings.get("region") or os.environ.get("AWS_DEFAULT_REGION")
                          or os.environ.get("AWS_REGION") or DEFAULT_REGION)
        endpoint = self.settings.get("endpoint_url")
        self.endpoint_url = str(endpoint) if endpoint else None
        self._client_obj: Any = None
        self._lock = threading.Lock()

    # -- interface -----------------------------------------------------------------------------------

    async def create(self, request: CreateRequest) -> list[Instance]:
        if request.count < 0:
            raise InvalidRequestError("count must be ≥ 0")
        if request.count == 0:
            return []
        if request.names and len(request.names) != request.count:
            raise InvalidRequestError(f"{len(request.names)} names given for {request.count} instances")
        size = request.size or DEFAULT_SIZE
        image_id = await self._image_id(request.image or str(self.settings.get("image") or DEFAULT_IMAGE), size)
        key_name = await self._key_pair(request.ssh_public_key) if request.ssh_public_key.strip() else None

        tags = dict(request.tags)
        if request.count == 1 and request.names:
            tags["Name"] = request.names[0]
        params: dict[str, Any] = {
            "ImageId": image_id, "InstanceType": size, "MinCount": request.count, "MaxCount": request.count,
            "TagSpecifications": [{"ResourceType": "instance",
                                   "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        }
        if request.token:
            params["ClientToken"] = _client_token(request.token)
        if key_name:
            params["KeyName"] = key_name
        if self.settings.get("subnet_id"):
            params["SubnetId"] = str(self.settings["subnet_id"])
        if self.settings.get("security_group_ids"):
            params["SecurityGroupIds"] = [str(g) for g in self.settings["security_group_ids"]]
        ssh_user = None
        if self.settings.get("cloud_init", True) and request.ssh_public_key.strip():
            params["UserData"] = _cloud_config(request.ssh_user, request.ssh_public_key)
            ssh_user = request.ssh_user
        response = await self._call("run_instances", **params)
        raw = sorted(response.get("Instances", []), key=lambda i: (i.get("AmiLaunchIndex", 0), i["InstanceId"]))
        instances = [_instance(item, ssh_user) for item in raw]
        if request.count > 1 and request.names:
            await self._name_each(instances, request.names)
        return instances

    async def list(self, tags: Mapping[str, str]) -> list[Instance]:
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
        filters.append({"Name": "instance-state-name", "Values": LIVE_STATES})

        def run() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            pages = self._client().get_paginator("describe_instances").paginate(
                Filters=filters, PaginationConfig={"PageSize": 1000})
            for page in pages:
                for reservation in page.get("Reservations", []):
                    found.extend(reservation.get("Instances", []))
            return found

        items = await self._run("describe_instances", run)
        return sorted((_instance(item) for item in items), key=lambda i: i.id)

    async def terminate(self, ids: Sequence[str]) -> None:
        await self._bulk("terminate_instances", ids)

    async def stop(self, ids: Sequence[str]) -> None:
        await self._bulk("stop_instances", ids)

    async def start(self, ids: Sequence[str]) -> None:
        await self._bulk("start_instances", ids)

    async def sizes(self, pattern: str | None = None) -> builtins.list[Size]:
        params: dict[str, Any] = {"PaginationConfig": {"PageSize": 100}}
        if pattern and re.fullmatch(r"[A-Za-z0-9-]+", pattern):  # a plain substring: let EC2 filter too
            params["Filters"] = [{"Name": "instance-type", "Values": [f"*{pattern.lower()}*"]}]

        def run() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            for page in self._client().get_paginator("describe_instance_types").paginate(**params):
                found.extend(page.get("InstanceTypes", []))
            return found

        items = await self._run("describe_instance_types", run)
        sizes = [
            Size(item["InstanceType"], float(item.get("VCpuInfo", {}).get("DefaultVCpus", 0)),
                 int(item.get("MemoryInfo", {}).get("SizeInMiB", 0)),
                 {"arch": item.get("ProcessorInfo", {}).get("SupportedArchitectures", [])})
            for item in items if matches(pattern, item["InstanceType"])
        ]
        return sorted(sizes, key=lambda s: s.name)

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

    async def default_size(self) -> str | None:
        return DEFAULT_SIZE

    async def close(self) -> None:
        with self._lock:
            client, self._client_obj = self._client_obj, None
        if client is not None:
            await asyncio.to_thread(client.close)

    # -- helpers -------------------------------------------------------------------------------------

    def _client(self) -> Any:
        with self._lock:
            if self._client_obj is None:
                from botocore.config import Config

                config = Config(retries={"mode": "standard"}, user_agent_extra="cloudherd")
                kwargs: dict[str, Any] = {"region_name": self.region, "config": config}
                if self.endpoint_url:
                    kwargs["endpoint_url"] = self.endpoint_url
                self._client_obj = self._boto3.session.Session().client("ec2", **kwargs)
            return self._client_obj

    async def _run(self, operation: str, fn: Callable[[], T]) -> T:
        """Run a blocking boto3 call in a thread; turn its failures into typed provider errors."""
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

    def _error(self, operation: str, exc: Exception) -> Exception:
        from botocore import exceptions as bx

        where = f"aws {operation} in {self.region}"
        if isinstance(exc, bx.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            mapped = _client_error(where, operation, code, status, str(error.get("Message", "")))
            mapped.aws_code = code  # type: ignore[attr-defined]
            return mapped
        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
            return AuthError(f"{where}: no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                             "AWS_SECRET_ACCESS_KEY, or run 'aws configure'")
        if isinstance(exc, bx.EndpointConnectionError):
            endpoint = _safe_url(str(exc.kwargs.get("endpoint_url", "")))
            return ProviderError(f"{where}: could not connect to the endpoint {endpoint}")
        if isinstance(exc, bx.ParamValidationError):
            return InvalidRequestError(f"{where}: {_one_line(str(exc))}")
        if isinstance(exc, bx.BotoCoreError):
            return ProviderError(f"{where}: {exc.__class__.__name__}: {_one_line(str(exc))}")
        return exc

    async def _bulk(self, operation: str, ids: Sequence[str]) -> None:
        """One call per 1000 ids; ids already gone (unknown, terminated) are dropped and the call retried."""
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), BATCH):
            batch = unique[start:start + BATCH]
            try:
                await self._call(operation, InstanceIds=batch)
            except (NotFoundError, InvalidRequestError) as exc:
                if _code(exc) not in GONE_CODES:
                    raise
                live = await self._live(batch)
                if live:
                    await self._call(operation, InstanceIds=live)

    async def _live(self, ids: Sequence[str]) -> builtins.list[str]:
        """Which of ``ids`` still exist (a filter, unlike InstanceIds, does not fail on unknown ids)."""

        def run() -> list[str]:
            found: list[str] = []
            pages = self._client().get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-id", "Values": list(ids)},
                         {"Name": "instance-state-name", "Values": LIVE_STATES}])
            for page in pages:
                for reservation in page.get("Reservations", []):
                    found.extend(i["InstanceId"] for i in reservation.get("Instances", []))
            return found

        return await self._run("describe_instances", run)

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
        try:
            await self._call("import_key_pair", KeyName=name, PublicKeyMaterial=material.encode())
        except InvalidRequestError as exc:
            if _code(exc) != "InvalidKeyPair.Duplicate":
                raise
        return name

    async def _image_id(self, image: str, size: str) -> str:
        if image.startswith("ami-"):
            return image
        arch = str(self.settings.get("architecture") or ("arm64" if _ARM_SIZE_RE.match(size) else "x86_64"))
        spec = _alias_spec(image, arch)
        if spec is None:
            raise NotFoundError(f"aws: unknown image alias '{image}' (use an ami-... id, debian-N, ubuntu-YY.MM, "
                                "al2023 or al2)")
        owners, pattern = spec
        response = await self._call("describe_images", Owners=owners, Filters=[
            {"Name": "name", "Values": [pattern]}, {"Name": "architecture", "Values": [arch]},
            {"Name": "state", "Values": ["available"]}])
        images = response.get("Images", [])
        if not images:
            raise NotFoundError(f"aws: image alias '{image}' matches no {arch} image in {self.region}")
        best: str = _newest(images)["ImageId"]
        return best


# -- helpers (module level: no provider state) ------------------------------------------------------


def _client_error(where: str, operation: str, code: str, status: int, message: str) -> ProviderError:
    """The typed error of an EC2 error code (HTTP status as the fallback)."""
    if code in AUTH_CODES:  # AWS's text can quote the access key id or the string it signed: drop it
        return AuthError(f"{where}: {code}: credentials were refused or lack permission for {operation}")
    text = f"{where}: {code}: {_one_line(message)}"
    if code in CAPACITY_CODES:
        return CapacityError(text)
    if code in QUOTA_CODES:
        return QuotaError(text)
    if code in THROTTLE_CODES:
        return ThrottledError(text)
    if code in NOT_FOUND_CODES:
        return NotFoundError(text)
    if 400 <= status < 500:
        return InvalidRequestError(text)
    return ProviderError(text)


def _code(exc: BaseException) -> str | None:
    """The EC2 error code behind a provider error, when it came from one."""
    code = getattr(exc, "aws_code", None)
    return str(code) if code is not None else None


def _alias_spec(alias: str, arch: str) -> tuple[list[str], str] | None:
    """(owners, name pattern) of an image alias, or None when the alias is unknown."""
    deb_arch = "arm64" if arch == "arm64" else "amd64"
    alias = alias.lower()
    if m := re.fullmatch(r"debian-(\d+)", alias):
        return [DEBIAN], f"debian-{m.group(1)}-{deb_arch}-*"
    if m := re.fullmatch(r"ubuntu-(\d\d\.\d\d)", alias):
        return [CANONICAL], f"ubuntu/images/hvm-ssd*/ubuntu-*-{m.group(1)}-{deb_arch}-server-*"
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
        id=item["InstanceId"], name=tags.get("Name") or item["InstanceId"], state=STATES.get(state, state),
        address=public or private, port=22, private_address=private, tags=tags, ssh_user=ssh_user,
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


def _cloud_config(user: str, public_key: str) -> str:
    """cloud-init user data that makes ``user`` with the key and password-less sudo (JSON is valid YAML)."""
    key = public_key.strip()
    if user == "root":
        config: dict[str, Any] = {"disable_root": False, "users": [{"name": "root", "ssh_authorized_keys": [key]}]}
    elif _USER_RE.match(user):
        config = {"users": ["default", {"name": user, "sudo": "ALL=(ALL) NOPASSWD:ALL", "shell": "/bin/bash",
                                        "ssh_authorized_keys": [key]}]}
    else:
        raise InvalidRequestError(f"aws: '{user}' is not a valid login user name")
    return "#cloud-config\n" + json.dumps(config, indent=1) + "\n"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe_url(url: str) -> str:
    """The URL without any user:password part."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable endpoint)"
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
