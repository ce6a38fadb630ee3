"""The notifications' outbox against a real receiver on 127.0.0.1, on SQLite and PostgreSQL: it fails (500), then
hangs (longer than the sender's timeout), then is stopped and started again on the same port, while two senders
work the one outbox; every notification arrives once (counting the 2xx answers by delivery id), in order per
infrastructure, each signed validly (the shipped helper checks), and a replayed one is refused.  Rows pending when
a sender stops, or whose sender died holding their claim, are delivered by the next one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import async_wait_until
from webhook_receiver import Receiver

from cloudherd.api.notify import Notifications, sender
from cloudherd.engine.outbox import Tuning
from cloudherd.state.db import open_engine
from cloudherd.state.repo import Store
from cloudherd.webhooks import InvalidSignature, Replayed, Verifier, signature, verify

FAST = Tuning(timeout=1.5, backoff=0.05, backoff_cap=0.3, attempts=10_000, poll=0.05, claim=20.0)


@pytest.fixture
def store(home: Path, db_url: str) -> Iterator[Store]:
    made = Store(open_engine(db_url))
    try:
        yield made
    finally:
        made.engine.dispose()


def _infrastructures(store: Store, *names: str) -> tuple[str, list[str]]:
    user = store.ensure_user("alice", "ssh-ed25519 AAAA", "/nowhere")
    ids = [store.create_infrastructure(name=name, owner_id=user.id, spec_path="-", spec_text="", ssh_key_path="-").id
           for name in names]
    return user.id, ids


def _sent(store: Store, count: int) -> bool:
    rows = store.outbox_rows()
    return len(rows) == count and all(r.state == "sent" for r in rows)


async def _running(store: Store, tuning: Tuning, stop: asyncio.Event) -> asyncio.Task[None]:
    return asyncio.create_task(sender(store, tuning).run(stop))


def test_every_notification_arrives_once_in_order_through_failures_hangs_and_a_restart(store: Store) -> None:
    owner, (first, second) = _infrastructures(store, "alpha", "beta")
    receiver = Receiver()
    made = Notifications(store, owner).add(receiver.url, events=["*"])
    receiver.verifier = Verifier(made.secret)
    receiver.fail_next, receiver.hang_next = 3, 2
    receiver.start()
    written: dict[str, list[int]] = {first: [], second: []}
    for number in range(8):
        written[first].append(store.add_event(first, "made", f"made alpha-{number}"))
        written[second].append(store.add_event(second, "retired", f"beta-{number} retired (failed)"))
    total = 16
    assert len(store.outbox_rows()) == total  # written with their events

    async def scenario() -> None:
        stop = asyncio.Event()
        senders = [await _running(store, FAST, stop), await _running(store, FAST, stop)]  # two managers' senders
        try:
            await async_wait_until(lambda: len(receiver.seen) >= 5, timeout=60, what="3 failures and 2 hangs")
            receiver.stop()
            await async_wait_until(lambda: any("Connect" in (r.last_error or "") for r in store.outbox_rows()),
                                   timeout=60, what="an attempt refused while the receiver is down")
            receiver.start()  # the same port
            await async_wait_until(lambda: _sent(store, total), timeout=120, what="every notification sent")
        finally:
            stop.set()
            await asyncio.gather(*senders)

    try:
        asyncio.run(scenario())
    finally:
        receiver.stop()
    assert [s.status for s in receiver.seen[:3]] == [500, 500, 500]
    assert sum(s.status is None for s in receiver.seen) >= 2  # the hung ones: never answered
    assert [s.refusal for s in receiver.seen if s.refusal and "could not be written" not in s.refusal] == []
    answered = receiver.answered_ok()
    assert sorted(answered) == sorted(r.delivery_id for r in store.outbox_rows())
    assert set(answered.values()) == {1}  # exactly once, by delivery id, counting 2xx answers
    accepted = receiver.accepted()
    for infra_id, events in written.items():
        assert [p["event_id"] for p in accepted if p["infrastructure_id"] == infra_id] == events  # in order
    payload = next(p for p in accepted if p["infrastructure_id"] == first)
    assert payload["infrastructure"] == "alpha" and payload["kind"] == "made" and payload["matched"] == ["*"]
    assert {"delivery_id", "event_id", "kind", "message", "infrastructure_id", "infrastructure", "node", "at",
            "cause_id", "origin", "trace_id"} <= set(payload)

    # a replay of a delivered notification, as received (its signature is valid): refused by the helper
    delivered = next(s for s in receiver.seen if s.payload is not None)
    with pytest.raises(Replayed):
        receiver.verifier.verify(delivered.body, delivered.headers)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(made.secret, delivered.body.replace(b"alpha", b"gamma"), delivered.headers)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify("whsec_another", delivered.body, delivered.headers)
    stale = int(time.time()) - 3600
    old = {**delivered.headers, "Cloudherd-Signature": signature(made.secret, delivered.body, stale)}
    with pytest.raises(InvalidSignature, match="seconds away"):
        Verifier(made.secret).verify(delivered.body, old)


def test_pending_rows_survive_a_sender_stop_and_a_dead_senders_claim(store: Store) -> None:
    owner, (infra,) = _infrastructures(store, "gamma")
    receiver = Receiver()  # not started yet: every attempt is refused
    made = Notifications(store, owner).add(receiver.url, infrastructure="gamma", events=["node.made", "node.failed"])
    receiver.verifier = Verifier(made.secret)
    ids = [store.add_event(infra, "made", f"made gamma-{n}") for n in range(3)]
    store.add_event(infra, "health", "gamma-0: unhealthy: refused")  # not chosen
    ids.append(store.add_event(infra, "health", "gamma-0: failed after 3 failed check(s): refused"))
    rows = store.outbox_rows()
    assert [r.event_id for r in rows] == ids

    async def first_sender() -> None:
        stop = asyncio.Event()
        task = await _running(store, FAST, stop)
        await async_wait_until(lambda: store.outbox_rows()[0].attempts >= 2, timeout=60, what="refused attempts")
        stop.set()
        await task

    asyncio.run(first_sender())
    assert all(r.state == "pending" for r in store.outbox_rows())
    # a sender that died holding the head's claim: the next one waits for the claim to lapse, then sends it
    assert store.claim_outbox(rows[0].id, "a-dead-sender", 1.0)
    receiver.start()

    async def second_sender() -> None:
        stop = asyncio.Event()
        task = await _running(store, FAST, stop)
        try:
            await async_wait_until(lambda: _sent(store, len(ids)), timeout=60, what="the pending rows sent")
        finally:
            stop.set()
            await task

    try:
        asyncio.run(second_sender())
    finally:
        receiver.stop()
    assert [p["event_id"] for p in receiver.accepted()] == ids
    assert set(receiver.answered_ok().values()) == {1}
    assert receiver.accepted()[-1]["matched"] == ["node.failed"]


def test_a_row_is_given_up_after_its_attempts_and_the_queue_goes_on(store: Store) -> None:
    owner, (infra,) = _infrastructures(store, "delta")
    receiver = Receiver(fail_next=2)
    made = Notifications(store, owner).add(receiver.url, events=["scale"])
    receiver.verifier = Verifier(made.secret)
    receiver.start()
    ids = [store.add_event(infra, "scale-out", f"web: {n} → {n + 1}") for n in range(2)]

    async def scenario() -> None:
        stop = asyncio.Event()
        task = await _running(store, Tuning(timeout=2, backoff=0.05, attempts=2, poll=0.05), stop)
        try:
            await async_wait_until(lambda: [r.state for r in store.outbox_rows()] == ["failed", "sent"], timeout=60,
                                   what="the first given up, the second sent")
        finally:
            stop.set()
            await task

    try:
        asyncio.run(scenario())
    finally:
        receiver.stop()
    failed = Notifications(store, owner).deliveries()
    assert [(d.state, d.attempts, d.last_status) for d in failed] == [("failed", 2, 500)]
    assert [p["event_id"] for p in receiver.accepted()] == ids[1:]
    assert Notifications(store, owner).webhooks()[0].failed == 1
    assert store.notifications_given_up(infra) == 1

    # the receiver mended: the given-up one queued again, with its attempts afresh, and delivered once
    assert Notifications(store, owner).retry() == 1
    assert store.notifications_given_up(infra) == 0
    assert [(r.state, r.attempts) for r in store.outbox_rows()] == [("pending", 0), ("sent", 1)]
    assert Notifications(store, owner).retry() == 0

    async def again() -> None:
        stop = asyncio.Event()
        task = await _running(store, Tuning(timeout=2, backoff=0.05, attempts=2, poll=0.05), stop)
        try:
            await async_wait_until(lambda: _sent(store, 2), timeout=60, what="the retried one sent")
        finally:
            stop.set()
            await task

    receiver.start()
    try:
        asyncio.run(again())
    finally:
        receiver.stop()
    assert [p["event_id"] for p in receiver.accepted()] == ids[1:] + ids[:1]
    assert set(receiver.answered_ok().values()) == {1}
