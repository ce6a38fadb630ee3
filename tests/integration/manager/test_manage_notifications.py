"""`cloudherd manage` runs the notifications' sender beside its passes: a notification waiting in the outbox is
delivered, signed, to a receiver on 127.0.0.1; Ctrl-C stops both."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from helpers import wait_until
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
