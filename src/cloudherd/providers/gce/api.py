"""Compute Engine calls: the SDK's clients (one per kind and provider object, the SDK's own retries off), the
zone operations waited for under one deadline, instances listed by label and acted on one by one."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from cloudherd.providers.base import InvalidRequestError, NotFoundError, ProviderError, has_tags
from cloudherd.providers.gce.credentials import credentials_path, file_project, load_credentials
from cloudherd.providers.gce.errors import SECRET_PATTERNS, OperationTimeoutError, sdk_error, typed_error
from cloudherd.providers.gce.labels import decode_labels, encode_labels
from cloudherd.providers.sdk import SdkDriver
from cloudherd.providers.toolkit import gather_all, import_sdk, one_line, safe_url

log = logging.getLogger(__name__)

OPERATION_TIMEOUT = 600.0
REQUEST_TIMEOUT = 60.0
POLL_INTERVAL = 2.0
WAIT_SLICE = 130.0  # GCE answers operations.wait within about 2 minutes, done or not
LAST_LOOK = 2.0  # an operation whose call used up its deadline is still looked at once, for this long
CONCURRENCY = 16  # delete/stop/start calls in flight at once
PREEMPTED = "compute.instances.preempted"  # the operation GCE records when it takes a spot VM back


class GceApi(SdkDriver):
    """Compute Engine in one project and zone: the clients and the calls."""

    mask = "[redacted]"
    secret_patterns: ClassVar[Sequence[Any]] = SECRET_PATTERNS

    def __init__(self, name: str = "gce", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self._compute = import_sdk("google.cloud.compute_v1", "gce", "google-cloud-compute")
        self._credentials_file = credentials_path(self.settings)
        project = (self.settings.get("project") or os.environ.get("GOOGLE_PROJECT")
                   or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("CLOUDSDK_CORE_PROJECT")
                   or file_project(self._credentials_file))
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
        self._lock = threading.Lock()

    async def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(client.transport.close)

    def _client(self, kind: str) -> Any:
        with self._lock:
            client = self._clients.get(kind)
            if client is None:
                if self._creds is None:
                    self._creds = load_credentials(self.settings, self._credentials_file)
                options = {"api_endpoint": self.endpoint} if self.endpoint else None
                client = getattr(self._compute, kind)(credentials=self._creds, client_options=options)
                self._clients[kind] = client
            return client

    def _list_raw(self, tags: Mapping[str, str]) -> builtins.list[Any]:
        """One paginated instances.list in the zone, filtered on the labels of ``tags``."""
        labels = encode_labels(tags)
        request = self._compute.ListInstancesRequest(project=self.project, zone=self.zone, max_results=500)
        if labels:
            request.filter = " AND ".join(f'(labels.{k} = "{v}")' for k, v in sorted(labels.items()))
        pager = self._client("InstancesClient").list(request=request, timeout=self.request_timeout,
                                                     retry=None)
        return [i for i in pager if has_tags(decode_labels(i.labels), tags)]

    def _preemptions(self) -> dict[str, Any]:
        """The zone's ``compute.instances.preempted`` operations (one paginated zoneOperations.list, filtered on
        the type, as GCE documents telling a preempted VM): instance name → its latest preemption."""
        request = self._compute.ListZoneOperationsRequest(project=self.project, zone=self.zone, max_results=500,
                                                          filter=f'operationType="{PREEMPTED}"')
        pager = self._client("ZoneOperationsClient").list(request=request, timeout=self.request_timeout,
                                                          retry=None)
        latest: dict[str, Any] = {}
        for op in pager:
            name = (op.target_link or "").rstrip("/").rsplit("/", 1)[-1]
            if op.operation_type == PREEMPTED and name and (
                    name not in latest or _when(op) >= _when(latest[name])):
                latest[name] = op
        return latest

    def _wait(self, op: Any, what: str, deadline: float) -> Any:
        """Wait for a zone (or global) operation until ``deadline``; raise its error, typed."""
        import requests
        from google.api_core import exceptions as gx

        done = self._compute.Operation.Status.DONE
        looked = False
        while op.status != done:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and looked:
                raise OperationTimeoutError(
                    f"gce {what} in {self.zone}: operation {op.name} not done after {self.operation_timeout:g} s; "
                    "it may still finish: look again with 'list', or raise 'operation_timeout'")
            slice_ = min(max(remaining, LAST_LOOK), WAIT_SLICE)
            looked = True
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
        text = f"gce {what} in {self.zone}: {code}: {one_line(self._scrub(str(first.message or '')))}"
        return typed_error(text, [code], int(op.http_error_status_code or 0), code)

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

    async def _each(self, verb: str, ids: Sequence[str], missing_ok: bool) -> None:
        """``verb`` every instance, CONCURRENCY at a time, each operation waited; the first error raised after all."""
        deadline = time.monotonic() + self.operation_timeout

        def one(name: str) -> Any:
            return self._run(f"instances.{verb}", lambda: self._one(verb, name, missing_ok, deadline))

        await gather_all([functools.partial(one, n) for n in dict.fromkeys(ids)], CONCURRENCY)

    def _error(self, operation: str, exc: Exception) -> Exception:
        """A provider error of the SDK's, google-auth's or the HTTP layer's exception; never quoting credentials."""
        host = safe_url(self.endpoint) if self.endpoint else "compute.googleapis.com"
        return sdk_error(f"gce {operation} in {self.project}/{self.zone}", exc, self._scrub, host, self.request_timeout)

    def _secrets(self) -> Iterable[str]:
        """This provider's current access token."""
        token = getattr(self._creds, "token", None)
        return [token] if isinstance(token, str) and len(token) >= 8 else []


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


def _when(op: Any) -> datetime:
    """When an operation was made (its insertTime, an RFC 3339 time with an offset); the epoch when unreadable."""
    return parse_time(op.insert_time) or datetime.fromtimestamp(0, UTC)


def parse_time(text: str | None) -> datetime | None:
    """A GCE timestamp (``2024-05-01T10:00:00.000-07:00``), None when missing or unreadable."""
    try:
        when = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when
