"""Live streams end with their token, and one sampler serves every reader of one thing.

The hub is tested in-process (its timing knobs made small, so that a test of "checked every few seconds"
takes a fraction of one); the ``/v1`` events stream through a real `cloudherd serve`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import async_wait_until, wait_until
from server_harness import Served, write_config

from cloudherd.server import live
from cloudherd.server.live import DENIED, LiveHub


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "RECHECK", 0.2)
    monkeypatch.setattr(live, "KEEP_ALIVE", 0.5)


class Ticking:
    """A sample that differs at every call: a fleet whose events never stop coming."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return str(self.calls)


async def _read(stream: AsyncIterator[str], seen: list[str]) -> None:
    async for item in stream:
        seen.append(item)


@pytest.mark.usefixtures("quick")
def test_a_busy_stream_is_denied_once_its_login_is_revoked() -> None:
    asyncio.run(_a_busy_stream_is_denied_once_its_login_is_revoked())


async def _a_busy_stream_is_denied_once_its_login_is_revoked() -> None:
    hub = LiveHub(every=0.01)
    valid = True

    async def allowed() -> bool:
        return valid

    seen: list[str] = []
    reader = asyncio.create_task(_read(hub.changes("fleet", Ticking(), allowed), seen))
    await async_wait_until(lambda: len(seen) > 20, what="changes flowing")
    valid = False
    await async_wait_until(reader.done, timeout=30, what="the stream to end after the revocation")
    assert seen[-1] == DENIED
    assert sum(1 for s in seen if s and s != DENIED) > 20  # it was busy all along: denied between changes
    await hub.close()


@pytest.mark.usefixtures("quick")
def test_a_quiet_stream_keeps_alive_and_is_denied_too() -> None:
    asyncio.run(_a_quiet_stream_keeps_alive_and_is_denied_too())


async def _a_quiet_stream_keeps_alive_and_is_denied_too() -> None:
    hub = LiveHub(every=0.01)
    valid = True

    async def allowed() -> bool:
        return valid

    seen: list[str] = []
    reader = asyncio.create_task(_read(hub.changes("still", lambda: "same", allowed), seen))
    await async_wait_until(lambda: "" in seen, what="a keep-alive")
    valid = False
    await async_wait_until(reader.done, timeout=30, what="the quiet stream to end")
    assert seen[-1] == DENIED
    await hub.close()


def test_many_readers_of_one_thing_share_one_sampler() -> None:
    asyncio.run(_many_readers_of_one_thing_share_one_sampler())


async def _many_readers_of_one_thing_share_one_sampler() -> None:
    hub = LiveHub(every=0.02)
    sample = Ticking()
    seen: list[list[str]] = [[] for _ in range(30)]
    readers = [asyncio.create_task(_read(hub.changes("fleet", sample), mine)) for mine in seen]
    await async_wait_until(lambda: all(len(mine) >= 5 for mine in seen), what="every reader to see 5 changes")
    assert hub.watched == 1
    # each reader sees the newest digest of the one sampler: the sample ran about as often as a single
    # reader saw changes, not thirty times that
    assert sample.calls < 3 * max(len(mine) for mine in seen) + 5
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await async_wait_until(lambda: hub.watched == 0, what="the sampler to stop with its last reader")


def test_a_v1_event_stream_ends_when_its_token_is_revoked(tmp_path: Path) -> None:
    spec = "name: streamed\ngroups:\n  web: {count: 0, min: 0}\n"
    with Served(tmp_path / "home", write_config(tmp_path, {"local": "local"}, interval=30)) as served:
        token = served.token()
        api = served.client(token)
        infra_id = api.post("/v1/infrastructures", content=spec).json()["id"]
        lines: list[str] = []

        def follow() -> None:
            with api.stream("GET", f"/v1/infrastructures/{infra_id}/events",
                            headers={"Accept": "text/event-stream"}, timeout=120) as stream:
                for line in stream.iter_lines():
                    lines.append(line)

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        wait_until(lambda: any(line.startswith("id: ") for line in lines), what="the first events")
        served.cli("token", "revoke", token.split("_")[1])
        wait_until(lambda: not reader.is_alive(), timeout=60, what="the stream to end after the revocation")
        assert "event: denied" in lines
        assert api.get("/v1/infrastructures").status_code == 401
