"""EC2 calls: the boto3 client (one per provider object, boto3's own retries off), credentials, paging and
the bulk calls that drop ids already gone."""

from __future__ import annotations

import asyncio
import builtins
import math
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from cloudherd.providers.aws.errors import sdk_error
from cloudherd.providers.base import AuthError, InvalidRequestError, NotFoundError
from cloudherd.providers.sdk import SdkDriver
from cloudherd.providers.toolkit import import_sdk

DEFAULT_REGION = "us-east-1"
BATCH = 1000  # the most ids EC2 takes in one start/stop/terminate call
FILTER_BATCH = 200  # ids per filter value list
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
GONE_CODES = {"InvalidInstanceID.NotFound", "IncorrectInstanceState"}


_loader: list[Any] = []  # botocore's data loader, shared by every provider's session
_loader_lock = threading.Lock()


def _session(boto3: Any) -> Any:
    """A new boto3 session (its own credentials and config) that shares the parsed API models of the others:
    reading EC2's model again costs ~0.6 s per session."""
    import botocore.session

    core = botocore.session.get_session()
    with _loader_lock:
        if _loader:
            core.register_component("data_loader", _loader[0])
        else:
            _loader.append(core.get_component("data_loader"))
    return boto3.session.Session(botocore_session=core)


class Ec2Api(SdkDriver):
    """EC2 in one region: the client and the calls (see :class:`~cloudherd.providers.sdk.SdkDriver`)."""

    def __init__(self, name: str = "aws", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self._boto3 = import_sdk("boto3", "aws", "boto3")
        self.region = str(self.settings.get("region") or os.environ.get("AWS_DEFAULT_REGION")
                          or os.environ.get("AWS_REGION") or DEFAULT_REGION)
        endpoint = self.settings.get("endpoint_url")
        self.endpoint_url = str(endpoint) if endpoint else None
        self._client_obj: Any = None
        self._lock = threading.Lock()

    def _number(self, key: str, default: float, minimum: float) -> float:
        raw = self.settings.get(key)
        if raw is None:
            return default
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if not value >= minimum:
            raise InvalidRequestError(f"aws provider {self.name}: setting '{key}' must be a number ≥ {minimum:g}, "
                                      f"not {raw!r}")
        return value

    async def close(self) -> None:
        with self._lock:
            client, self._client_obj = self._client_obj, None
        if client is not None:
            await asyncio.to_thread(client.close)

    # -- calls and errors ----------------------------------------------------------------------

    def _client(self) -> Any:
        with self._lock:
            if self._client_obj is None:
                from botocore.config import Config

                # boto3's own retries off: one attempt of ours is one HTTP request, and boto3 would also retry
                # InsufficientInstanceCapacity (a 500), delaying the engine's failover.
                config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, user_agent_extra="cloudherd")
                kwargs: dict[str, Any] = {"region_name": self.region, "config": config}
                if self.endpoint_url:
                    kwargs["endpoint_url"] = self.endpoint_url
                kwargs.update(self._credentials())
                self._client_obj = _session(self._boto3).client("ec2", **kwargs)
            return self._client_obj

    def _credentials(self) -> dict[str, str]:
        """The keys named by ``access_key_id_env`` / ``secret_access_key_env`` (both or neither), read now."""
        names = {arg: self.settings.get(f"{key}_env") for arg, key in (
            ("aws_access_key_id", "access_key_id"), ("aws_secret_access_key", "secret_access_key"))}
        if not any(names.values()):
            return {}
        missing = [str(n) for n in names.values() if not n or not os.environ.get(str(n))]
        if missing:
            raise AuthError(f"aws provider {self.name}: the environment has no {' / '.join(missing) or 'key'} "
                            "(give both access_key_id_env and secret_access_key_env, and set them)")
        return {arg: os.environ[str(name)] for arg, name in names.items()}

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            result: dict[str, Any] = getattr(self._client(), operation)(**params)
            return result

        return await self._run(operation, run)

    async def _pages(self, operation: str, key: str, **params: Any) -> builtins.list[dict[str, Any]]:
        """Every item under ``key`` over all pages (a failed page fails the whole, retried as one call)."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = await self._call(operation, **params, **({"NextToken": token} if token else {}))
            found.extend(page.get(key, []))
            token = page.get("NextToken")
            if not token:
                return found

    async def _instances(self, **params: Any) -> builtins.list[dict[str, Any]]:
        reservations = await self._pages("describe_instances", "Reservations", **params)
        return [i for r in reservations for i in r.get("Instances", [])]

    def _error(self, operation: str, exc: Exception) -> Exception:
        return sdk_error(f"aws {operation} in {self.region}", operation, exc)

    async def _bulk(self, operation: str, ids: Sequence[str]) -> None:
        """One call per 1000 ids; ids already gone (unknown, terminated) are dropped and the call retried."""
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), BATCH):
            batch = unique[start:start + BATCH]
            try:
                await self._call(operation, InstanceIds=batch)
            except (NotFoundError, InvalidRequestError) as exc:
                if exc.code not in GONE_CODES:
                    raise
                live = await self._live(batch)
                if live:
                    await self._call(operation, InstanceIds=live)

    async def _live(self, ids: Sequence[str]) -> builtins.list[str]:
        """Which of ``ids`` still exist (a filter, unlike InstanceIds, does not fail on unknown ids)."""
        items = await self._instances(Filters=[{"Name": "instance-id", "Values": list(ids)},
                                               {"Name": "instance-state-name", "Values": LIVE_STATES}],
                                      MaxResults=1000)
        return [i["InstanceId"] for i in items]
