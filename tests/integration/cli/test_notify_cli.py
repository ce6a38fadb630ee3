"""`cloudherd notify` over the local state, as a user runs it: add (the id and the secret printed once), list,
test (a signed notification sent now, the receiver's answer printed), remove; a bad kind is a located error."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path

from helpers import async_wait_until, cli, write_spec
from webhook_receiver import Receiver

from cloudherd.api.notify import sender
from cloudherd.engine.outbox import Tuning
from cloudherd.state.repo import Store
from cloudherd.webhooks import Verifier


def test_notify_add_list_test_and_remove(home: Path) -> None:
    receiver = Receiver()
    refused = cli("notify", "add", receiver.url, "--events", "node.made,rolout")
    assert refused.returncode == 2
    assert "--events: unknown event kind 'rolout' (did you mean rollout?)" in refused.stderr
    assert cli("notify", "add", receiver.url, "--infra", "nowhere").returncode != 0

    added = cli("notify", "add", receiver.url, "-e", "node.made", "-e", "rollout")
    assert added.returncode == 0, added.stderr
    hook_id = re.search(r"^webhook (\w+): ", added.stdout, re.M).group(1)  # type: ignore[union-attr]
    secret = re.search(r"secret:\s+(whsec_\S+)", added.stdout).group(1)  # type: ignore[union-attr]
    assert "shown this once" in added.stderr
    listed = cli("notify", "list")
    assert hook_id in listed.stdout and "node.made,rollout of every infrastructure" in listed.stdout
    assert secret not in listed.stdout + listed.stderr

    down = cli("notify", "test", hook_id, "--timeout", "5")
    assert down.returncode == 1 and "no answer" in down.stdout
    receiver.verifier = Verifier(secret)
    receiver.start()
    try:
        done = cli("notify", "test", hook_id)
        assert done.returncode == 0, done.stderr
        assert f"{hook_id}  {receiver.url}: HTTP 200" in done.stdout
        [payload] = receiver.accepted()
        assert payload["kind"] == "test" and payload["webhook"] == hook_id
        assert payload["delivery_id"] in done.stdout
    finally:
        receiver.stop()

    assert cli("notify", "remove", hook_id).returncode == 0
    assert "no webhook" in cli("notify", "list").stderr
    gone = cli("notify", "test")
    assert gone.returncode != 0 and "cloudherd notify add URL" in gone.stderr


def test_status_says_what_was_given_up_and_retry_queues_it_again(home: Path, tmp_path: Path) -> None:
    receiver = Receiver()  # not started: every attempt is refused
    added = cli("notify", "add", receiver.url, "--events", "node.made")
    assert added.returncode == 0, added.stderr
    spec = write_spec(tmp_path / "s", "name: told\ngroups:\n  web:\n    count: 2\n")
    assert cli("up", str(spec)).returncode == 0
    store = Store()
    made = len(store.outbox_rows())
    assert made == 2  # one per node made

    async def send(tuning: Tuning, until: Callable[[], bool]) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sender(store, tuning).run(stop))
        try:
            await async_wait_until(until, timeout=60, what="the outbox settled")
        finally:
            stop.set()
            await task

    once = Tuning(timeout=2, attempts=1, poll=0.05)
    asyncio.run(send(once, lambda: all(r.state == "failed" for r in store.outbox_rows())))
    status = cli("status", "told")
    assert status.returncode == 0, status.stderr
    assert "notifications: 2 given up (`cloudherd notify deliveries` says why; `cloudherd notify retry` sends them " \
           "again)" in " ".join(status.stdout.split())
    assert json.loads(cli("status", "told", "--json").stdout)["notifications_given_up"] == 2

    retried = cli("notify", "retry")
    assert retried.returncode == 0 and "2 notification(s) queued again" in retried.stderr, retried.stderr
    assert "given up" not in cli("status", "told").stdout
    receiver.verifier = Verifier(re.search(r"secret:\s+(whsec_\S+)", added.stdout).group(1))  # type: ignore[union-attr]
    receiver.start()
    try:
        asyncio.run(send(once, lambda: all(r.state == "sent" for r in store.outbox_rows())))
    finally:
        receiver.stop()
    assert sorted(p["node"] for p in receiver.accepted()) == ["told-web-1", "told-web-2"]
    store.engine.dispose()
    assert cli("down", "told").returncode == 0
