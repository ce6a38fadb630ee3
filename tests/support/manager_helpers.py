"""Driving the manager one pass at a time (``manage --once``) until a fleet settles."""

from __future__ import annotations

from collections.abc import Callable

from cloudherd.api import SyncClient
from cloudherd.api.types import Infrastructure

FAST = "    health: {interval: 0.1s, grace: 0s, timeout: 1s, unhealthy_after: 2}\n"


def passes_until(herd: SyncClient, name: str, done: Callable[[Infrastructure], bool], passes: int = 30,
                 what: str = "the fleet to settle") -> Infrastructure:
    """Run one reconcile pass at a time (``manage --once``) until ``done`` holds; bounded by ``passes``."""
    for _ in range(passes):
        herd.manage([name], once=True)
        view = herd.status(name)
        if done(view):
            return view
    raise AssertionError(f"{what}: not after {passes} passes: {[(n.name, n.state) for n in view.live]}")


def ready_names(view: Infrastructure) -> set[str]:
    return {n.name for n in view.live if n.state == "ready"}
