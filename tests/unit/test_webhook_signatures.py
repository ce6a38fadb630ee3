"""cloudherd.webhooks: the verification helper a receiver ships (bad signature, stale timestamp, replay refused),
the kinds a webhook chooses (a bad one is a located error), and which webhooks an event's outbox rows go to."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cloudherd.engine.outbox import signed_request
from cloudherd.state.repo import Store
from cloudherd.webhooks import InvalidSignature, Replayed, Verifier, check_kinds, matching, verify

SECRET = "whsec_test"
NOW = 1_800_000_000.0


def _signed(payload: dict[str, object], at: float = NOW) -> tuple[bytes, dict[str, str]]:
    return signed_request(SECRET, payload, now=at)


def test_a_signed_notification_verifies_and_a_changed_one_does_not() -> None:
    body, headers = _signed({"delivery_id": "d1", "kind": "made"})
    assert headers["Cloudherd-Signature"].startswith(f"t={int(NOW)},v1=")
    assert verify(SECRET, body, headers, now=NOW + 10)["kind"] == "made"
    assert verify(SECRET, body.decode(), {k.lower(): v for k, v in headers.items()}, now=NOW)["delivery_id"] == "d1"
    with pytest.raises(InvalidSignature, match="does not match"):
        verify("whsec_other", body, headers, now=NOW)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(SECRET, body.replace(b"made", b"gone"), headers, now=NOW)
    with pytest.raises(InvalidSignature, match="no Cloudherd-Signature"):
        verify(SECRET, body, {}, now=NOW)
    with pytest.raises(InvalidSignature, match="t=<unix seconds>"):
        verify(SECRET, body, {"Cloudherd-Signature": "v1=abc"}, now=NOW)
    with pytest.raises(InvalidSignature, match="delivery_id"):
        verify(SECRET, body, {**headers, "Cloudherd-Delivery": "d2"}, now=NOW)


def test_http_servers_headers_and_pairs_are_read_too() -> None:
    from http.client import HTTPMessage

    body, headers = _signed({"delivery_id": "d1"})
    message = HTTPMessage()
    for key, value in headers.items():
        message[key] = value
    assert verify(SECRET, body, message, now=NOW)["delivery_id"] == "d1"
    assert verify(SECRET, body, list(headers.items()), now=NOW)["delivery_id"] == "d1"


def test_a_stale_or_future_timestamp_is_refused() -> None:
    body, headers = _signed({"delivery_id": "d1"})
    with pytest.raises(InvalidSignature, match="300 seconds"):
        verify(SECRET, body, headers, now=NOW + 301)
    with pytest.raises(InvalidSignature, match="300 seconds"):
        verify(SECRET, body, headers, now=NOW - 301)
    assert verify(SECRET, body, headers, tolerance=600, now=NOW + 301)


def test_the_verifier_refuses_a_replay_and_accepts_a_forgotten_one_again() -> None:
    verifier = Verifier(SECRET)
    body, headers = _signed({"delivery_id": "d1"})
    assert verifier.verify(body, headers, now=NOW)["delivery_id"] == "d1"
    with pytest.raises(Replayed):
        verifier.verify(body, headers, now=NOW + 1)
    again_body, again_headers = _signed({"delivery_id": "d1"}, at=NOW + 5)  # a re-send: same id, new timestamp
    with pytest.raises(Replayed):
        verifier.verify(again_body, again_headers, now=NOW + 5)
    verifier.forget("d1")
    assert verifier.verify(again_body, again_headers, now=NOW + 5)
    other_body, other_headers = _signed({"delivery_id": "d2"})
    assert verifier.verify(other_body, other_headers, now=NOW + 2)


def test_the_helper_imports_with_the_standard_library_only() -> None:
    code = ("import sys, cloudherd.webhooks; heavy = {'sqlalchemy', 'httpx', 'pydantic', 'cryptography'} & "
            "set(sys.modules); print(sorted(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.replace("'", '"')) == []


def test_kinds_are_checked_and_matched() -> None:
    assert check_kinds([]) == ["*"]
    assert check_kinds(["node.made,scale", " scale ", "health"]) == ["node.made", "scale", "health"]
    with pytest.raises(ValueError, match=r"--events: unknown event kind 'node.mad' \(did you mean node.made\?\)"):
        check_kinds(["node.mad"])
    assert matching(["node.failed"], "health", "web-1: failed after 3 failed check(s): refused") == ["node.failed"]
    assert matching(["node.failed"], "health", "web-1: unhealthy: refused") == []
    assert matching(["node.health", "*"], "health", "web-1: healthy again (ok)") == ["node.health", "*"]
    assert matching(["scale"], "scale-out", "web: 2 → 3") == ["scale"]
    assert matching(["*"], "test", "a test") == []  # test notifications go to the one webhook tested only
    assert matching(["autoscaling:EC2_INSTANCE_LAUNCH"], "made", "made and deployed web-1") == [
        "autoscaling:EC2_INSTANCE_LAUNCH"]


def test_an_events_rows_go_to_the_webhooks_that_choose_it(memory_store: Store) -> None:
    store = memory_store
    alice = store.ensure_user("alice", "key", "/k").id
    bob = store.ensure_user("bob", "key", "/k").id
    mine = store.create_infrastructure(name="web", owner_id=alice, spec_path="-", spec_text="", ssh_key_path="-").id
    theirs = store.create_infrastructure(name="db", owner_id=bob, spec_path="-", spec_text="", ssh_key_path="-").id
    assert store.add_event(mine, "made", "made web-1") and store.outbox_rows() == []  # no webhook: nothing
    everything = store.add_webhook(alice, "http://127.0.0.1:1/a", "sealed", kinds=["*"]).id
    made_here = store.add_webhook(alice, "http://127.0.0.1:1/b", "sealed", infrastructure_id=mine,
                                  kinds=["node.made"]).id
    store.add_webhook(alice, "http://127.0.0.1:1/c", "sealed", topic="arn:aws:sns:x:1:t")  # routes nothing yet
    store.add_event(mine, "made", "made web-2")
    store.add_event(mine, "scale-out", "web: 2 → 3")
    store.add_event(theirs, "made", "made db-1")  # bob's: none of alice's webhooks
    store.finish_pass(mine, {}, ("pass", "nothing to do"), keep=5)
    rows = store.outbox_rows()
    assert [(r.webhook_id, r.payload["kind"]) for r in rows] == [
        (everything, "made"), (made_here, "made"), (everything, "scale-out"), (everything, "pass")]
    assert rows[0].payload["infrastructure"] == "web" and rows[0].delivery_id == rows[0].payload["delivery_id"]
    assert len({r.delivery_id for r in rows}) == len(rows)


def test_a_webhook_added_through_another_store_counts_at_once(memory_store: Store) -> None:
    store = memory_store
    owner = store.ensure_user("alice", "key", "/k").id
    infra = store.create_infrastructure(name="web", owner_id=owner, spec_path="-", spec_text="", ssh_key_path="-").id
    store.add_event(infra, "made", "made web-1")  # known now: no route
    other = Store(store.engine)  # another process's Store on the same database, through the same cache here
    hook = other.add_webhook(owner, "http://127.0.0.1:1/a", "sealed", kinds=["*"])
    store.add_event(infra, "made", "made web-2")
    assert [r.webhook_id for r in store.outbox_rows()] == [hook.id]
