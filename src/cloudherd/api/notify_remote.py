"""Notifications over a ``cloudherd serve`` (``/v1/notifications``), and the one the CLI uses: apart from
:mod:`cloudherd.api.notify`, which the local client's ``manage`` runs the sender from, so that the local client
never imports the remote one (whose ``SyncClient`` fallback imports it back)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from cloudherd.api.notify import Delivery, NewWebhook, Notifications, TestResult, WebhookInfo


class RemoteNotifications:
    """:class:`Notifications` over a ``cloudherd serve`` (``/v1/notifications``): the same methods and values."""

    def __init__(self, url: str, token: str) -> None:
        from cloudherd.api.remote import RemoteClient

        self._remote = RemoteClient(url, token)

    def add(self, url: str, *, infrastructure: str | None = None, events: Sequence[str] = (),
            topic: str | None = None) -> NewWebhook:
        body = {"url": url, "infrastructure": infrastructure, "events": list(events), "topic": topic}
        return NewWebhook.model_validate(self._remote._call("POST", "/v1/notifications", json=body))

    def webhooks(self) -> list[WebhookInfo]:
        return [WebhookInfo.model_validate(w) for w in self._remote._call("GET", "/v1/notifications")]

    def remove(self, webhook_id: str) -> None:
        from urllib.parse import quote

        self._remote._call("DELETE", f"/v1/notifications/{quote(webhook_id, safe='')}")

    def deliveries(self, *, webhook_id: str | None = None, states: Sequence[str] = ("pending", "failed"),
                   limit: int = 200) -> list[Delivery]:
        params: dict[str, Any] = {"state": list(states), **({"webhook": webhook_id} if webhook_id else {})}
        return [Delivery.model_validate(d) for d in self._remote._call("GET", "/v1/notifications/deliveries",
                                                                       params=params)][:limit]

    def retry(self, webhook_id: str | None = None) -> int:
        answer = self._remote._call("POST", "/v1/notifications/retry", json={"webhook": webhook_id})
        return int(answer["retried"])

    async def test(self, webhook_id: str | None = None, *, timeout: float = 10.0) -> list[TestResult]:
        answer = await asyncio.to_thread(self._remote._call, "POST", "/v1/notifications/test",
                                         json={"webhook": webhook_id})
        return [TestResult.model_validate(r) for r in answer]


def notifications() -> Notifications | RemoteNotifications:
    """The current user's notifications: over the configured server, else over the local state."""
    from cloudherd.api.login import configured

    remote = configured()
    if remote is not None:
        return RemoteNotifications(*remote)
    from cloudherd.api.auth import user_of
    from cloudherd.state.repo import Store

    store = Store()
    return Notifications(store, user_of(store, None)[0])
