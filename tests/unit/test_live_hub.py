"""The dashboard's live streams: what a page watches is sampled once, however many pages watch it."""

from __future__ import annotations

import asyncio
import threading

from cloudherd.server.live import LiveHub


class Fleet:
    """Something pages watch: its state changes when the test says, and it counts how often it is read."""

    def __init__(self) -> None:
        self.state, self.reads, self._lock = "three nodes", 0, threading.Lock()

    def sample(self) -> str:
        with self._lock:
            self.reads += 1
            return self.state


async def _next_change(stream: object) -> str:
    async for line in stream:  # type: ignore[attr-defined]
        if line.startswith("event: change"):
            return str(line.split("data: ")[1].strip())
    raise AssertionError("the stream ended")


def test_many_pages_on_one_fleet_share_one_sampler() -> None:
    async def main() -> None:
        hub, fleet = LiveHub(every=0.05), Fleet()
        pages = [hub.stream("infrastructure a", fleet.sample) for _ in range(20)]
        first = await asyncio.gather(*(_next_change(p) for p in pages))
        assert len(set(first)) == 1 and hub.watched == 1  # every page: the same digest, from one sampler
        fleet.state = "four nodes"
        second = await asyncio.wait_for(asyncio.gather(*(_next_change(p) for p in pages)), 10)
        assert len(set(second)) == 1 and second[0] != first[0]
        reads_then = fleet.reads
        for _ in range(3):  # three more changes seen by all twenty pages
            fleet.state += "."
            await asyncio.wait_for(asyncio.gather(*(_next_change(p) for p in pages)), 10)
        # one read per sample whatever the number of pages (20 pages reading each would be >= 60 reads)
        assert fleet.reads - reads_then < 40, fleet.reads - reads_then
        for page in pages:
            await page.aclose()  # type: ignore[attr-defined]
        assert hub.watched == 0  # the last page gone: nothing is sampled any more
        await hub.close()

    asyncio.run(main())


def test_a_page_that_opens_later_gets_the_current_digest_at_once() -> None:
    async def main() -> None:
        hub, fleet = LiveHub(every=0.05), Fleet()
        early = hub.stream("k", fleet.sample)
        seen = await _next_change(early)
        reads = fleet.reads
        late = hub.stream("k", fleet.sample)
        assert await asyncio.wait_for(_next_change(late), 1) == seen
        assert fleet.reads - reads < 20
        other = hub.stream("other", Fleet().sample)  # another key: a sampler of its own
        await _next_change(other)
        assert hub.watched == 2
        for page in (early, late, other):
            await page.aclose()  # type: ignore[attr-defined]
        assert hub.watched == 0
        await hub.close()

    asyncio.run(main())
