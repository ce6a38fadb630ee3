"""`cloudherd manage` runs the notifications' sender beside its passes: a notification waiting in the outbox is
delivered, signed, to a receiver on 127.0.0.1; Ctrl-C stops both.  Its pace follows ``CLOUDHERD_WEBHOOK_*``, a bad
value of which stops ``manage`` and ``serve`` with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers import cli, wait_until
from pg_harness import free_port
from webhook_receiver import Receiver

from cloudherd.api.auth import user_of
from cloudherd.api.notify import Notifications
from cloudherd.state.repo import Store
from cloudherd.webhooks import Verifier


def test_manage_delivers_what_waits_in_the_outbox(home: Path, tmp_path: Path) -> None:
    store = Store()
    owner = user_of(store, None)[0]
    receiver = Receiver()
    made = Notifications(store, owner).add(receiver.url, events=["gc"])
    receiver.verifier = Verifier(made.secret)
    event = store.add_event(None, "gc", "terminated 1 orphan(s) on local: i-0")
    receiver.start()
    log = tmp_path / "manage.log"
    with log.open("wb") as out:
        manager = subprocess.Popen([sys.executable, "-m", "cloudherd", "manage", "--all", "--interval", "1"],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        [payload] = wait_until(receiver.accepted, timeout=60, what=f"the notification (log: {log})")
        assert payload["event_id"] == event and payload["kind"] == "gc"
        wait_until(lambda: store.outbox_rows()[0].state == "sent", timeout=30, what="marked sent")
    finally:
        manager.send_signal(signal.SIGINT)
        manager.wait(timeout=60)
        receiver.stop()


def test_manage_paces_its_sender_by_the_settings(home: Path, tmp_path: Path) -> None:
    store = Store()
    owner = user_of(store, None)[0]
    receiver = Receiver()  # never started: every attempt is refused
    Notifications(store, owner).add(receiver.url, events=["gc"])
    store.add_event(None, "gc", "terminated 1 orphan(s) on local: i-1")
    for variable, value in (("CLOUDHERD_WEBHOOK_ATTEMPTS", "none"), ("CLOUDHERD_WEBHOOK_TIMEOUT", "soon")):
        refused = cli("manage", "--all", "--interval", "1", env={variable: value})
        assert refused.returncode != 0 and f"{variable}={value!r}" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        served = cli("serve", "--port", str(free_port()), env={variable: value})
        assert served.returncode != 0 and f"{variable}={value!r}" in served.stderr, served.stderr
        assert "Traceback" not in served.stderr
    assert [(r.state, r.attempts) for r in store.outbox_rows()] == [("pending", 0)]  # nothing was tried

    log = tmp_path / "manage.log"
    with log.open("wb") as out:
        manager = subprocess.Popen([sys.executable, "-m", "cloudherd", "manage", "--all", "--interval", "1"],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, "CLOUDHERD_WEBHOOK_ATTEMPTS": "1"})
    try:  # one refused attempt, and it is given up
        wait_until(lambda: [(r.state, r.attempts) for r in store.outbox_rows()] == [("failed", 1)], timeout=60,
                   what=f"the notification given up after one attempt (log: {log})")
    finally:
        manager.send_signal(signal.SIGINT)
        manager.wait(timeout=60)
    assert "Connect" in (store.outbox_rows()[0].last_error or "")
