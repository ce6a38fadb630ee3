"""Test helpers for the libcloud provider.

:class:`OpenStackWire` is a real HTTP server on 127.0.0.1 (port 0, in a thread) that answers the OpenStack calls
libcloud's ``openstack`` driver makes: keystone v3 (``POST /v3/auth/tokens``), nova (``/compute/v2.1/...``) and
glance (``/image/v2/images``).  Every answer is one of the JSON fixture files apache-libcloud ships in its wheel
(``libcloud/test/compute/fixtures/openstack*``), served as is, with three documented adjustments:

* the keystone token's ``expires_at`` is moved to tomorrow, as libcloud's own mock does, so that the driver does
  not authenticate again before every call;
* created servers are remembered: ``POST /servers`` answers ``_servers_create.json`` with a fresh id, and the
  server itself is ``_servers_26f7fbee_8ce1_4c28_887a_bfe8e4bb10fe.json`` with that id and the name and metadata
  that were sent; ``GET /servers/detail`` lists the fixture's servers plus the created ones, minus deleted ones;
* errors can be injected (:meth:`OpenStackWire.fail`) in nova's fault format;
* with ``catalog_here``, the token's service catalog sends compute and image calls to this server, named and in
  the region as a devstack's are (``nova``, ``glance``, ``RegionOne``): a user who gives only keystone's URL, as
  an Occopus ``nova`` resource does, then reaches nova and glance here.

Every request is recorded (method, path, query, headers, JSON body) for assertions.

Also here: in-memory libcloud drivers built on libcloud's Dummy driver, for behaviour Dummy lacks (bulk create,
stop/start), used through ``driver: libcloud_wire:ClassName``.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import libcloud
from libcloud.compute.base import Node, NodeSize
from libcloud.compute.drivers.dummy import DummyNodeDriver
from libcloud.compute.types import NodeState

FIXTURES = Path(libcloud.__file__).parent / "test" / "compute" / "fixtures"
NOVA = FIXTURES / "openstack_v1_1"
KEYSTONE = FIXTURES / "openstack"
TOKEN = "00000000000000000000000000000000"  # the X-Subject-Token libcloud's own keystone mock answers
CREATED_TEMPLATE = "_servers_26f7fbee_8ce1_4c28_887a_bfe8e4bb10fe.json"


def fixtures_shipped() -> bool:
    return (NOVA / "_servers_detail.json").is_file() and (KEYSTONE / "_v3__auth.json").is_file()


def load(folder: Path, name: str) -> Any:
    return json.loads((folder / name).read_text())


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Fault:
    method: str
    path: str  # a prefix of the request path
    status: int
    body: Any
    headers: dict[str, str]
    times: int


@dataclass
class OpenStackWire:
    user: str = "alice"
    password: str = "s3cr3t-Pa55word"
    project: str = "admin"
    requests: list[Recorded] = field(default_factory=list)
    created: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    actions: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    catalog_here: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        wire = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                parts = urlsplit(self.path)
                record = Recorded(self.command, parts.path, parse_qs(parts.query),
                                  {k.lower(): v for k, v in self.headers.items()}, body)
                status, payload, headers = wire.answer(record)
                data = b"" if payload is None else (payload if isinstance(payload, bytes) else
                                                    json.dumps(payload).encode())
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------------

    def __enter__(self) -> OpenStackWire:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def settings(self, **more: Any) -> dict[str, Any]:
        """The provider settings that point libcloud's openstack driver at this server."""
        return {
            "driver": "openstack", "api_version": "2.0", "key": self.user, "secret": self.password,
            "ex_force_auth_url": self.url, "ex_force_auth_version": "3.x_password",
            "ex_tenant_name": self.project, "ex_domain_name": "Default",
            "ex_force_base_url": f"{self.url}/compute/v2.1", "ex_force_image_url": f"{self.url}/image",
            **more,
        }

    def fail(self, method: str, path: str, status: int, body: Any = None, headers: dict[str, str] | None = None,
             times: int = 1) -> None:
        """Answer the next ``times`` requests ``method path*`` with an error (nova's fault format by default)."""
        if body is None:
            body = {"computeFault": {"code": status, "message": f"injected {status}"}}
        with self._lock:
            self.faults.append(Fault(method, path, status, body, headers or {}, times))

    def calls(self, method: str, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    # -- answers ---------------------------------------------------------------------------------------

    def answer(self, req: Recorded) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append(req)
            for fault in self.faults:
                if fault.times > 0 and fault.method == req.method and req.path.startswith(fault.path):
                    fault.times -= 1
                    return fault.status, fault.body, fault.headers
        if req.path == "/v3/auth/tokens" and req.method == "POST":
            return self._token(req)
        if req.headers.get("x-auth-token") != TOKEN:
            return 401, load(KEYSTONE, "_v3__auth_unauthorized.json"), {}
        if req.path.startswith("/compute/v2.1/"):
            return self._nova(req, req.path[len("/compute/v2.1"):])
        if req.path.startswith("/image/v2/images"):
            return self._glance(req, req.path[len("/image"):])
        return 404, {"itemNotFound": {"code": 404, "message": f"no route {req.path}"}}, {}

    def _token(self, req: Recorded) -> tuple[int, Any, dict[str, str]]:
        try:
            password = req.body["auth"]["identity"]["password"]["user"]
            ok = password["name"] == self.user and password["password"] == self.password
        except (KeyError, TypeError):
            ok = False
        if not ok:
            return 401, load(KEYSTONE, "_v3__auth_unauthorized.json"), {}
        body = load(KEYSTONE, "_v3__auth.json")
        body["token"]["expires_at"] = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        if self.catalog_here:  # as a devstack's catalog reads (the fixture's has no names, region "regionOne")
            here = {"compute": ("nova", f"{self.url}/compute/v2.1"), "image": ("glance", f"{self.url}/image")}
            for service in body["token"]["catalog"]:
                if service["type"] in here:
                    service["name"], url = here[service["type"]]
                    for endpoint in service["endpoints"]:
                        endpoint.update(url=url, region="RegionOne")
        return 201, body, {"X-Subject-Token": TOKEN}

    def _nova(self, req: Recorded, path: str) -> tuple[int, Any, dict[str, str]]:
        parts = path.strip("/").split("/")
        if path == "/flavors/detail" and req.method == "GET":
            return 200, load(NOVA, "_flavors_detail.json"), {}
        if path == "/servers/detail" and req.method == "GET":
            servers = [s for s in load(NOVA, "_servers_detail.json")["servers"] if str(s["id"]) not in self.deleted]
            with self._lock:
                servers += [copy.deepcopy(s) for i, s in self.created.items() if i not in self.deleted]
            return 200, {"servers": servers}, {}
        if path == "/servers" and req.method == "POST":
            return self._create(req)
        if len(parts) == 2 and parts[0] == "servers":
            return self._server(req, parts[1])
        if len(parts) == 3 and parts[0] == "servers" and parts[2] == "action" and req.method == "POST":
            if not self._exists(parts[1]):
                return self._not_found(parts[1])
            with self._lock:
                self.actions.append((parts[1], next(iter(req.body or {"?": None}))))
                server = self.created.get(parts[1])
                if server is not None and "os-stop" in (req.body or {}):
                    server["status"] = "SHUTOFF"
                elif server is not None and "os-start" in (req.body or {}):
                    server["status"] = "ACTIVE"
            return 202, None, {}
        return 404, {"itemNotFound": {"code": 404, "message": f"no route {req.method} {path}"}}, {}

    def _create(self, req: Recorded) -> tuple[int, Any, dict[str, str]]:
        sent = (req.body or {}).get("server", {})
        new_id = str(uuid.uuid4())
        server = load(NOVA, CREATED_TEMPLATE)["server"]
        server.update(id=new_id, name=sent.get("name"), metadata=dict(sent.get("metadata") or {}))
        server["flavor"]["id"] = sent.get("flavorRef", server["flavor"]["id"])
        server["image"]["id"] = sent.get("imageRef", server["image"]["id"])
        with self._lock:
            self.created[new_id] = server
        answer = load(NOVA, "_servers_create.json")
        answer["server"]["id"] = new_id
        return 202, answer, {}

    def _server(self, req: Recorded, server_id: str) -> tuple[int, Any, dict[str, str]]:
        if not self._exists(server_id):
            return self._not_found(server_id)
        if req.method == "DELETE":
            with self._lock:
                self.deleted.add(server_id)
            return 204, None, {}
        if req.method == "GET":
            with self._lock:
                server = copy.deepcopy(self.created.get(server_id))
            if server is None:
                server = next(s for s in load(NOVA, "_servers_detail.json")["servers"] if str(s["id"]) == server_id)
            return 200, {"server": server}, {}
        return 405, None, {}

    def _exists(self, server_id: str) -> bool:
        with self._lock:
            if server_id in self.deleted:
                return False
            if server_id in self.created:
                return True
        return any(str(s["id"]) == server_id for s in load(NOVA, "_servers_detail.json")["servers"])

    @staticmethod
    def _not_found(server_id: str) -> tuple[int, Any, dict[str, str]]:
        return 404, {"itemNotFound": {"code": 404, "message": f"Instance {server_id} could not be found."}}, {}

    def _glance(self, req: Recorded, path: str) -> tuple[int, Any, dict[str, str]]:
        if path == "/v2/images" and req.method == "GET":
            page = "_images_v2_page2.json" if "marker" in req.query else "_images_v2.json"
            return 200, load(NOVA, page), {}
        image_id = path.rsplit("/", 1)[-1]
        if (NOVA / f"_images_{image_id}.json").is_file():
            return 200, load(NOVA, f"_images_{image_id}.json"), {}
        return 404, b"404 Not Found: no image " + image_id.encode(), {}


# -- in-memory drivers on libcloud's Dummy ------------------------------------------------------------


class NamedDummyDriver(DummyNodeDriver):
    """Dummy that keeps the names it is given and can stop and start nodes; ids never repeat."""

    def __init__(self, creds: Any = 0) -> None:
        super().__init__(creds)
        self._next = 100

    def create_node(self, name: str, size: NodeSize, image: Any) -> Node:  # type: ignore[override]
        self._next += 1
        node = Node(id=str(self._next), name=name, state=NodeState.RUNNING, public_ips=[f"127.0.1.{self._next % 250}"],
                    private_ips=[f"10.0.0.{self._next % 250}"], driver=self, size=size, image=image, extra={})
        self.nl.append(node)
        return node

    def stop_node(self, node: Node) -> bool:
        node.state = NodeState.STOPPED
        return True

    def start_node(self, node: Node) -> bool:
        node.state = NodeState.RUNNING
        return True


class BulkDummyDriver(NamedDummyDriver):
    """Dummy with EC2's bulk create shape (``ex_mincount``/``ex_maxcount``) and key/value tags in ``extra``."""

    bulk_calls: list[int] = []  # noqa: RUF012 - shared on purpose: tests read it

    def create_node(  # type: ignore[override]
        self, name: str, size: NodeSize, image: Any, ex_metadata: dict[str, str] | None = None,
        ex_mincount: int = 1, ex_maxcount: int = 1,
    ) -> Any:
        type(self).bulk_calls.append(ex_maxcount)
        nodes = []
        for _ in range(ex_maxcount):
            node = super().create_node(name, size, image)
            node.extra["tags"] = dict(ex_metadata or {})
            nodes.append(node)
        return nodes[0] if len(nodes) == 1 else nodes
