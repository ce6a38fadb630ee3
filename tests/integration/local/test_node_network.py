"""A sandboxed local node has a network of its own, as a cloud machine does: an address on cloudherd's
bridge, servers on 0.0.0.0 that do not collide with its siblings', siblings and the host that reach it —
and none of the host's own services within its reach.  Real nodes, real sockets."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import require, require_sandbox, wait_until, write_spec

from cloudherd.api import SyncClient
from cloudherd.providers.local import net as local_net

SERVE = ("echo $(hostname) > index.html && setsid python3 -m http.server 80 --bind 0.0.0.0 "
         "</dev/null >/dev/null 2>&1 &")
CONNECT = ("python3 -c \"import socket,sys; s=socket.socket(); s.settimeout(2); "
           "print('open' if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 'closed')\" {} {}")


@pytest.fixture
def fleet(home: Path, tmp_path: Path) -> Iterator[tuple[SyncClient, dict[str, str]]]:
    require_sandbox(network=True)
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "net", "name: net\ngroups:\n  web:\n    count: 3\n    scripts: [serve.sh]\n",
                       {"serve.sh": SERVE}))
    try:
        addresses = {n.name: n.address or "" for n in herd.status("net").live}
        yield herd, addresses
    finally:
        herd.down("net")


def _on(herd: SyncClient, node: str, command: str) -> str:
    [result] = herd.exec("net", command, node=node)
    assert result.ok, result
    return result.stdout.strip()


def _page(address: str) -> str | None:
    try:
        return httpx.get(f"http://{address}/", timeout=3).text.strip()
    except httpx.HTTPError:
        return None


def test_each_node_has_its_own_address_and_port_80(fleet: tuple[SyncClient, dict[str, str]]) -> None:
    herd, addresses = fleet
    assert len(set(addresses.values())) == 3
    for address in addresses.values():
        assert ipaddress.ip_address(address) in local_net.SUBNET
    for name, address in addresses.items():  # the host reaches every node's own server on :80
        assert wait_until(lambda a=address: _page(a), timeout=30, what=f"{name} serving") == name
    one, two = sorted(addresses)[:2]
    assert _on(herd, one, f"python3 -c \"import urllib.request as u; print(u.urlopen('http://{addresses[two]}/', "
                          "timeout=3).read().decode().strip())\"") == two  # node to sibling


@pytest.fixture
def host_service() -> Iterator[int]:
    """A TCP service of the host's, on every address of the host (loopback included)."""
    server = socket.create_server(("0.0.0.0", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_a_node_reaches_none_of_the_hosts_own_services(fleet: tuple[SyncClient, dict[str, str]],
                                                        host_service: int) -> None:
    herd, addresses = fleet
    node = sorted(addresses)[0]
    host_addresses = {"127.0.0.1"}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # the host's address toward the outside
        try:
            probe.connect(("192.0.2.1", 9))
            host_addresses.add(probe.getsockname()[0])
        except OSError:
            pass
    with socket.create_connection(("127.0.0.1", host_service), timeout=3):
        pass  # the service answers the host itself
    for address in sorted(host_addresses):
        assert _on(herd, node, CONNECT.format(address, host_service)) == "closed", address


def test_a_partition_cuts_a_node_from_the_host_and_its_siblings(fleet: tuple[SyncClient, dict[str, str]]) -> None:
    herd, addresses = fleet
    cut, other = sorted(addresses)[:2]
    wait_until(lambda: _page(addresses[cut]), timeout=30, what="the node serving")
    herd.fault(cut, "partition", ref="net")
    assert _page(addresses[cut]) is None
    assert _on(herd, other, CONNECT.format(addresses[cut], 80)) == "closed"
    herd.fault(cut, "heal", ref="net")
    assert wait_until(lambda: _page(addresses[cut]), timeout=30, what="the node back") == cut
    assert _on(herd, other, CONNECT.format(addresses[cut], 80)) == "open"


def test_a_partition_from_one_sibling_cuts_only_that_link(fleet: tuple[SyncClient, dict[str, str]]) -> None:
    herd, addresses = fleet
    cut, peer, third = sorted(addresses)
    for address in addresses.values():
        wait_until(lambda a=address: _page(a), timeout=30, what="the nodes serving")
    done = herd.fault(cut, "partition", ref="net", peer=peer)
    assert peer in done.done or addresses[peer] in done.done, done
    assert _on(herd, peer, CONNECT.format(addresses[cut], 80)) == "closed"  # the two cannot talk
    assert _on(herd, cut, CONNECT.format(addresses[peer], 80)) == "closed"
    assert _on(herd, third, CONNECT.format(addresses[cut], 80)) == "open"  # the rest of the network can
    assert _on(herd, cut, CONNECT.format(addresses[third], 80)) == "open"
    assert _page(addresses[cut]) == cut  # and so can the host (SSH and health checks go on)
    herd.fault(cut, "heal", ref="net")
    assert _on(herd, peer, CONNECT.format(addresses[cut], 80)) == "open"


def test_nothing_of_a_node_network_outlives_it(home: Path, tmp_path: Path) -> None:
    require_sandbox(network=True)
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "brief", "name: brief\ngroups:\n  n:\n    count: 2\n"))
    names = [local_net.namespace(n.address or "") for n in herd.status("brief").live]
    assert all(local_net.netns_path(name).exists() for name in names)
    herd.down("brief")
    assert not any(local_net.netns_path(name).exists() for name in names)


def test_a_namespace_left_by_a_killed_process_is_swept(tmp_path: Path) -> None:
    """A node's folder removed with its namespace still there (cloudherd killed in between): the next sweep
    (every process that makes a sandboxed node runs one) removes it; a live node's is kept."""
    require(local_net.unavailable(), "the network tests")
    live, dead = tmp_path / "ln-live", tmp_path / "ln-dead"
    for folder in (live, dead):
        folder.mkdir()
        (folder / "node.json").write_text("{}")
    kept = local_net.claim(live)[1]
    left = local_net.claim(dead)[1]
    try:
        (dead / "node.json").unlink()
        assert left in local_net.leftovers() and kept not in local_net.leftovers()
        local_net.sweep()
        assert not local_net.netns_path(left).exists() and local_net.netns_path(kept).exists()
    finally:
        local_net.release(kept)
        local_net.release(left)


def test_gc_finds_and_removes_what_a_killed_cloudherd_left(home: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A node's folder gone with its namespace and its cgroup still there (cloudherd killed in between, or
    the folder removed by hand): `gc` lists both, `gc --delete` removes them, a live node's are kept."""
    require_sandbox(network=True)
    from cloudherd.providers.local import LocalProvider
    from cloudherd.providers.local import sandbox as local_sandbox

    monkeypatch.setattr(local_sandbox, "CGROUP_GRACE", 0.0)  # no waiting a minute for the cgroup to count
    herd = SyncClient()
    herd.up(write_spec(tmp_path / "left", "name: left\ngroups:\n  n:\n    count: 2\n    size: nano\n"))
    kept, lost = herd.status("left").live
    provider = LocalProvider("local", {"root": str(home / "local")})
    lost_meta = json.loads((home / "local" / str(lost.provider_id) / "node.json").read_text())
    assert lost_meta.get("cgroups"), lost_meta.get("limits_applied")
    for pid in (lost_meta["init_identity"]["pid"], lost_meta["pid"]):  # its pid 1 and unshare: a power loss
        os.kill(int(pid), signal.SIGKILL)
    wait_until(lambda: not any(Path(f, "cgroup.procs").read_text().strip() for f in lost_meta["cgroups"]),
               timeout=30, what="the node's processes gone")
    shutil.rmtree(home / "local" / str(lost.provider_id))  # its folder gone, its namespace and cgroup left
    assert local_net.netns_path(lost_meta["netns"]).exists()
    found = {(o.kind, o.id) for o in herd.gc()}
    assert ("netns", lost_meta["netns"]) in found
    assert {("cgroup", f) for f in lost_meta["cgroups"]} <= found
    assert not any(kept.address and kept.address in ident for _kind, ident in found)
    herd.gc(delete=True)
    assert not local_net.netns_path(lost_meta["netns"]).exists()
    assert not any(Path(f).exists() for f in lost_meta["cgroups"])
    assert not [o for o in herd.gc() if o.kind in ("netns", "cgroup")]
    assert provider.leftovers() == []
    assert _on_node(herd, kept.name) == kept.name  # the live node untouched
    herd.down("left")


def _on_node(herd: SyncClient, node: str) -> str:
    [result] = herd.exec("left", "hostname", node=node)
    return result.stdout.strip()
