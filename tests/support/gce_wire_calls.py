"""The Compute API fake's calls that stand apart from instances (tests/support/gce_wire.py uses them): zone and
global operations (get, wait, and the zone's list with a ``filter`` on ``operationType``, paginated), the
catalogs (``machineTypes``, ``zones``, ``images``) and ``firewalls``; GCE's wire format, errors as GCE sends
them."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
# the filters zoneOperations.list takes here: one comparison of operationType (GCE's filter syntax)
OPERATION_FILTER = re.compile(r'^\s*\(?\s*operationType\s*(=|!=)\s*"([^"]*)"\s*\)?\s*$')
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


class OperationCalls:
    """Zone and global operations; the links of resources.  Mixed into FakeGce, whose state it reads."""

    project: str
    zones: tuple[str, ...]
    page_size: int
    running_waits: int
    hang_operations: bool
    wait_hold: float
    held: int
    _lock: threading.RLock
    _operations: dict[str, Operation]
    _released: threading.Event
    _ids: Any

    def _check_zone(self, zone: str) -> tuple[int, Any] | None:
        if zone not in self.zones:
            return wire_error(400, "invalid", f"Invalid value for field 'zone': '{zone}'. Unknown zone.")
        return None

    def _operation(self, kind: str, zone: str | None, target: str, effect: Callable[[], None] | None,
                   error: tuple[str, str, int] | None, prefix: str = "operation") -> Operation:
        name = f"{prefix}-{int(time.time() * 1000)}-{random.getrandbits(48):012x}-{random.getrandbits(32):08x}"
        where = f"zones/{zone}" if zone else "global"
        body: dict[str, Any] = {
            "kind": "compute#operation", "id": str(next(self._ids)), "name": name, "operationType": kind,
            "targetLink": self._link(target), "targetId": str(next(self._ids)), "status": "RUNNING",
            "user": "cloudherd-test@test-project.iam.gserviceaccount.com", "progress": 0,
            "insertTime": timestamp(), "startTime": timestamp(), "selfLink": self._link(f"{where}/operations/{name}"),
        }
        if zone:
            body["zone"] = self._link(f"zones/{zone}")
        op = Operation(body, effect, error, self.hang_operations, self.running_waits)
        self._operations[name] = op
        return op

    def _system_event(self, kind: str, zone: str, target: str, target_id: str, message: str) -> Operation:
        """An operation GCE itself records, done (``compute.instances.preempted``…), as ``user`` system."""
        op = self._operation(kind, zone, target, None, None, prefix="systemevent")
        op.hang = False
        op.body.update(targetId=target_id, user="system", statusMessage=message, status="DONE", progress=100,
                       endTime=timestamp())
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
        op.body.update(status="DONE", progress=100, endTime=timestamp())

    def _find_op(self, op: str, zone: str | None) -> Operation | None:
        found = self._operations.get(op)
        if found is None or (zone is not None and found.body.get("zone") != self._link(f"zones/{zone}")):
            return None
        return found

    def _op_missing(self, op: str) -> tuple[int, Any]:
        return wire_error(404, "notFound", f"The resource 'projects/{self.project}/.../operations/{op}' was not found")

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

    def _zoneOperations_list(self, query: dict[str, str], body: Any, failure: Failure | None,
                             zone: str) -> tuple[int, Any]:
        if (bad := self._check_zone(zone)) is not None:
            return bad
        flt = query.get("filter", "")
        match = OPERATION_FILTER.match(flt) if flt else None
        if flt and match is None:
            return wire_error(400, "invalid", f"Invalid list filter expression '{flt}'.")
        try:
            offset = int(query.get("pageToken") or 0)
        except ValueError:
            return wire_error(400, "invalid", "Invalid value for field 'pageToken'.")
        size = min(self.page_size, int(query.get("maxResults") or 500))
        found = [op.body for op in self._operations.values() if op.body.get("zone") == self._link(f"zones/{zone}")
                 and (match is None or (op.body["operationType"] == match.group(2)) == (match.group(1) == "="))]
        result: dict[str, Any] = {"kind": "compute#operationList", "id": f"projects/{self.project}/zones/{zone}/"
                                  "operations", "selfLink": self._link(f"zones/{zone}/operations")}
        if found[offset:offset + size]:  # GCE leaves items out of an empty page
            result["items"] = found[offset:offset + size]
        if offset + size < len(found):
            result["nextPageToken"] = str(offset + size)
        return 200, result

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

    def _link(self, path: str) -> str:
        if path.startswith("https://"):
            return path
        if path.startswith("projects/"):
            return f"https://www.googleapis.com/compute/v1/{path}"
        return f"https://www.googleapis.com/compute/v1/projects/{self.project}/{path}"


class CatalogCalls(OperationCalls):
    """Machine types, zones, images and firewall rules.  Mixed into FakeGce, whose state it reads."""

    images: list[dict[str, Any]]
    firewalls: dict[str, dict[str, Any]]

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
            return wire_error(404, "notFound",
                          f"The resource 'projects/{self.project}/global/firewalls/{name}' was not found")
        return 200, item

    def _firewalls_insert(self, query: dict[str, str], body: Any, failure: Failure | None) -> tuple[int, Any]:
        body = body or {}
        name = body.get("name", "")
        if name in self.firewalls:
            return wire_error(409, "alreadyExists", f"The resource 'projects/{self.project}/global/firewalls/{name}' "
                          "already exists")
        if not NAME.match(name) or not body.get("allowed"):
            return wire_error(400, "invalid", f"Invalid value for field 'resource.name': '{name}'.")

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


def wire_error(status: int, reason: str, message: str) -> tuple[int, Any]:
    """An HTTP error as GCE sends it."""
    domain = "usageLimits" if reason in ("rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded") else "global"
    return status, {"error": {"code": status, "message": message,
                              "errors": [{"message": message, "domain": domain, "reason": reason}],
                              "status": STATUS_NAMES.get(status, "UNKNOWN")}}


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000-07:00", time.localtime())
