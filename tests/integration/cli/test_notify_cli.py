"""`cloudherd notify` over the local state, as a user runs it: add (the id and the secret printed once), list,
test (a signed notification sent now, the receiver's answer printed), remove; a bad kind is a located error."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import cli
from webhook_receiver import Receiver

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
