"""Notifications: webhooks for chosen event kinds (``cloudherd notify``, ``/v1/notifications``), and the sender
that delivers them from the outbox (:mod:`cloudherd.engine.outbox`) inside ``serve`` and ``manage``.

A webhook's signing secret is made here, shown once (in :class:`NewWebhook`), and stored sealed like the
AWS-style secrets (:func:`cloudherd.api.auth.seal`); it never goes into a log, an event or a command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from cloudherd import webhooks
from cloudherd.errors import NotFound, UsageError

if TYPE_CHECKING:
    from cloudherd.engine.outbox import Sender, Tuning
    from cloudherd.state.models import OutboxRow, Webhook, WebhookRoute
    from cloudherd.state.repo import Store

SECRET_PREFIX = "whsec_"
TOPIC = re.compile(r"arn:[A-Za-z0-9-]+:sns:[A-Za-z0-9-]*:[0-9]*:[A-Za-z0-9_-]{1,256}")
TEST_MESSAGE = "a test notification from cloudherd"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Route(_Value):
    """What a webhook receives: events of one infrastructure (or every one of its owner's) of the chosen kinds."""

    infrastructure: str | None  # its id; None: every infrastructure
    events: list[str]
    auto_scaling_group: str | None = None  # set by the Auto Scaling API's PutNotificationConfiguration


class WebhookInfo(_Value):
    """A webhook and how its deliveries stand."""

    id: str
    url: str
    topic: str | None
    routes: list[Route]
    created_at: datetime
    pending: int = 0
    sent: int = 0
    failed: int = 0


class NewWebhook(_Value):
    """A webhook just added, with its signing secret: shown this once, never again."""

    webhook: WebhookInfo
    secret: str


class Delivery(_Value):
    """One notification in the outbox."""

    delivery_id: str
    webhook: str
    state: str  # pending | sent | failed
    kind: str | None
    message: str | None
    infrastructure: str | None
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class TestResult(_Value):
    """What a webhook's receiver answered a test notification (``status`` None: no answer)."""

    webhook: str
    url: str
    delivery_id: str
    status: int | None
    error: str | None


def check_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"webhook URL {url!r}: an http:// or https:// URL with a host")
    if len(url) > 2000:
        raise UsageError("webhook URL: at most 2000 characters")
    return url


def check_topic(topic: str) -> str:
    topic = topic.strip()
    if not TOPIC.fullmatch(topic):
        raise UsageError(f"--topic {topic!r}: an SNS topic ARN, arn:aws:sns:REGION:ACCOUNT:NAME")
    return topic


def _info(hook: Webhook, routes: Sequence[WebhookRoute], counts: dict[str, int]) -> WebhookInfo:
    return WebhookInfo(id=hook.id, url=hook.url, topic=hook.topic, created_at=hook.created_at,
                       routes=[Route(infrastructure=r.infrastructure_id, events=list(r.kinds.get("list") or []),
                                     auto_scaling_group=r.scaling_group) for r in routes],
                       pending=counts.get("pending", 0), sent=counts.get("sent", 0), failed=counts.get("failed", 0))


def _delivery(row: OutboxRow) -> Delivery:
    payload = row.payload or {}
    return Delivery(delivery_id=row.delivery_id, webhook=row.webhook_id, state=row.state, kind=payload.get("kind"),
                    message=payload.get("message"), infrastructure=payload.get("infrastructure"),
                    attempts=row.attempts, last_status=row.last_status, last_error=row.last_error,
                    created_at=row.created_at, sent_at=row.sent_at)


def test_payload(hook_id: str, kind: str = webhooks.TEST_KIND, message: str = TEST_MESSAGE,
                 **more: Any) -> dict[str, Any]:
    """A notification of no event: ``cloudherd notify test``'s, or the Auto Scaling API's TEST_NOTIFICATION."""
    from cloudherd.times import utcnow

    return {"event_id": None, "kind": kind, "message": message, "at": utcnow().isoformat().replace("+00:00", "Z"),
            "infrastructure_id": None, "infrastructure": None, "node_id": None, "node": None, "cause_id": None,
            "origin": "cloudherd notify test", "trace_id": None, "matched": [kind], "webhook": hook_id, **more}


class Notifications:
    """The webhooks of one user (``owner``) over ``store``."""

    def __init__(self, store: Store, owner: str) -> None:
        self.store = store
        self.owner = owner

    def add(self, url: str, *, infrastructure: str | None = None, events: Sequence[str] = (),
            topic: str | None = None) -> NewWebhook:
        """A webhook for ``events`` (names of :data:`cloudherd.webhooks.KINDS`, event kinds, ``*``; none: every
        kind, unless it is a topic's) of ``infrastructure`` (its id or name; None: every one of the owner's)."""
        from cloudherd.api.auth import seal

        url = check_url(url)
        topic = check_topic(topic) if topic else None
        try:
            kinds = webhooks.check_kinds(events) if events or not topic else []
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        infra_id = None
        if infrastructure:
            infra = self.store.resolve(infrastructure)
            if infra.owner_id != self.owner:
                raise NotFound(f"no infrastructure '{infrastructure}'")
            infra_id = infra.id
        if topic and self.store.webhook_by_topic(self.owner, topic) is not None:
            raise UsageError(f"topic {topic} has a webhook already (`cloudherd notify list`; remove it first)")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        hook = self.store.add_webhook(self.owner, url, seal(secret), topic=topic, infrastructure_id=infra_id,
                                      kinds=kinds)
        return NewWebhook(webhook=self.get(hook.id), secret=secret)

    def get(self, webhook_id: str) -> WebhookInfo:
        for info in self.webhooks():
            if info.id == webhook_id:
                return info
        raise NotFound(f"no webhook '{webhook_id}' (`cloudherd notify list` shows them)")

    def webhooks(self) -> list[WebhookInfo]:
        return [_info(hook, routes, counts) for hook, routes, counts in self.store.webhooks_of(self.owner)]

    def remove(self, webhook_id: str) -> None:
        if not self.store.remove_webhook(self.owner, webhook_id):
            raise NotFound(f"no webhook '{webhook_id}' (`cloudherd notify list` shows them)")

    def deliveries(self, *, webhook_id: str | None = None, states: Sequence[str] = ("pending", "failed"),
                   limit: int = 200) -> list[Delivery]:
        bad = sorted(set(states) - {"pending", "sent", "failed"})
        if bad:
            raise UsageError(f"--state {bad[0]!r}: pending, sent or failed")
        return [_delivery(r) for r in self.store.deliveries(self.owner, states, webhook_id=webhook_id, limit=limit)]

    def retry(self, webhook_id: str | None = None) -> int:
        """The given-up notifications (of one webhook, else of every one) queued again; how many."""
        if webhook_id is not None:
            self.get(webhook_id)  # NotFound, said as for the other commands
        return self.store.retry_deliveries(self.owner, webhook_id)

    async def test(self, webhook_id: str | None = None, *, timeout: float = 10.0) -> list[TestResult]:
        """A signed test notification sent now (not through the outbox) to the webhook, or to every one."""
        from cloudherd.api.auth import unseal
        from cloudherd.engine.outbox import send_now
        from cloudherd.state.models import new_id

        hooks = [h for h, _, _ in self.store.webhooks_of(self.owner) if webhook_id is None or h.id == webhook_id]
        if not hooks:
            raise NotFound(f"no webhook '{webhook_id}'" if webhook_id else "no webhook (add one with `cloudherd "
                                                                          "notify add URL`)")

        async def one(hook: Webhook) -> TestResult:
            delivery = new_id()
            secret = unseal(hook.secret_sealed)
            if secret is None:
                return TestResult(webhook=hook.id, url=hook.url, delivery_id=delivery, status=None,
                                  error="its secret cannot be opened (sealed with another key)")
            outcome = await send_now(hook.url, secret, {"delivery_id": delivery, **test_payload(hook.id)}, timeout)
            return TestResult(webhook=hook.id, url=hook.url, delivery_id=delivery, status=outcome.status,
                              error=outcome.error)

        return list(await asyncio.gather(*(one(h) for h in hooks)))


def configured_tuning() -> Tuning:
    """The sender's pace as the settings say (``CLOUDHERD_WEBHOOK_*``); a UsageError for a value that is none."""
    from cloudherd.engine.outbox import Tuning

    return Tuning.configured()


def sender(store: Store, tuning: Tuning | None = None) -> Sender:
    """The outbox's sender over ``store``, opening secrets with this process's key, at ``tuning``'s pace (else
    the settings')."""
    from cloudherd.api.auth import unseal
    from cloudherd.engine.outbox import Sender

    return Sender(store, unseal, tuning or configured_tuning())


@contextlib.asynccontextmanager
async def delivering(store: Store, tuning: Tuning | None = None, *, enabled: bool = True) -> AsyncIterator[None]:
    """The sender running beside the body (``manage``, ``serve``); stopped, its claims released, at the end."""
    if not enabled:
        yield
        return
    made = sender(store, tuning)  # a bad CLOUDHERD_WEBHOOK_* setting is said here, before anything starts
    stop = asyncio.Event()
    task = asyncio.create_task(made.run(stop), name="notifications")
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, timeout=15)
