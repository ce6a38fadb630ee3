"""The ``gce`` provider: Compute Engine VMs through google-cloud-compute (imported lazily:
``pip install 'cloudherd[gce]'``).

Settings: ``project`` (else ``GOOGLE_PROJECT``, ``GOOGLE_CLOUD_PROJECT``, ``CLOUDSDK_CORE_PROJECT``, else the
``project_id`` of the credentials file), ``zone`` (else ``GOOGLE_DATACENTER``, ``CLOUDSDK_COMPUTE_ZONE``),
``region`` (default: the zone's), ``credentials`` (a service-account or other Google credentials JSON file,
else ``GOOGLE_APPLICATION_CREDENTIALS``, else Application Default Credentials; a ``google.auth`` credentials
object is taken as is), ``anonymous`` (true: send no credentials, for emulators and tests), ``endpoint`` (API
endpoint override, ``http://`` allowed), ``image`` (default ``debian-12``), ``size`` (default ``e2-small``),
``network`` / ``subnetwork``, ``external_ip`` (default true), ``disk_size_gb``, ``disk_type``,
``firewall`` (default true, see below), ``source_ranges`` (default ``["0.0.0.0/0"]``), ``operation_timeout``
(seconds, default 600), ``request_timeout`` (seconds, default 60), ``poll_interval`` (seconds, default 2).
Credentials never appear in messages or logs.

Decisions:

* ``create`` makes all instances in ONE ``instances.bulkInsert`` call (``count`` = ``minCount``, so GCE makes
  all or none), named by ``request.names`` (``perInstanceProperties``) or by a name pattern.  The bulkInsert
  ``requestId`` is a UUID5 of ``request.token`` and the names: a retried create within GCE's de-duplication
  window gets the first call's operation back instead of new machines, while a create with the same token but
  other names (a group grown later) is a new request.  The zone operation is waited for with
  ``zoneOperations.wait`` calls, each bounded, under one deadline (``operation_timeout``): past it,
  :class:`OperationTimeoutError`.  The instances are then listed by their tags (re-listed until they have an
  address, within the same deadline).
* Tags are GCE *labels*, which allow only ``[a-z0-9_-]`` and 63 characters.  Keys and values are encoded
  reversibly: ``[a-z0-9-]`` stay as they are, ``:`` becomes ``_`` (so ``cloudherd:infra`` is the label
  ``cloudherd_infra``), anything else an escape starting with ``__``; ``list`` decodes them back.  A tag too
  long to fit is an :class:`InvalidRequestError`.  Foreign labels are decoded the same way (a ``_`` reads
  as ``:``).
* Login: the key goes into the instance metadata ``ssh-keys`` as ``user:key``; the guest agent makes the user
  (with sudo).  Projects that enforce OS Login ignore that key.
* Ports (:meth:`open_ports` / :meth:`close_ports`): each (infra, group) gets a firewall rule
  ``cloudherd-<infra>-<group>`` in the network (TCP 22 and the ports, from ``source_ranges``; its description
  holds the group's tags, so ``gc`` finds a rule a crash left behind), and the group's instances get its name
  as their target tag.  ``create`` opens it for ``request.ports``, newly listed ports are added; ``terminate``
  of the last instances carrying it deletes it, so no rule outlives its group.
* One attempt per call: 5xx answers and dropped connections are :class:`TransientError`, rate limits
  :class:`ThrottledError`, both retried by the rate budget; the SDK's own retries are off (``retry=None``).
* Instance ids are instance names (in the configured zone).  ``terminate`` ignores names already gone;
  ``stop``/``start`` of a missing name is a :class:`NotFoundError`.  States: PROVISIONING, STAGING, REPAIRING
  → pending; RUNNING → running; STOPPING, SUSPENDING, SUSPENDED, TERMINATED (GCE's word for stopped) → stopped.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
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
    has_tags,
    matches,
    smallest_fitting,
)
from cloudherd.providers.toolkit import (
    SSH_PORT,
    check_login_name,
    check_ports,
    check_request,
    error_from_status,
    gather_all,
    import_sdk,
    one_line,
    safe_url,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
DEFAULT_SIZE = "e2-small"
DEFAULT_IMAGE = "debian-12"
OPERATION_TIMEOUT = 600.0
REQUEST_TIMEOUT = 60.0
POLL_INTERVAL = 2.0
WAIT_SLICE = 130.0  # GCE answers operations.wait within about 2 minutes, done or not
CONCURRENCY = 16  # delete/stop/start calls in flight at once
RULE_PREFIX = "cloudherd-"
RULE_MARK = "cloudherd ports of "  # starts the description of the firewall rules cloudherd made
TOKEN_NAMESPACE = uuid.UUID("5d0c3c3e-7d5e-4a43-9a59-5a1f0b8c6c01")  # UUID5 namespace of create tokens

_P, _R, _S = InstanceState.PENDING, InstanceState.RUNNING, InstanceState.STOPPED
STATES = {"PROVISIONING": _P, "STAGING": _P, "REPAIRING": _P, "RUNNING": _R,
          "STOPPING": _S, "SUSPENDING": _S, "SUSPENDED": _S, "TERMINATED": _S}

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

# error codes and reasons, compared lowercased without underscores: ZONE_RESOURCE_POOL_EXHAUSTED and
# zoneResourcePoolExhausted are the same word
CAPACITY_CODES = {"zoneresourcepoolexhausted", "zoneresourcepoolexhaustedwithdetails", "resourcepoolexhausted",
                  "regionresourcepoolexhausted"}
QUOTA_CODES = {"quotaexceeded"}
THROTTLE_CODES = {"ratelimitexceeded", "userratelimitexceeded"}
NOT_FOUND_CODES = {"resourcenotfound", "notfound"}
AUTH_CODES = {"permissionserror", "forbidden", "autherror", "insufficientpermissions"}

_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_ARM_SIZE_RE = re.compile(r"^(t2a|c4a|n4a|a4x)-")
_KEY_MARK = "x_-0"  # starts a label key whose tag key does not start with a-z (never made otherwise)
_SECRET_RES = [re.compile(r"ya29\.[\w.-]+"), re.compile(r"(?i)bearer\s+\S+"),
               re.compile(r"-----BEGIN [A-Z ]+-----.*?(-----END [A-Z ]+-----|$)", re.S),
               re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")]


class OperationTimeoutError(ProviderError):
    """A GCE operation was not done within the configured time (it may still finish)."""


class GceProvider(Provider):
    """Compute Engine in one zone; bulk calls, typed errors."""

    type = "gce"

    def __init__(self, name: str = "gce", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self._compute = import_sdk("google.cloud.compute_v1", "gce", "google-cloud-compute")
        self._credentials_file = _credentials_path(self.settings)
        project = (self.settings.get("project") or os.environ.get("GOOGLE_PROJECT")
                   or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("CLOUDSDK_CORE_PROJECT")
                   or _file_project(self._credentials_file))
        if not project:
            raise InvalidRequestError(
                f"gce provider '{name}': no project: set 'project' in its settings or GOOGLE_PROJECT")
        zone = (self.settings.get("zone") or os.environ.get("GOOGLE_DATACENTER")
                or os.environ.get("CLOUDSDK_COMPUTE_ZONE"))
        if not zone:
            raise InvalidRequestError(
                f"gce provider '{name}': no zone: set 'zone' (e.g. us-central1-a) in its settings or GOOGLE_DATACENTER")
        self.project = str(project)
        self.zone = str(zone)
        self.region = str(self.settings.get("region") or self.zone.rsplit("-", 1)[0])
        endpoint = self.settings.get("endpoint")
        self.endpoint = str(endpoint).rstrip("/") if endpoint else None
        self.operation_timeout = _seconds(self.settings, "operation_timeout", OPERATION_TIMEOUT)
        self.request_timeout = _seconds(self.settings, "request_timeout", REQUEST_TIMEOUT)
        self.poll_interval = _seconds(self.settings, "poll_interval", POLL_INTERVAL)
        self._clients: dict[str, Any] = {}
        self._creds: Any = None
        self._sizes: builtins.list[Size] | None = None
        self._lock = threading.Lock()

    # -- interface -----------------------------------------------------------------------------------

    async def create(self, request: CreateRequest) -> builtins.list[Instance]:
        if not check_request(request, "gce"):
            return []
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
        if request.token:
            bulk.request_id = request_id(request.token, names)
        deadline = time.monotonic() + self.operation_timeout
        log.info("gce: bulkInsert of %d %s instances in %s/%s", request.count, size, self.project, self.zone)

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
        return sorted((self._instance(i) for i in raw), key=lambda i: i.id)

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

    def supports(self, capability: str) -> bool:
        if capability == "ports":
            return bool(self.settings.get("firewall", True))
        return super().supports(capability)

    async def open_ports(self, group_tags: Mapping[str, str], ports: Sequence[int]) -> PortsHandle:
        """The group's firewall rule (see the module notes), made when missing, newly listed ports added."""
        wanted = sorted({SSH_PORT, *check_ports(ports, "gce")})
        name = rule_name(group_tags)
        own = {k: str(group_tags[k]) for k in (TAG_INFRA, TAG_GROUP) if k in group_tags}
        compute = self._compute
        deadline = time.monotonic() + self.operation_timeout

        def run() -> builtins.list[int]:
            from google.api_core import exceptions as gx

            client = self._client("FirewallsClient")
            try:
                current = client.get(project=self.project, firewall=name, timeout=self.request_timeout, retry=None)
            except gx.NotFound:
                current = None
            if current is not None:
                have = sorted({int(p) for a in current.allowed for p in a.ports if p.isdigit()})
                if set(wanted) <= set(have):
                    return have
                have = sorted({*have, *wanted})
                patch = compute.Firewall(allowed=[compute.Allowed(I_p_protocol="tcp", ports=[str(p) for p in have])])
                op = client.patch_unary(project=self.project, firewall=name, firewall_resource=patch,
                                        timeout=self.request_timeout, retry=None)
                self._wait(op, "firewalls.patch", deadline)
                return have
            rule = compute.Firewall(
                name=name, network=self._network(), direction="INGRESS", target_tags=[name],
                description=RULE_MARK + json.dumps(own, sort_keys=True),
                allowed=[compute.Allowed(I_p_protocol="tcp", ports=[str(p) for p in wanted])],
                source_ranges=[str(r) for r in self.settings.get("source_ranges") or ["0.0.0.0/0"]],
            )
            try:
                op = client.insert_unary(project=self.project, firewall_resource=rule, timeout=self.request_timeout,
                                         retry=None)
            except gx.Conflict:  # made meanwhile by another create
                return wanted
            self._wait(op, "firewalls.insert", deadline)
            return wanted

        opened = await self._run("firewalls.insert", run)
        return PortsHandle(name, name, "firewall", own, tuple(opened))

    async def close_ports(self, group_tags: Mapping[str, str]) -> None:
        """Delete the group's firewall rule once no instance carries it (a live one keeps it)."""
        await self._close_rules({rule_name(group_tags)})

    async def list_ports(self, tags: Mapping[str, str]) -> builtins.list[PortsHandle]:
        def run() -> builtins.list[Any]:
            return list(self._client("FirewallsClient").list(project=self.project, timeout=self.request_timeout,
                                                             retry=None))

        handles = []
        for rule in await self._run("firewalls.list", run):
            own = _rule_tags(rule.description or "")
            if own is None or not has_tags(own, tags):
                continue
            ports = tuple(sorted({int(p) for a in rule.allowed for p in a.ports if p.isdigit()}))
            handles.append(PortsHandle(rule.name, rule.name, "firewall", own, ports))
        return sorted(handles, key=lambda h: h.name)

    async def _close_rules(self, rules: Iterable[str]) -> None:
        listed = await self._run("instances.list", lambda: self._list_raw({}))
        used = {t for i in listed for t in (i.tags.items if i.tags else [])}
        deadline = time.monotonic() + self.operation_timeout

        def delete(name: str) -> None:
            from google.api_core import exceptions as gx

            try:
                op = self._client("FirewallsClient").delete_unary(project=self.project, firewall=name,
                                                                  timeout=self.request_timeout, retry=None)
            except gx.NotFound:
                return
            with contextlib.suppress(NotFoundError):
                self._wait(op, "firewalls.delete", deadline)

        free = sorted(set(rules) - used)
        await gather_all([functools.partial(self._run, "firewalls.delete", functools.partial(delete, name))
                          for name in free], CONCURRENCY)

    async def stop(self, ids: Sequence[str]) -> None:
        await self._each("stop", ids, missing_ok=False)

    async def start(self, ids: Sequence[str]) -> None:
        await self._each("start", ids, missing_ok=False)

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

    async def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(client.transport.close)

    # -- requests ------------------------------------------------------------------------------------

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
        if image.startswith("family/") and _NAME_RE.match(image[len("family/"):]):
            return f"projects/{self.project}/global/images/{image}"
        if _NAME_RE.match(image):
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

    def _network(self) -> str:
        network = str(self.settings.get("network") or "default")
        return network if "/" in network else f"projects/{self.project}/global/networks/{network}"

    def _nic(self) -> Any:
        compute = self._compute
        nic = compute.NetworkInterface(network=self._network())
        subnetwork = self.settings.get("subnetwork")
        if subnetwork:
            subnetwork = str(subnetwork)
            nic.subnetwork = (subnetwork if "/" in subnetwork
                              else f"projects/{self.project}/regions/{self.region}/subnetworks/{subnetwork}")
        if self.settings.get("external_ip", True):
            nic.access_configs = [compute.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")]
        return nic

    async def _size_for(self, request: CreateRequest) -> str:
        if request.size:
            return request.size
        if request.size_need is not None:
            return smallest_fitting(await self.sizes(), request.size_need).name
        return await self.default_size() or DEFAULT_SIZE

    # -- blocking helpers (run in a thread) ----------------------------------------------------------

    def _client(self, kind: str) -> Any:
        with self._lock:
            client = self._clients.get(kind)
            if client is None:
                if self._creds is None:
                    self._creds = self._load_credentials()
                options = {"api_endpoint": self.endpoint} if self.endpoint else None
                client = getattr(self._compute, kind)(credentials=self._creds, client_options=options)
                self._clients[kind] = client
            return client

    def _load_credentials(self) -> Any:
        given = self.settings.get("credentials")
        if self.settings.get("anonymous"):
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        if given is not None and not isinstance(given, str | os.PathLike):
            return given  # a google.auth credentials object, from code
        import google.auth
        from google.auth import exceptions as ax

        path = self._credentials_file
        if path and not os.path.isfile(path):
            raise AuthError(f"gce: the credentials file {path} does not exist: set 'credentials' or "
                            "GOOGLE_APPLICATION_CREDENTIALS to a service-account JSON key file")
        if path:
            creds = _file_credentials(path)
            if creds is not None:
                return creds
            if given:
                raise AuthError(f"gce: the credentials file {path} is neither a service-account key nor an "
                                "authorized-user file: leave 'credentials' unset to use Application Default "
                                "Credentials")
        try:
            creds, _ = google.auth.default(scopes=SCOPES)
        except ax.GoogleAuthError:
            raise AuthError("gce: no Google credentials found: set 'credentials' or GOOGLE_APPLICATION_CREDENTIALS "
                            "to a service-account JSON key, or run 'gcloud auth application-default login'") from None
        return creds

    def _list_raw(self, tags: Mapping[str, str]) -> builtins.list[Any]:
        """One paginated instances.list in the zone, filtered on the labels of ``tags``."""
        labels = encode_labels(tags)
        request = self._compute.ListInstancesRequest(project=self.project, zone=self.zone, max_results=500)
        if labels:
            request.filter = " AND ".join(f'(labels.{k} = "{v}")' for k, v in sorted(labels.items()))
        pager = self._client("InstancesClient").list(request=request, timeout=self.request_timeout,
                                                     retry=None)
        return [i for i in pager if has_tags(decode_labels(i.labels), tags)]

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

    def _wait(self, op: Any, what: str, deadline: float) -> Any:
        """Wait for a zone (or global) operation until ``deadline``; raise its error, typed."""
        import requests
        from google.api_core import exceptions as gx

        done = self._compute.Operation.Status.DONE
        while op.status != done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OperationTimeoutError(
                    f"gce {what} in {self.zone}: operation {op.name} not done after {self.operation_timeout:g} s; "
                    "it may still finish: look again with 'list', or raise 'operation_timeout'")
            slice_ = min(remaining, WAIT_SLICE)
            try:
                if op.zone:
                    op = self._client("ZoneOperationsClient").wait(
                        project=self.project, zone=op.zone.rsplit("/", 1)[-1], operation=op.name, timeout=slice_)
                else:
                    op = self._client("GlobalOperationsClient").wait(
                        project=self.project, operation=op.name, timeout=slice_)
            except (requests.exceptions.Timeout, gx.DeadlineExceeded):
                continue  # that one wait ran out: the deadline decides
        if op.error and op.error.errors:
            raise self._operation_error(what, op)
        return op

    def _operation_error(self, what: str, op: Any) -> ProviderError:
        first = op.error.errors[0]
        code = str(first.code or "UNKNOWN")
        text = f"gce {what} in {self.zone}: {code}: {one_line(_scrub(str(first.message or '')))}"
        return _typed(text, [code], int(op.http_error_status_code or 0), code)

    def _one(self, verb: str, name: str, missing_ok: bool, deadline: float) -> None:
        from google.api_core import exceptions as gx

        client = self._client("InstancesClient")
        method = getattr(client, f"{verb}_unary")
        try:
            op = method(project=self.project, zone=self.zone, instance=name, timeout=self.request_timeout)
        except gx.NotFound:
            if missing_ok:
                log.debug("gce: %s of %s: already gone", verb, name)
                return
            raise NotFoundError(f"gce {verb} in {self.zone}: no instance named '{name}'") from None
        try:
            self._wait(op, verb, deadline)
        except NotFoundError:
            if not missing_ok:
                raise

    # -- async helpers -------------------------------------------------------------------------------

    async def _run(self, operation: str, fn: Callable[[], T]) -> T:
        """Run a blocking SDK call in a thread; turn its failures into typed provider errors."""
        try:
            return await asyncio.to_thread(fn)
        except ProviderError:
            raise
        except Exception as exc:
            mapped = self._error(operation, exc)
            if mapped is exc:
                raise
            if isinstance(mapped, AuthError):
                raise mapped from None  # what google-auth said may quote what it sent
            raise mapped from exc

    async def _each(self, verb: str, ids: Sequence[str], missing_ok: bool) -> None:
        """``verb`` every instance, CONCURRENCY at a time, each operation waited; the first error raised after all."""
        deadline = time.monotonic() + self.operation_timeout

        def one(name: str) -> Any:
            return self._run(f"instances.{verb}", lambda: self._one(verb, name, missing_ok, deadline))

        await gather_all([functools.partial(one, n) for n in dict.fromkeys(ids)], CONCURRENCY)

    def _error(self, operation: str, exc: Exception) -> Exception:
        """A provider error of the SDK's, google-auth's or the HTTP layer's exception; never quoting credentials."""
        import requests
        from google.api_core import exceptions as gx
        from google.auth import exceptions as ax

        where = f"gce {operation} in {self.project}/{self.zone}"
        if isinstance(exc, gx.GoogleAPICallError):
            status = int(exc.code or 0)
            reasons = [str(e.get("reason", "")) for e in exc.errors if isinstance(e, dict)]
            messages = [str(e.get("message", "")) for e in exc.errors if isinstance(e, dict) and e.get("message")]
            message = messages[0] if messages else str(exc.message).split(": ", 1)[-1]
            label = reasons[0] if reasons and reasons[0] else str(status)
            if status == 401:
                return AuthError(f"{where}: credentials were refused (401): check 'credentials' or "
                                 "GOOGLE_APPLICATION_CREDENTIALS, or run 'gcloud auth application-default login'",
                                 code=label, status=status)
            text = f"{where}: {label}: {one_line(self._scrub(message))}"
            return _typed(text, [*reasons, message], status, label)
        if isinstance(exc, ax.RefreshError | ax.DefaultCredentialsError):
            return AuthError(f"{where}: could not get an access token with the configured Google credentials: check "
                             "'credentials' or GOOGLE_APPLICATION_CREDENTIALS, or run "
                             "'gcloud auth application-default login'")
        if isinstance(exc, ax.GoogleAuthError):
            return AuthError(f"{where}: Google credentials failed ({exc.__class__.__name__})")
        host = safe_url(self.endpoint) if self.endpoint else "compute.googleapis.com"
        if isinstance(exc, requests.exceptions.Timeout):
            return TransientError(f"{where}: no answer from {host} within {self.request_timeout:g} s")
        if isinstance(exc, requests.exceptions.ConnectionError):
            return TransientError(f"{where}: could not connect to {host}")
        if isinstance(exc, ValueError | TypeError):
            return InvalidRequestError(f"{where}: {one_line(self._scrub(str(exc)))}")
        return exc

    def _scrub(self, text: str) -> str:
        """``text`` without anything that looks like a token or key, nor this provider's current token."""
        token = getattr(self._creds, "token", None)
        if isinstance(token, str) and len(token) >= 8:
            text = text.replace(token, "[redacted]")
        return _scrub(text)

    # -- results -------------------------------------------------------------------------------------

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
                   "created": item.creation_timestamp or None, "project": self.project},
        )


# -- labels: reversible tag encoding -------------------------------------------------------------------


def encode_label(text: str) -> str:
    """``text`` in GCE's label alphabet ``[a-z0-9_-]``, reversibly (see :func:`decode_label`).

    ``[a-z0-9-]`` stay; ``:`` is ``_`` when followed by ``[a-z0-9]`` or at the end, else ``_-``; any other
    character is ``__`` + 2 hex digits, ``___`` + 4 or ``__-`` + 6 (its code point).
    """
    out: list[str] = []
    for index, char in enumerate(text):
        if "a" <= char <= "z" or "0" <= char <= "9" or char == "-":
            out.append(char)
        elif char == ":":
            following = text[index + 1] if index + 1 < len(text) else ""
            out.append("_" if following == "" or "a" <= following <= "z" or "0" <= following <= "9" else "_-")
        else:
            code = ord(char)
            out.append(f"__{code:02x}" if code <= 0xFF else f"___{code:04x}" if code <= 0xFFFF else f"__-{code:06x}")
    return "".join(out)


def decode_label(text: str) -> str:
    """The inverse of :func:`encode_label`; text that is not such an encoding is returned as it is."""
    out: list[str] = []
    i = 0
    try:
        while i < len(text):
            char = text[i]
            if char != "_":
                out.append(char)
                i += 1
                continue
            following = text[i + 1] if i + 1 < len(text) else ""
            if following == "-":
                out.append(":")
                i += 2
            elif following != "_":
                out.append(":")
                i += 1
            else:
                kind = text[i + 2] if i + 2 < len(text) else ""
                width, start = (4, i + 3) if kind == "_" else (6, i + 3) if kind == "-" else (2, i + 2)
                digits = text[start:start + width]
                if len(digits) != width or not re.fullmatch(r"[0-9a-f]+", digits):
                    return text
                out.append(chr(int(digits, 16)))
                i = start + width
    except (ValueError, OverflowError):
        return text
    return "".join(out)


def label_key(key: str) -> str:
    encoded = encode_label(key)
    return encoded if encoded[:1].isalpha() and encoded[:1].islower() else _KEY_MARK + encoded


def tag_key(label: str) -> str:
    return decode_label(label[len(_KEY_MARK):] if label.startswith(_KEY_MARK) else label)


def encode_labels(tags: Mapping[str, str]) -> dict[str, str]:
    """GCE labels of our tags; a tag that cannot fit (63 characters once encoded) is an InvalidRequestError."""
    labels: dict[str, str] = {}
    for key, value in tags.items():
        k, v = label_key(str(key)), encode_label(str(value))
        if len(k) > 63 or len(v) > 63:
            raise InvalidRequestError(f"gce: the tag {key}={value} is too long for a GCE label (63 characters once "
                                      "encoded: lowercase letters, digits and '-' cost one, others more)")
        labels[k] = v
    if len(labels) > 64:
        raise InvalidRequestError(f"gce: {len(labels)} tags, GCE allows 64 labels per instance")
    return labels


def decode_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {tag_key(str(k)): decode_label(str(v)) for k, v in labels.items()}


# -- helpers (module level: no provider state) ------------------------------------------------------


def rule_name(group_tags: Mapping[str, str]) -> str:
    """The firewall rule (and target tag) of a group: ``cloudherd-<infra>-<group>``, a valid GCE name."""
    parts = [str(group_tags.get(TAG_INFRA) or ""), str(group_tags.get(TAG_GROUP) or "")]
    return instance_name(RULE_PREFIX + ("-".join(p for p in parts if p) or "default"))


def _rule_tags(description: str) -> dict[str, str] | None:
    """The group tags a cloudherd rule's description holds; None for rules that are not cloudherd's."""
    if not description.startswith(RULE_MARK):
        return None
    try:
        found = json.loads(description[len(RULE_MARK):])
    except ValueError:
        return None
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else None


def request_id(token: str, names: Sequence[str] = ()) -> str:
    """GCE's requestId must be a UUID: the same token (and names) always give the same one.

    The names are part of it so that a later create with the same token but other names (more instances for
    the same group) is a new request, not a replay of the first one.
    """
    return str(uuid.uuid5(TOKEN_NAMESPACE, token if not names else token + "\n" + "\n".join(names)))


def instance_name(name: str) -> str:
    """``name`` as a valid GCE instance name (``[a-z]([-a-z0-9]{0,61}[a-z0-9])?``); valid names are kept."""
    if _NAME_RE.match(name):
        return name
    fixed = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not fixed[:1].isalpha():
        fixed = "n-" + fixed
    if len(fixed) > 63 or fixed != name.lower():
        digest = hashlib.sha256(name.encode()).hexdigest()[:6]
        fixed = fixed[:63 - 7].rstrip("-") + "-" + digest
    return fixed


def _typed(text: str, codes: Sequence[str], status: int, code: str | None = None) -> ProviderError:
    """The error type of GCE error codes or reasons (``QUOTA_EXCEEDED``, ``rateLimitExceeded``, or a message
    quoting such a code), the HTTP status as the fallback."""
    words = {_word(c) for c in codes} | {_word(w) for c in codes for w in re.findall(r"\b[A-Z][A-Z_]{5,}\b", c)}
    if words & CAPACITY_CODES:
        return CapacityError(f"{text}: try another zone or size, or later", code=code, status=status)
    if words & QUOTA_CODES:
        return QuotaError(f"{text}: ask for a higher quota or use another region", code=code, status=status)
    if status == 429 or words & THROTTLE_CODES:
        return ThrottledError(f"{text}: too many calls, retry later", code=code, status=status)
    if status == 401 or status == 403 or words & AUTH_CODES:
        return AuthError(f"{text}: the credentials lack permission: check the account's roles (e.g. "
                         "roles/compute.instanceAdmin.v1)", code=code, status=status)
    if words & NOT_FOUND_CODES:
        return NotFoundError(text, code=code, status=status)
    return error_from_status(text, status, code)


def _word(code: str) -> str:
    """ZONE_RESOURCE_POOL_EXHAUSTED and zoneResourcePoolExhausted are one word: zoneresourcepoolexhausted."""
    return re.sub(r"[^a-z]", "", code.lower())


def _addresses(item: Any) -> tuple[str | None, str | None]:
    public = private = None
    for nic in item.network_interfaces:
        private = private or nic.network_i_p or None
        for config in nic.access_configs:
            public = public or config.nat_i_p or None
    return public, private


def _credentials_path(settings: Mapping[str, Any]) -> str | None:
    given = settings.get("credentials")
    if given is not None and not isinstance(given, str | os.PathLike):
        return None
    path = given or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    return os.path.expanduser(os.fspath(path)) if path else None


def _file_credentials(path: str) -> Any:
    """Credentials from a service-account key or authorized-user JSON file; None for other kinds (which
    Application Default Credentials may read).  What google-auth says about a bad file is not repeated: it may
    quote the file."""
    from google.auth import exceptions as ax

    unusable = AuthError(f"gce: the credentials file {path} is not a usable Google credentials file "
                         "(expected a service-account JSON key)")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        raise unusable from None
    kind = data.get("type") if isinstance(data, dict) else None
    try:
        if kind == "service_account":
            from google.oauth2 import service_account

            return service_account.Credentials.from_service_account_info(data, scopes=SCOPES)
        if kind == "authorized_user":
            from google.oauth2 import credentials as user_credentials

            return user_credentials.Credentials.from_authorized_user_info(data, scopes=SCOPES)
    except (ax.GoogleAuthError, ValueError, TypeError, KeyError):
        raise unusable from None
    if kind is None:
        raise unusable
    return None


def _file_project(path: str | None) -> str | None:
    """The project named in a credentials file, if it can be read (its secrets are not kept)."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    project = data.get("project_id") or data.get("quota_project_id")
    return str(project) if project else None


def _seconds(settings: Mapping[str, Any], key: str, default: float) -> float:
    value = settings.get(key)
    if value is None:
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"gce: '{key}' must be a number of seconds, not {value!r}") from None
    if seconds <= 0:
        raise InvalidRequestError(f"gce: '{key}' must be more than 0 seconds")
    return seconds


def _scrub(text: str) -> str:
    for pattern in _SECRET_RES:
        text = pattern.sub("[redacted]", text)
    return text
