"""The gauges of ``/metrics`` read from the state at each scrape: nodes, rollouts, what the machines cost now,
leases held.

Why from the state and not counted where things change: a node made by ``cloudherd up`` in a terminal, a lease
taken by another manager, a release rolled by the server are all in the database, and only there; a gauge read
from it is true whichever process changed it.  A scrape costs a fixed number of reads whatever the number of
infrastructures (nodes by infrastructure, group and state in one grouped query; the rows of the infrastructures
that have running machines, for their prices; the newest release of each; the live leases), so a Prometheus
scraping every few seconds does not load the database with its fleet.

The faces hand :func:`reader` to :func:`cloudherd.observe.metrics.exposition` (``serve``'s ``/metrics`` route
and its ``metrics_listen``, ``manage --metrics-listen``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

from cloudherd.engine.pricing import Prices
from cloudherd.errors import CloudherdError, UsageError
from cloudherd.lifecycle import RevisionState
from cloudherd.observe.metrics import StateGauges
from cloudherd.state.models import Infrastructure
from cloudherd.state.repo import Store

log = logging.getLogger(__name__)

PRICES_FOR = 300.0  # seconds the price books read for a scrape are kept (they change on a catalog refresh)


class _Books:
    """The price books, read again every :data:`PRICES_FOR` seconds, not at every scrape."""

    def __init__(self) -> None:
        self._prices = Prices()
        self._at = time.monotonic()

    def get(self) -> Prices:
        if time.monotonic() - self._at > PRICES_FOR:
            self._prices, self._at = Prices(), time.monotonic()
        return self._prices


_books = _Books()


def state_gauges(store: Store) -> StateGauges:
    """What the state holds now, as the gauges of ``/metrics`` show it (see the module)."""
    read = store.gauge_reads()
    gauges = StateGauges(nodes=read.nodes, rollouts={str(state): 0 for state in RevisionState} | read.releases,
                         leases_held=read.leases_held)
    for infra in read.priced:
        for spent, dollars in _hourly(infra, read.running).items():
            gauges.hourly_cost[spent] = gauges.hourly_cost.get(spent, 0.0) + dollars
    return gauges


def _hourly(infra: Infrastructure, running: dict[tuple[str, str, str, str], int]) -> dict[tuple[str, str], float]:
    """What ``infra``'s running machines cost an hour, by provider (as ``cloudherd cost`` reckons a machine)."""
    from cloudherd.engine.context import snapshot

    try:
        spec = snapshot(infra).spec
    except CloudherdError as exc:  # its spec no longer loads: not priced (``cloudherd cost`` says so too)
        log.debug("%s: not priced: %s", infra.name, exc)
        return {}
    prices = _books.get()
    sizes = {g.name: g.size for g in infra.groups}
    found: dict[tuple[str, str], float] = {}
    for (infra_id, group, provider, market), count in running.items():
        if infra_id != infra.id:
            continue
        hourly = prices.of_group(spec, group, provider, sizes.get(group)).of_market(market)
        if hourly is not None:
            found[(infra.name, provider)] = found.get((infra.name, provider), 0.0) + count * hourly
    return found


def reader(store: Store) -> Callable[[], StateGauges]:
    """What :func:`cloudherd.observe.metrics.exposition` calls at each scrape to read ``store``."""
    return lambda: state_gauges(store)


def scrape_failed(exc: BaseException) -> None:
    """A scrape could not read the state (the database away): said once per scrape, the counters answer anyway."""
    log.warning("/metrics: the state could not be read, its gauges are left out: %s", exc)


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9108`` for IPv6) of a metrics listener; UsageError naming the mistake."""
    host, colon, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"a metrics listen address is HOST:PORT, e.g. 127.0.0.1:9108 (not '{text}')")
    return host, int(port)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_warning(address: str) -> str | None:
    """What to tell the operator of a tokenless ``/metrics`` listener on ``address`` when it is not a loopback one
    (``manage --metrics-listen`` and the server file's ``metrics_listen`` say the same)."""
    if is_loopback(listen_address(address)[0]):
        return None
    return f"/metrics on {address} answers anyone who reaches it (no token there)"


class Listener:
    """``/metrics`` (counters of this process, gauges of ``store``) on ``address`` (``HOST:PORT``), with no token:
    a listener the operator placed on purpose (a loopback address, a network only Prometheus reaches).

    Bound when made, so that an address taken is a one-line error before anything starts; served by
    :meth:`start` on threads of its own (prometheus_client's WSGI app, stdlib's server) until :meth:`stop`."""

    def __init__(self, address: str, store: Store) -> None:
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        from prometheus_client import make_wsgi_app

        from cloudherd.observe.metrics import Scrape

        host, port = listen_address(address)

        class Server(ThreadingMixIn, WSGIServer):
            daemon_threads = True  # a scrape in progress never holds the process up
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Quiet(WSGIRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # a line per scrape is noise
                pass

        app = make_wsgi_app(Scrape(reader(store), scrape_failed))  # type: ignore[arg-type]
        try:
            self._server = make_server(host, port, app, Server, handler_class=Quiet)
        except OSError as exc:
            raise UsageError(f"metrics listen address {address}: {exc.strerror or exc}") from None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


def listen(address: str, store: Store) -> Callable[[], None]:
    """A :class:`Listener` on ``address``, started; returns what stops it."""
    listener = Listener(address, store)
    listener.start()
    return listener.stop
