"""A sandboxed local node's own network: a network namespace with one address, routed by the host.

Why: on the host's network a node's script reached every service of the host on 127.0.0.1 (the state
PostgreSQL, ``serve``'s port) and every other node's ports; a server in a node could not listen on
``0.0.0.0:80`` beside its siblings.  Here each node is its own machine, as on a cloud: nodes reach each
other, the host reaches every node (SSH, health checks), a node reaches the outside through the host
(NAT, for package mirrors), and a node reaches none of the host's own services — nftables drops what
comes from a node to the host itself (``table inet cloudherd``).

Routed, not bridged: a Linux bridge takes at most 1024 ports, and a group may hold more nodes than that.
Each node has a veth pair; its end holds the node's address (/32) and a default route through a
link-local gateway the host answers for (proxy ARP on the host's end); the host has a /32 route per node.

The namespaces are named ``cloudherd-<address>`` (``/run/netns``): creating the name is how an address
is claimed, atomically, across every cloudherd process and data folder on the computer; a reboot clears
``/run``, and :func:`leftovers` finds the ones a killed process left behind.  Built on iproute2 and nft.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import random
import shutil
import subprocess
from pathlib import Path

SUBNET = ipaddress.ip_network("10.213.0.0/16")
GATEWAY = "169.254.1.1"  # what a node routes through: never a real address, answered by the host's end
LINK = "chv"  # the host's ends of the nodes' links: chv<hex>
PREFIX = "cloudherd-"
NETNS_DIR = Path("/run/netns")
OWNERS = Path("/run/cloudherd/netns")  # one file per namespace: the folder of the node it is for
TABLE = "cloudherd"
# addresses are drawn from the system's randomness: a process that seeds ``random`` (the fault injection of the
# chaos tests does) would otherwise draw the same addresses as every other such process
_DRAW = random.SystemRandom()


class NetError(RuntimeError):
    """A namespace, link or rule the host refused: the node cannot have its own network."""


@functools.cache
def unavailable() -> str | None:
    """Why nodes cannot have their own network here, or None (checked once)."""
    if os.geteuid() != 0:
        return "a network of its own per node needs root"
    missing = [tool for tool in ("ip", "nft", "nsenter") if shutil.which(tool) is None]
    if missing:
        return f"a network of its own per node needs {', '.join(missing)} (apt-get install iproute2 nftables)"
    return None


def namespace(address: str) -> str:
    return f"{PREFIX}{address}"


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def claim(owner: Path) -> tuple[str, str]:
    """A free address and its namespace, made and wired on the host's side (the node's side:
    :func:`inside`), for the node whose folder is ``owner``: (address, namespace name).  The claim is an
    owner file made exclusively before the namespace, so a sweep running beside never takes a namespace
    still being made for its leftover."""
    ensure_host()
    OWNERS.mkdir(parents=True, exist_ok=True, mode=0o700)
    for _ in range(500):
        address = str(SUBNET.network_address + _DRAW.randint(2, SUBNET.num_addresses - 2))
        name = namespace(address)
        try:
            fd = os.open(OWNERS / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as out:
            out.write(str(owner))
        if _ip(["netns", "add", name], check=False).returncode != 0:
            (OWNERS / name).unlink(missing_ok=True)
            continue
        try:
            _wire(address)
        except (NetError, OSError) as exc:
            release(name)
            if "File exists" in str(exc):  # a namespace unnamed but still alive (a process in it) holds it
                continue
            raise
        return address, name
    raise NetError(f"no free address on {SUBNET}")


def inside(address: str) -> list[str]:
    """The ``ip -batch`` lines that set up a node's end of its link, run inside its namespace by the node's
    set-up at every start (``replace``: the same again after a stop changes nothing)."""
    return [f"addr replace {address}/32 dev eth0", "link set eth0 up", "link set lo up",
            f"route replace {GATEWAY} dev eth0 scope link", f"route replace default via {GATEWAY} dev eth0"]


def _host_end(address: str) -> str:
    return LINK + format(int(ipaddress.ip_address(address)) & 0xFFFF, "04x") + os.urandom(3).hex()


def release(name: str) -> None:
    """Remove a node's namespace (its end of the link goes with it, and the host's end and route with that)."""
    if not name.startswith(PREFIX):
        return
    _ip(["netns", "delete", name], check=False)
    (OWNERS / name).unlink(missing_ok=True)


def owner(name: str) -> Path | None:
    """The folder of the node namespace ``name`` was made for, as recorded (None: no record)."""
    try:
        return Path((OWNERS / name).read_text())
    except OSError:
        return None


def leftovers() -> list[str]:
    """Namespaces of cloudherd's whose node is gone: its folder removed (a process killed between a node's
    end and its namespace's), or no owner at all."""
    try:
        names = [p.name for p in NETNS_DIR.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return []
    gone = []
    for name in names:
        try:
            owner = Path((OWNERS / name).read_text())
        except OSError:
            gone.append(name)
            continue
        if not (owner / "node.json").exists():
            gone.append(name)
    return sorted(gone)


def sweep() -> int:
    """Remove what :func:`leftovers` finds; how many."""
    found = leftovers()
    for name in found:
        release(name)
    return len(found)


def enter(name: str) -> list[str]:
    """The command prefix that runs a program inside namespace ``name``."""
    return ["nsenter", f"--net={netns_path(name)}"]


def run_inside(name: str, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*enter(name), *argv], input=stdin, capture_output=True, text=True, timeout=30)


def _wire(address: str) -> None:
    name = namespace(address)
    host_end = _host_end(address)
    _ip_batch(None, [f"link add {host_end} type veth peer name eth0 netns {name}", f"link set {host_end} up",
                     f"route add {address}/32 dev {host_end}"])
    Path(f"/proc/sys/net/ipv4/conf/{host_end}/proxy_arp").write_text("1\n")


@functools.cache
def ensure_host() -> None:
    """The host's rules and forwarding: made once per process, kept (idempotent, atomic); and what a killed
    process left behind, removed."""
    _nft(_RULES)
    sweep()
    with contextlib.suppress(OSError):  # nodes reach each other and the outside through the host
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")


# Dropped: what a node sends to the host itself (any of its addresses, on any port), unless it answers a
# connection the host opened.  Forwarded: node to node, node to outside (masqueraded), and the answers.
_RULES = f"""
table inet {TABLE} {{}}
delete table inet {TABLE}
table inet {TABLE} {{
  chain input {{
    type filter hook input priority -5; policy accept;
    iifname "{LINK}*" ct state established,related accept
    iifname "{LINK}*" drop
  }}
  chain forward {{
    type filter hook forward priority -5; policy accept;
    iifname "{LINK}*" accept
    oifname "{LINK}*" ct state established,related accept
    oifname "{LINK}*" drop
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    ip saddr {SUBNET} oifname != "{LINK}*" masquerade
  }}
}}
"""


def _ip(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise NetError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _ip_batch(name: str | None, lines: list[str]) -> None:
    argv = ["ip", *(["-n", name] if name else []), "-batch", "-"]
    done = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetError(f"ip: {done.stderr.strip()}")


def _nft(rules: str) -> None:
    done = subprocess.run(["nft", "-f", "-"], input=rules, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetError(f"nft: {done.stderr.strip()}")
