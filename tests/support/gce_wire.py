"""A small Compute Engine API (v1) server for tests: real HTTP on 127.0.0.1, GCE's REST JSON wire format.

It holds one project's instances in memory and speaks the parts of the public Compute API v1 that the
``gce`` provider uses: ``instances`` (bulkInsert, list with ``filter``/``maxResults``/``pageToken``, get,
delete, stop, start), zone and global ``operations`` (get, wait; the zone's list with a ``filter`` on
``operationType``), ``machineTypes.list``, ``zones.list``, ``images.list`` and ``firewalls`` (get, insert)
(those besides instances: tests/support/gce_wire_calls.py).  Errors come back as GCE sends them: an HTTP
error with ``{"error": {"code", "message", "errors": [{"reason", "message", "domain"}], "status"}}``, or an
operation that ends ``DONE`` with ``error.errors[{code, message}]``.  An instance keeps the ``scheduling``
it was made with (a Spot VM: ``provisioningModel: SPOT``).

Tests steer it the way a cloud would behave, never by reaching into the driver: ``fail(...)`` makes
chosen calls fail, ``hang_operations`` keeps operations RUNNING, ``boot_lists`` keeps new instances
STAGING (no external IP yet) for a number of list calls, ``require_token`` demands a bearer token,
``spot_exhausted`` has the zone out of Spot capacity, ``preempt(name)`` takes a Spot VM back.
Every request is counted server-side (``calls``) and logged (``requests``).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gce_wire_calls import MACHINE_TYPES, NAME, CatalogCalls, Failure, Operation, timestamp, wire_error
from wire_server import WireServer

PREFIX = "/compute/v1"
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_TERM = r'\(?\s*labels\.([a-z][a-z0-9_-]*)\s*=\s*"([^"]*)"\s*\)?'
FILTER = re.compile(rf"^\s*{_TERM}(\s+(AND\s+)?{_TERM})*\s*$")


@dataclass
class FakeGce(CatalogCalls):
    project: str = "test-project"
    zones: tuple[str, ...] = ("us-central1-a", "us-central1-b", "europe-west1-b")
    page_size: int = 2  # small, so that pagination is really followed
    hang_operations: bool = False
    wait_hold: float = 0.05  # how long operations.wait holds a RUNNING operation before answering
    running_waits: int = 0  # waits that each new operation answers RUNNING (held ``wait_hold``) before it finishes
    boot_lists: int = 0  # list calls a new instance stays STAGING without an external IP
    require_token: str | None = None
    spot_exhausted: bool = False  # every Spot bulkInsert ends ZONE_RESOURCE_POOL_EXHAUSTED (on-demand ones work)
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
            self.spot_exhausted = False

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

    def add_instance(self, name: str, labels: dict[str, str], zone: str | None = None, status: str = "RUNNING",
                     scheduling: dict[str, Any] | None = None) -> None:
        """An instance made elsewhere (the console, another tool), with the ``scheduling`` it was made with."""
        with self._lock:
            self._make_instance(zone or self.zones[0], name, {"machineType": "e2-small", "labels": labels,
                                                              "scheduling": scheduling or {}}, status)

    def preempt(self, name: str, zone: str | None = None, *, grace: bool = False) -> dict[str, Any]:
        """Take a Spot VM back as GCE does: a ``compute.instances.preempted`` operation recorded in its zone (its
        ``targetId`` the VM's id), then the VM deleted (``instanceTerminationAction: DELETE``) or stopped
        (``STOP``); ``grace``: left STOPPING, as in the 30 s GCE gives the VM to shut down.  The operation."""
        zone = zone or self.zones[0]
        with self._lock:
            item = self.instances[(zone, name)]
            scheduling = item["scheduling"]
            if scheduling.get("provisioningModel") != "SPOT" and not scheduling.get("preemptible"):
                raise ValueError(f"{name} is not a Spot VM: GCE takes back only Spot and preemptible VMs")
            op = self._system_event("compute.instances.preempted", zone, f"zones/{zone}/instances/{name}",
                                    item["id"], "Instance was preempted.")
            if grace:
                item["status"] = "STOPPING"
            elif scheduling.get("instanceTerminationAction") == "DELETE":
                del self.instances[(zone, name)]
            else:
                item.update(status="TERMINATED", lastStopTimestamp=timestamp())
            return dict(op.body)

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
            return wire_error(404, "notFound", f"The requested URL {parts.path} was not found on this server.")
        call, args = route
        with self._lock:
            self.calls[call] += 1
            self.requests.append({"call": call, "method": method, "path": parts.path, "query": query,
                                  "body": payload, "headers": dict(headers)})
        if self.require_token is not None:
            auth = headers.get("authorization", "")
            if not auth:
                return wire_error(401, "required", "Request is missing required authentication credential. Expected "
                              "OAuth 2 access token, login cookie or other valid authentication credential.")
            if auth != f"Bearer {self.require_token}":
                return wire_error(401, "authError", "Request had invalid authentication credentials. Expected OAuth 2 "
                              "access token, login cookie or other valid authentication credential.")
        failure = self._take_failure(call)
        if failure is not None and failure.op_error is None:
            return wire_error(failure.status, failure.reason, failure.message)
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
            ("GET", r"zones/(?P<zone>[^/]+)/operations", "zoneOperations.list"),
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
            return wire_error(400, "invalid", "Invalid value for field 'resource.count': '0'. Must be greater than 0.")
        if not pattern and not per_instance:
            return wire_error(400, "invalid", "Either namePattern or perInstanceProperties must be set.")
        machine = props.get("machineType", "")
        if machine not in {m[0] for m in MACHINE_TYPES}:
            return wire_error(400, "invalid", f"Invalid value for field 'resource.instanceProperties.machineType': "
                          f"'{machine}'. Machine type with name '{machine}' does not exist in zone '{zone}'.")
        for key, value in (props.get("labels") or {}).items():
            if not LABEL_KEY.match(key) or not LABEL_VALUE.match(value):
                return wire_error(400, "invalid", f"Invalid value for field 'resource.instanceProperties.labels': "
                              f"'{key}'. Label keys and values must conform to [a-z0-9_-].")
        disks = props.get("disks") or []
        if not any(d.get("boot") and (d.get("initializeParams") or {}).get("sourceImage") for d in disks):
            return wire_error(400, "invalid", "Invalid value for field 'resource.instanceProperties.disks': a boot "
                              "disk with a source image is required.")
        names = list(per_instance)
        if pattern:
            hashes = re.search(r"#+", pattern)
            if not hashes:
                return wire_error(400, "invalid", f"Invalid value for field 'resource.namePattern': '{pattern}'.")
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
                return wire_error(400, "invalid", f"Invalid value for field 'resource.perInstanceProperties': "
                                  f"'{name}'. Must be a match of regex '[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?'")
        scheduling = props.get("scheduling") or {}
        if scheduling.get("provisioningModel") == "SPOT" and (scheduling.get("automaticRestart")
                                                              or scheduling.get("onHostMaintenance") == "MIGRATE"):
            return wire_error(400, "invalid", "Invalid value for field 'resource.instanceProperties.scheduling': "
                              "Spot VMs must have automaticRestart false and onHostMaintenance TERMINATE.")
        error = None
        if failure is not None and failure.op_error:
            error = (failure.op_error, failure.message, failure.status if failure.status >= 400 else 503)
        elif self.spot_exhausted and scheduling.get("provisioningModel") == "SPOT":
            error = ("ZONE_RESOURCE_POOL_EXHAUSTED", f"The zone 'projects/{self.project}/zones/{zone}' does not have "
                     "enough resources available to fulfill the request.  Try a different zone, or try again "
                     "later.", 503)
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
            "kind": "compute#instance", "id": instance_id, "creationTimestamp": timestamp(), "name": name,
            "machineType": self._link(f"zones/{zone}/machineTypes/{props.get('machineType', 'e2-small')}"),
            "status": status, "zone": self._link(f"zones/{zone}"), "networkInterfaces": nics, "disks": disks,
            "metadata": {"kind": "compute#metadata", "fingerprint": "Xyz0aBcD1eF=",
                         "items": list((props.get("metadata") or {}).get("items") or [])},
            "labels": dict(props.get("labels") or {}), "labelFingerprint": "42WmSpB8rSM=",
            "tags": {"items": list((props.get("tags") or {}).get("items") or []), "fingerprint": "42WmSpB8rSM="},
            "scheduling": _scheduling(props.get("scheduling") or {}),
            "cpuPlatform": "Intel Broadwell", "deletionProtection": False, "startRestricted": False,
            "fingerprint": "Tsp3c0dE9aA=", "lastStartTimestamp": timestamp(),
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
                return wire_error(400, "invalid", f"Invalid list filter expression '{flt}'.")
            wanted = re.findall(r'labels\.([a-z][a-z0-9_-]*)\s*=\s*"([^"]*)"', flt)
        size = min(self.page_size, int(query.get("maxResults") or 500))
        try:
            offset = int(query.get("pageToken") or 0)
        except ValueError:
            return wire_error(400, "invalid", "Invalid value for field 'pageToken'.")
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
        return wire_error(404, "notFound", f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' "
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
            item["lastStopTimestamp"] = timestamp()

        return 200, self._operation("stop", zone, f"zones/{zone}/instances/{name}", effect, None).body

    def _instances_start(self, query: dict[str, str], body: Any, failure: Failure | None, zone: str,
                         name: str) -> tuple[int, Any]:
        item = self.instances.get((zone, name))
        if item is None:
            return self._not_found(zone, name)
        item["status"] = "STAGING"

        def effect() -> None:
            item["status"] = "RUNNING"
            item["lastStartTimestamp"] = timestamp()

        return 200, self._operation("start", zone, f"zones/{zone}/instances/{name}", effect, None).body


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
            status, payload = wire_error(500, "backendError", f"fake server error: {exc!r}")
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


def _scheduling(sent: dict[str, Any]) -> dict[str, Any]:
    """An instance's scheduling as GCE shows it: what was sent over GCE's defaults (a Spot VM's included)."""
    spot = sent.get("provisioningModel") == "SPOT" or sent.get("preemptible")
    defaults: dict[str, Any] = {"onHostMaintenance": "TERMINATE" if spot else "MIGRATE", "automaticRestart": not spot,
                                "preemptible": False, "provisioningModel": "STANDARD"}
    if sent.get("provisioningModel") == "SPOT":
        defaults["instanceTerminationAction"] = "STOP"
    return {**defaults, **sent}
