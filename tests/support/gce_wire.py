"""A small Compute Engine API (v1) server for tests: real HTTP on 127.0.0.1, GCE's REST JSON wire format.

It holds one project's instances in memory and speaks the parts of the public Compute API v1 that the
``gce`` provider uses: ``instances`` (bulkInsert, list with ``filter``/``maxResults``/``pageToken``, get,
delete, stop, start), zone and global ``operations`` (get, wait), ``machineTypes.list``, ``zones.list``,
``images.list`` and ``firewalls`` (get, insert).  Errors come back as GCE sends them: an HTTP error with
``{"error": {"code", "message", "errors": [{"reason", "message", "domain"}], "status"}}``, or an operation
that ends ``DONE`` with ``error.errors[{code, message}]``.

Tests steer it the way a cloud would behave, never by reaching into the driver: ``fail(...)`` makes
chosen calls fail, ``hang_operations`` keeps operations RUNNING, ``boot_lists`` keeps new instances
STAGING (no external IP yet) for a number of list calls, ``require_token`` demands a bearer token.
Every request is counted server-side (``calls``) and logged (``requests``).
"""

from __future__ import annotations

import itertools
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from wire_server import WireServer

PREFIX = "/compute/v1"
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_TERM = r'\(?\s*labels\.([a-z][a-z0-9_-]*)\s*=\s*"([^"]*)"\s*\)?'
FILTER = re.compile(rf"^\s*{_TERM}(\s+(AND\s+)?{_TERM})*\s*$")
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}

# name, guestCpus, memoryMb, isSharedCpu, deprecated state
MACHINE_TYPES = [
    ("e2-micro", 2, 1024, True, None), ("e2-small", 2, 2048, True, None), ("e2-medium", 2, 4096, True, None),
    ("e2-standard-2", 2, 8192, False, None), ("e2-standard-4", 4, 16384, False, None),
    ("e2-highmem-2", 2, 16384, False, None), ("e2-highcpu-8", 8, 8192, False, None),
    ("n2-standard-2", 2, 8192, False, None), ("n2-standard-4", 4, 16384, False, None),
    ("f1-micro", 1, 614, True, "DEPRECATED"), ("n1-ancient-1", 1, 3840, False, "OBSOLETE"),
    ("t2a-standard-1", 1, 4096, False, None),
]


@dataclass
class Failure:
    """Make the next ``times`` calls named ``call`` fail: with an HTTP error, or as a failed operation."""

    call: str
    status: int = 400
    reason: str = "invalid"
    message: str = "failed"
    op_error: str | None = None  # an operation error code (the call itself succeeds)
    times: int = 1


@dataclass
class Operation:
    body: dict[str, Any]
    effect: Callable[[], None] | None = None
    error: tuple[str, str, int] | None = None  # code, message, http status
    hang: bool = False
    running_waits: int = 0  # waits still to answer RUNNING before the operation finishes


@dataclass
class FakeGce:
    project: str = "test-project"
    zones: tuple[str, ...] = ("us-central1-a", "us-central1-b", "europe-west1-b")
    page_size: int = 2  # small, so that pagination is really followed
    hang_operations: bool = False
    wait_hold: float = 0.05  # how long operations.wait holds a RUNNING operation before answering
    running_waits: int = 0  # waits that each new operation answers RUNNING (held ``wait_hold``) before it finishes
    boot_lists: int = 0  # list calls a new instance stays STAGING without an external IP
    require_token: str | None = None
    instances: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    firewalls: dict[str, dict[str, Any]] = field(default_factory=dict)
    images: list[dict[str, Any]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._operations: dict[str, Operation] = {}
        self._request_ids: dict[str, str] = {}
        self._ids = itertools.count(4_000_000_000_000_000_001)
        self._ips = itertools.count(2)
        self._booting: dict[tuple[str, str], int] = {}
        self._stopping = threading.Event()
        self._released = threading.Event()  # set: every held operations.wait answers now
        self.held = 0  # operations.wait calls being held right now
        self._wire: WireServer | None = None
        self.url = ""

    # -- life ----------------------------------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._wire = WireServer(Handler, "fake-gce")
        self.url = self._wire.start()
        return self.url

    def stop(self) -> None:
        self._stopping.set()
        self._released.set()
        if self._wire is not None:
            self._wire.stop()

    def reset(self) -> None:
        with self._lock:
            self.instances.clear()
            self.firewalls.clear()
            self.images.clear()
            self.calls.clear()
            self.requests.clear()
            self.failures.clear()
            self._operations.clear()
            self._request_ids.clear()
            self._booting.clear()
            self.hang_operations = False
            self.wait_hold = 0.05
            self.running_waits = 0
            self._released.clear()
            self.boot_lists = 0
            self.require_token = None

    # -- steering (what a cloud might do) ------------------------------------------------------------

    def release_held(self) -> None:
        """Answer every held operations.wait now (and any later one at once, until reset)."""
        self._released.set()

    def fail(self, call: str, *, status: int = 400, reason: str = "invalid", message: str = "failed",
             op_error: str | None = None, times: int = 1) -> None:
        with self._lock:
            self.failures.append(Failure(call, status, reason, message, op_error, times))

    def set_status(self, name: str, status: str, zone: str | None = None) -> None:
        with self._lock:
            self.instances[(zone or self.zones[0], name)]["status"] = status

    def add_instance(self, name: str, labels: dict[str, str], zone: str | None = None, status: str = "RUNNING") -> None:
        """An instance made elsewhere (the console, another tool)."""
        with self._lock:
            self._make_instance(zone or self.zones[0], name, {"machineType": "e2-small", "labels": labels}, status)

    def names(self, zone: str | None = None) -> list[str]:
        with self._lock:
            return sorted(n for (z, n) in self.instances if z == (zone or self.zones[0]))

    def last(self, call: str) -> dict[str, Any]:
        with self._lock:
            return next(r for r in reversed(self.requests) if r["call"] == call)

    # -- request handling ----------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        payload = json.loads(body) if body else None
        route = self._route(method, parts.path)
        if route is None:
            return _error(404, "notFound", f"The requested URL {parts.path} was not found on this server.")
        call, args = route
        with self._lock:
            self.calls[call] += 1
            self.requests.append({"call": call, "method": method, "path": parts.path, "query": query,
                                  "body": payload, "headers": dict(headers)})
        if self.require_token is not None:
            auth = headers.get("authorization", "")
            if not auth:
                return _error(401, "required", "Request is missing required authentication credential. Expected "
                              "OAuth 2 access token, login cookie or other valid authentication credential.")
            if auth != f"Bearer {self.require_token}":
                return _error(401, "authError", "Request had invalid authentication credentials. Expected OAuth 2 "
                              "access token, login cookie or other valid authentication credential.")
        failure = self._take_failure(call)
        if failure is not None and failure.op_error is None:
            return _error(failure.status, failure.reason, failure.message)
        handler = getattr(self, "_" + call.replace(".", "_"))
        with self._lock:
            result: tuple[int, Any] = handler(query, payload, failure, **args)
        return result

    def _route(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        if not path.startswith(PREFIX + "/projects/"):
            return None
        rest = path[len(PREFIX + "/projects/"):]
        project, _, rest = rest.partition("/")
        if project != self.project:
            return None
        table: list[tuple[str, str, str]] = [
            ("POST", r"zones/(?P<zone>[^/]+)/instances/bulkInsert", "instances.bulkInsert"),
            ("GET", r"zones/(?P<zone>[^/]+)/instances", "instances.list"),
            ("GET", r"zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)", "instances.get"),
            ("DELETE", r"zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)", "instances.delete"),
            ("POST", r"zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/stop", "instances.stop"),
            ("POST", r"zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/start", "instances.start"),
            ("GET", r"zones/(?P<zone>[^/]+)/operations/(?P<op>[^/]+)", "zoneOperations.get"),
            ("POST", r"zones/(?P<zone>[^/]+)/operations/(?P<op>[^/]+)/wait", "zoneOperations.wait"),
            ("GET", r"global/operations/(?P<op>[^/]+)", "globalOperations.get"),
            ("POST", r"global/operations/(?P<op>[^/]+)/wait", "globalOperations.wait"),
            ("GET", r"zones/(?P<zone>[^/]+)/machineTypes", "machineTypes.list"),
            ("GET", r"zones", "zones.list"),
            ("GET", r"global/images", "images.list"),
            ("GET", r"global/firewalls/(?P<name>[^/]+)", "firewalls.get"),
            ("PATCH", r"global/firewalls/(?P<name>[^/]+)", "firewalls.patch"),
            ("DELETE", r"global/firewalls/(?P<name>[^/]+)", "firewalls.delete"),
            ("GET", r"global/firewalls", "firewalls.list"),
            ("POST", r"global/firewalls", "firewalls.insert"),
        ]
        for verb, pattern, call in table:
            m = re.fullmatch(pattern, rest)
            if verb == method and m:
                return call, m.groupdict()
        return None

    def _take_failure(self, call: str) -> Failure | None:
        with self._lock:
            for failure in self.failures:
                if failure.call == call and failure.times > 0:
                    failure.times -= 1
                    return failure
        return None

    def _check_zone(self, zone: str) -> tuple[int, Any] | None:
        if zone not in self.zones:
            return _error(400, "invalid", f"Invalid value for field 'zone': '{zone}'. Unknown zone.")
        return None

    # -- instances -----------------------------------------------------------------------------------

    def _instances_bulkInsert(self, query: dict[str, str], body: Any, failure: Failure | None,
                              zone: str) -> tuple[int, Any]:
        if (bad := self._check_zone(zone)) is not None:
            return bad
        request_id = query.get("requestId")
        if request_id and request_id in self._request_ids:  # the same request again: the same operation
            return 200, self._operations[self._request_ids[request_id]].body
        body = body or {}
        count = int(body.get("count", 0))
        props = body.get("instanceProperties") or {}
        per_instance = body.get("perInstanceProperties") or {}
        pattern = body.get("namePattern")
        if count < 1:
            return _error(400, "invalid", "Invalid value for field 'resource.count': '0'. Must be greater than 0.")
        if not pattern and not per_instance:
            return _error(400, "invalid", "Either namePattern or perInstanceProperties must be set.")
        machine = props.get("machineType", "")
        if machine not in {m[0] for m in MACHINE_TYPES}:
            return _error(400, "invalid", f"Invalid value for field 'resource.instanceProperties.machineType': "
                          f"'{machine}'. Machine type with name '{machine}' does not exist in zone '{zone}'.")
        for key, value in (props.get("labels") or {}).items():
            if not LABEL_KEY.match(key) or not LABEL_VALUE.match(value):
                return _error(400, "invalid", f"Invalid value for field 'resource.instanceProperties.labels': "
                              f"'{key}'. Label keys and values must conform to [a-z0-9_-].")
        disks = props.get("disks") or []
        if not any(d.get("boot") and (d.get("initializeParams") or {}).get("sourceImage") for d in disks):
            return _error(400, "invalid", "Invalid value for field 'resource.instanceProperties.disks': a boot disk "
                          "with a source image is required.")
        names = list(per_instance)
        if pattern:
            hashes = re.search(r"#+", pattern)
            if not hashes:
                return _error(400, "invalid", f"Invalid value for field 'resource.namePattern': '{pattern}'.")
            width = len(hashes.group(0))
            taken = {n for (z, n) in self.instances if z == zone}
            number = 1
            while len(names) < count:
                candidate = pattern[:hashes.start()] + str(number).zfill(width) + pattern[hashes.end():]
                if candidate not in taken and candidate not in names:
                    names.append(candidate)
                number += 1
        names = names[:count]
        for name in names:
            if not NAME.match(name):
                return _error(400, "invalid", f"Invalid value for field 'resource.perInstanceProperties': '{name}'. "
                              "Must be a match of regex '[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?'")
        error = None
        if failure is not None and failure.op_error:
            error = (failure.op_error, failure.message, failure.status if failure.status >= 400 else 503)
        elif clash := [n for n in names if (zone, n) in self.instances]:
            error = ("RESOURCE_ALREADY_EXISTS", f"The resource 'projects/{self.project}/zones/{zone}/instances/"
                     f"{clash[0]}' already exists", 409)

        def effect() -> None:
            for name in names:
                self._make_instance(zone, name, props, "STAGING" if self.boot_lists else "RUNNING")

        op = self._operation("bulkInsert", zone, f"zones/{zone}/instances/{names[0]}", effect, error)
        if request_id:
            self._request_ids[request_id] = op.body["name"]
        return 200, op.body

    def _make_instance(self, zone: str, name: str, props: dict[str, Any], status: str) -> None:
        instance_id = str(next(self._ids))
        n = next(self._ips)
        nics: list[dict[str, Any]] = []
        for nic in props.get("networkInterfaces") or [{"network": "global/networks/default"}]:
            item: dict[str, Any] = {"kind": "compute#networkInterface", "name": f"nic{len(nics)}",
                                    "network": self._link(nic.get("network", "global/networks/default")),
                                    "networkIP": f"10.128.0.{n}", "stackType": "IPV4_ONLY",
                                    "fingerprint": "abcdEFGH123="}
            if nic.get("accessConfigs"):
                item["accessConfigs"] = [{"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT",
                                          "name": ac.get("name", "External NAT"), "networkTier": "PREMIUM",
                                          "natIP": f"34.66.{n // 250}.{n % 250 + 1}"}
                                         for ac in nic["accessConfigs"]]
            nics.append(item)
        disks = [{"kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE", "boot": True,
                  "autoDelete": True, "index": 0, "deviceName": "persistent-disk-0", "interface": "SCSI",
                  "source": self._link(f"zones/{zone}/disks/{name}"), "diskSizeGb": "10"}]
        self.instances[(zone, name)] = {
            "kind": "compute#instance", "id": instance_id, "creationTimestamp": _timestamp(), "name": name,
            "machineType": self._link(f"zones/{zone}/machineTypes/{props.get('machineType', 'e2-small')}"),
            "status": status, "zone": self._link(f"zones/{zone}"), "networkInterfaces": nics, "disks": disks,
            "metadata": {"kind": "compute#metadata", "fingerprint": "Xyz0aBcD1eF=",
                         "items": list((props.get("metadata") or {}).get("items") or [])},
            "labels": dict(props.get("labels") or {}), "labelFingerprint": "42WmSpB8rSM=",
            "tags": {"items": list((props.get("tags") or {}).get("items") or []), "fingerprint": "42WmSpB8rSM="},
            "scheduling": {"onHostMaintenance": "MIGRATE", "automaticRestart": True, "preemptible": False,
                           "provisioningModel": "STANDARD"},
            "cpuPlatform": "Intel Broadwell", "deletionProtection": False, "startRestricted": False,
            "fingerprint": "Tsp3c0dE9aA=", "lastStartTimestamp": _timestamp(),
            "selfLink": self._link(f"zones/{zone}/instances/{name}"),
        }
        if status == "STAGING":
            self._booting[(zone, name)] = self.boot_lists

    def _instances_list(self, query: dict[str, str], body: Any, failure: Failure | None,
                        zone: str) -> tuple[int, Any]:
        if (bad := self._check_zone(zone)) is not None:
            return bad
        flt = query.get("filter", "")
        wanted: list[tuple[str, str]] = []
        if flt:
            if not FILTER.match(flt):
                return _error(400, "invalid", f"Invalid list filter expression '{flt}'.")
            wanted = re.findall(r'labels\.([a-z][a-z0-9_-]*)\s*=\s*"([^"]*)"', flt)
        size = min(self.page_size, int(query.get("maxResults") or 500))
        try:
            offset = int(query.get("pageToken") or 0)
        except ValueError:
            return _error(400, "invalid", "Invalid value for field 'pageToken'.")
        found = [item for (z, _), item in sorted(self.instances.items())
                 if z == zone and all(item["labels"].get(k) == v for k, v in wanted)]
        page = found[offset:offset + size]
        for item in page:  # a booting instance comes up after being listed boot_lists times
            key = (zone, item["name"])
            if key in self._booting:
                self._booting[key] -= 1
                if self._booting[key] < 0:
                    del self._booting[key]
                    item["status"] = "RUNNING"
        result: dict[str, Any] = {"kind": "compute#instanceList",
                                  "id": f"projects/{self.project}/zones/{zone}/instances",
                                  "items": [self._visible(i) for i in page],
                                  "selfLink": self._link(f"zones/{zone}/instances")}
        if offset + size < len(found):
            result["nextPageToken"] = str(offset + size)
        return 200, result

    def _visible(self, item: dict[str, Any]) -> dict[str, Any]:
        """As GCE shows it: no external IP while staging or stopped."""
        shown = json.loads(json.dumps(item))
        if shown["status"] not in ("RUNNING", "STOPPING", "SUSPENDING"):
            for nic in shown["networkInterfaces"]:
                for ac in nic.get("accessConfigs", []):
                    ac.pop("natIP", None)
        return shown

    def _instances_get(self, query: dict[str, str], body: Any, failure: Failure | None, zone: str,
                       name: str) -> tuple[int, Any]:
        item = self.instances.get((zone, name))
        if item is None:
            return self._not_found(zone, name)
        return 200, self._visible(item)

    def _not_found(self, zone: str, name: str) -> tuple[int, Any]:
        return _error(404, "notFound", f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' "
                      "was not found")

    def _instances_delete(self, query: dict[str, str], body: Any, failure: Failure | None, zone: str,
                          name: str) -> tuple[int, Any]:
        item = self.instances.get((zone, name))
        if item is None:
            return self._not_found(zone, name)
        item["status"] = "STOPPING"

        def effect() -> None:
            self.instances.pop((zone, name), None)

        return 200, self._operation("delete", zone, f"zones/{zone}/instances/{name}", effect, None).body

    def _instances_stop(self, query: dict[str, str], body: Any, failure: Failure | None, zone: str,
                        name: str) -> tuple[int, Any]:
        item = self.instances.get((zone, name))
        if item is None:
            return self._not_found(zone, name)
        item["status"] = "STOPPING"

        def effect() -> None:
            item["status"] = "TERMINATED"
            item["lastStopTimestamp"] = _timestamp()

        return 200, self._operation("stop", zone, f"zones/{zone}/instances/{name}", effect, None).body

    def _instances_start(self, query: dict[str, str], body: Any, failure: Failure | None, zone: str,
                         name: str) -> tuple[int, Any]:
        item = self.instances.get((zone, name))
        if item is None:
            return self._not_found(zone, name)
        item["status"] = "STAGING"

        def effect() -> None:
            item["status"] = "RUNNING"
            item["lastStartTimestamp"] = _timestamp()

        return 200, self._operation("start", zone, f"zones/{zone}/instances/{name}", effect, None).body

    # -- operations ----------------------------------------------------------------------------------

    def _operation(self, kind: str, zone: str | None, target: str, effect: Callable[[], None] | None,
                   error: tuple[str, str, int] | None) -> Operation:
        name = f"operation-{int(time.time() * 1000)}-{random.getrandbits(48):012x}-{random.getrandbits(32):08x}"
        where = f"zones/{zone}" if zone else "global"
        body: dict[str, Any] = {
            "kind": "compute#operation", "id": str(next(self._ids)), "name": name, "operationType": kind,
            "targetLink": self._link(target), "targetId": str(next(self._ids)), "status": "RUNNING",
            "user": "cloudherd-test@test-project.iam.gserviceaccount.com", "progress": 0,
            "insertTime": _timestamp(), "startTime": _timestamp(), "selfLink": self._link(f"{where}/operations/{name}"),
        }
        if zone:
            body["zone"] = self._link(f"zones/{zone}")
        op = Operation(body, effect, error, self.hang_operations, self.running_waits)
        self._operations[name] = op
        return op

    def _finish(self, op: Operation) -> None:
        if op.hang or op.body["status"] == "DONE":
            return
        if op.error is not None:
            code, message, http = op.error
            op.body["error"] = {"errors": [{"code": code, "message": message}]}
            op.body["httpErrorStatusCode"] = http
            op.body["httpErrorMessage"] = {409: "CONFLICT", 503: "SERVICE UNAVAILABLE"}.get(http, "BAD REQUEST")
        elif op.effect is not None:
            op.effect()
        op.body.update(status="DONE", progress=100, endTime=_timestamp())

    def _find_op(self, op: str, zone: str | None) -> Operation | None:
        found = self._operations.get(op)
        if found is None or (zone is not None and found.body.get("zone") != self._link(f"zones/{zone}")):
            return None
        return found

    def _op_missing(self, op: str) -> tuple[int, Any]:
        return _error(404, "notFound", f"The resource 'projects/{self.project}/.../operations/{op}' was not found")

    def _zoneOperations_get(self, query: dict[str, str], body: Any, failure: Failure | None, zone: str,
                            op: str) -> tuple[int, Any]:
        found = self._find_op(op, zone)
        if found is None:
            return self._op_missing(op)
        self._finish(found)
        return 200, found.body

    def _zoneOperations_wait(self, query: dict[str, str], body: Any, failure: Failure | None, zone: str,
                             op: str) -> tuple[int, Any]:
        found = self._find_op(op, zone)
        if found is None:
            return self._op_missing(op)
        return self._wait(found)

    def _wait(self, found: Operation) -> tuple[int, Any]:
        if found.hang or found.running_waits > 0:  # like GCE: hold the call a while, then answer the operation as is
            self.held += 1
            self._lock.release()
            try:
                self._released.wait(self.wait_hold)
            finally:
                self._lock.acquire()
                self.held -= 1
            if found.running_waits > 0:
                found.running_waits -= 1
                return 200, found.body
        self._finish(found)
        return 200, found.body

    def _globalOperations_get(self, query: dict[str, str], body: Any, failure: Failure | None,
                              op: str) -> tuple[int, Any]:
        found = self._find_op(op, None)
        if found is None:
            return self._op_missing(op)
        self._finish(found)
        return 200, found.body

    def _globalOperations_wait(self, query: dict[str, str], body: Any, failure: Failure | None,
                               op: str) -> tuple[int, Any]:
        found = self._find_op(op, None)
        if found is None:
            return self._op_missing(op)
        return self._wait(found)

    # -- catalogs ------------------------------------------------------------------------------------

    def _page(self, query: dict[str, str], kind: str, items: list[dict[str, Any]], link: str) -> tuple[int, Any]:
        size = min(self.page_size * 3, int(query.get("maxResults") or 500))
        offset = int(query.get("pageToken") or 0)
        result: dict[str, Any] = {"kind": kind, "id": link, "items": items[offset:offset + size],
                                  "selfLink": self._link(link)}
        if offset + size < len(items):
            result["nextPageToken"] = str(offset + size)
        return 200, result

    def _machineTypes_list(self, query: dict[str, str], body: Any, failure: Failure | None,
                           zone: str) -> tuple[int, Any]:
        if (bad := self._check_zone(zone)) is not None:
            return bad
        items = []
        for n, (name, cpus, memory, shared, deprecated) in enumerate(MACHINE_TYPES):
            item: dict[str, Any] = {
                "kind": "compute#machineType", "id": str(801000 + n),
                "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
                "name": name, "description": f"{cpus} vCPU, {memory / 1024:g} GB RAM", "guestCpus": cpus,
                "memoryMb": memory, "imageSpaceGb": 0, "maximumPersistentDisks": 128,
                "maximumPersistentDisksSizeGb": "263168", "zone": zone, "isSharedCpu": shared,
                "selfLink": self._link(f"zones/{zone}/machineTypes/{name}"),
            }
            if deprecated:
                item["deprecated"] = {"state": deprecated,
                                      "replacement": self._link(f"zones/{zone}/machineTypes/e2-small")}
            items.append(item)
        return self._page(query, "compute#machineTypeList", items, f"zones/{zone}/machineTypes")

    def _zones_list(self, query: dict[str, str], body: Any, failure: Failure | None) -> tuple[int, Any]:
        items = [{"kind": "compute#zone", "id": str(2000 + n), "name": zone, "description": zone,
                  "status": "UP", "region": self._link(f"regions/{zone.rsplit('-', 1)[0]}"),
                  "selfLink": self._link(f"zones/{zone}"), "availableCpuPlatforms": ["Intel Broadwell"]}
                 for n, zone in enumerate(self.zones)]
        return self._page(query, "compute#zoneList", items, "zones")

    def _images_list(self, query: dict[str, str], body: Any, failure: Failure | None) -> tuple[int, Any]:
        return self._page(query, "compute#imageList", list(self.images), "global/images")

    def _firewalls_get(self, query: dict[str, str], body: Any, failure: Failure | None,
                       name: str) -> tuple[int, Any]:
        item = self.firewalls.get(name)
        if item is None:
            return _error(404, "notFound",
                          f"The resource 'projects/{self.project}/global/firewalls/{name}' was not found")
        return 200, item

    def _firewalls_insert(self, query: dict[str, str], body: Any, failure: Failure | None) -> tuple[int, Any]:
        body = body or {}
        name = body.get("name", "")
        if name in self.firewalls:
            return _error(409, "alreadyExists", f"The resource 'projects/{self.project}/global/firewalls/{name}' "
                          "already exists")
        if not NAME.match(name) or not body.get("allowed"):
            return _error(400, "invalid", f"Invalid value for field 'resource.name': '{name}'.")

        def effect() -> None:
            self.firewalls[name] = {"kind": "compute#firewall", "id": str(next(self._ids)),
                                    "selfLink": self._link(f"global/firewalls/{name}"), **body}

        return 200, self._operation("insert", None, f"global/firewalls/{name}", effect, None).body

    def _firewalls_patch(self, query: dict[str, str], body: Any, failure: Failure | None,
                         name: str) -> tuple[int, Any]:
        if name not in self.firewalls:
            return self._firewalls_get(query, body, failure, name)

        def effect() -> None:
            self.firewalls[name].update(body or {})

        return 200, self._operation("patch", None, f"global/firewalls/{name}", effect, None).body

    def _firewalls_delete(self, query: dict[str, str], body: Any, failure: Failure | None,
                          name: str) -> tuple[int, Any]:
        if name not in self.firewalls:
            return self._firewalls_get(query, body, failure, name)

        def effect() -> None:
            self.firewalls.pop(name, None)

        return 200, self._operation("delete", None, f"global/firewalls/{name}", effect, None).body

    def _firewalls_list(self, query: dict[str, str], body: Any, failure: Failure | None) -> tuple[int, Any]:
        return self._page(query, "compute#firewallList", [self.firewalls[n] for n in sorted(self.firewalls)],
                          "global/firewalls")

    def _link(self, path: str) -> str:
        if path.startswith("https://"):
            return path
        if path.startswith("projects/"):
            return f"https://www.googleapis.com/compute/v1/{path}"
        return f"https://www.googleapis.com/compute/v1/projects/{self.project}/{path}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeGce

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, payload = self.server_fake.handle(self.command, self.path, headers, body)
        except Exception as exc:  # a bug in the fake: say so as a 500, like a server would
            status, payload = _error(500, "backendError", f"fake server error: {exc!r}")
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client stopped waiting (its own timeout): nothing to answer
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def _error(status: int, reason: str, message: str) -> tuple[int, Any]:
    domain = "usageLimits" if reason in ("rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded") else "global"
    return status, {"error": {"code": status, "message": message,
                              "errors": [{"message": message, "domain": domain, "reason": reason}],
                              "status": STATUS_NAMES.get(status, "UNKNOWN")}}


def _timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000-07:00", time.localtime())
