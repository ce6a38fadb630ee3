"""Notifications: webhooks, their routes, and the outbox their deliveries wait in.  Mixed into
:class:`cloudherd.state.repo.Store`.

An event's outbox rows are written in the event's own transaction (:meth:`NotifyState._notify`), so a crash
loses neither; the sender (:mod:`cloudherd.engine.outbox`) claims a row (by the database's clock, so that two
managers never send the same one), sends it, and marks it sent in a transaction right after the receiver's 2xx.

Cheap without webhooks: whether any route exists is asked at most every :attr:`NotifyState.ROUTES_TTL` seconds
per database (and again at once after a route changes in this process), so a manager writing many events makes no
extra query then.  A webhook added by another process receives the events written from that long after.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Engine, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from cloudherd import webhooks
from cloudherd.state import clock
from cloudherd.state.models import (
    Event,
    Infrastructure,
    Node,
    OutboxRow,
    Webhook,
    WebhookRoute,
    new_id,
    utcnow,
)

PENDING, SENT, FAILED = "pending", "sent", "failed"


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0))


class NotifyState:
    """``session``, ``reading``, ``engine`` and ``_dialect`` come from the Store."""

    engine: Engine
    _dialect: str
    ROUTES_TTL: ClassVar[float] = 2.0
    _routes_known: ClassVar[dict[str, tuple[float, bool]]] = {}  # by database URL: (until, whether any route)

    def session(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    def reading(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    # -- webhooks and routes ------------------------------------------------------------------------------

    @classmethod
    def _routes_changed(cls) -> None:
        cls._routes_known.clear()

    def add_webhook(self, owner_id: str, url: str, secret_sealed: str, *, topic: str | None = None,
                    infrastructure_id: str | None = None, kinds: Sequence[str] | None = None) -> Webhook:
        """A webhook, and its route when ``kinds`` are given (a topic's webhook may have none: its Auto Scaling
        groups' notification configurations route to it)."""
        with self.session() as s, s.begin():
            hook = Webhook(owner_id=owner_id, url=url, secret_sealed=secret_sealed, topic=topic)
            s.add(hook)
            s.flush()
            if kinds:
                s.add(WebhookRoute(webhook_id=hook.id, infrastructure_id=infrastructure_id,
                                   kinds={"list": list(kinds)}))
        self._routes_changed()
        return hook

    def webhooks_of(self, owner_id: str) -> list[tuple[Webhook, list[WebhookRoute], dict[str, int]]]:
        """The owner's webhooks, each with its routes and its outbox rows counted by state."""
        with self.reading() as s:
            hooks = list(s.scalars(select(Webhook).where(Webhook.owner_id == owner_id).order_by(Webhook.created_at,
                                                                                                Webhook.id)))
            ids = [h.id for h in hooks]
            routes = list(s.scalars(select(WebhookRoute).where(WebhookRoute.webhook_id.in_(ids))
                                    .order_by(WebhookRoute.id))) if ids else []
            counts = s.execute(select(OutboxRow.webhook_id, OutboxRow.state, func.count())
                               .where(OutboxRow.webhook_id.in_(ids))
                               .group_by(OutboxRow.webhook_id, OutboxRow.state)).all() if ids else []
        return [(h, [r for r in routes if r.webhook_id == h.id],
                 {state: n for hook_id, state, n in counts if hook_id == h.id}) for h in hooks]

    def webhook(self, owner_id: str, webhook_id: str) -> Webhook | None:
        with self.reading() as s:
            return s.scalar(select(Webhook).where(Webhook.owner_id == owner_id, Webhook.id == webhook_id))

    def webhook_by_topic(self, owner_id: str, topic: str) -> Webhook | None:
        with self.reading() as s:
            return s.scalar(select(Webhook).where(Webhook.owner_id == owner_id, Webhook.topic == topic))

    def remove_webhook(self, owner_id: str, webhook_id: str) -> bool:
        """The webhook gone, with its routes and its undelivered notifications; False when there was none."""
        with self.session() as s, s.begin():
            hook = s.scalar(select(Webhook).where(Webhook.owner_id == owner_id, Webhook.id == webhook_id))
            if hook is None:
                return False
            s.execute(delete(OutboxRow).where(OutboxRow.webhook_id == hook.id))
            s.execute(delete(WebhookRoute).where(WebhookRoute.webhook_id == hook.id))
            s.delete(hook)
        self._routes_changed()
        return True

    def put_group_route(self, webhook_id: str, infrastructure_id: str, group: str, kinds: Sequence[str]) -> None:
        """The Auto Scaling group's route to the webhook, replacing the one it had (PutNotificationConfiguration)."""
        with self.session() as s, s.begin():
            s.execute(delete(WebhookRoute).where(WebhookRoute.webhook_id == webhook_id,
                                                 WebhookRoute.scaling_group == group))
            s.add(WebhookRoute(webhook_id=webhook_id, infrastructure_id=infrastructure_id, scaling_group=group,
                               kinds={"list": list(kinds)}))
        self._routes_changed()

    def delete_group_route(self, webhook_id: str, group: str) -> bool:
        with self.session() as s, s.begin():
            gone = _count(s.execute(delete(WebhookRoute).where(WebhookRoute.webhook_id == webhook_id,
                                                               WebhookRoute.scaling_group == group)))
        self._routes_changed()
        return gone > 0

    def group_routes(self, owner_id: str, groups: Sequence[str] | None = None) -> list[tuple[WebhookRoute, Webhook]]:
        """The owner's Auto Scaling groups' routes (of ``groups`` only, when given), with their webhooks."""
        query = (select(WebhookRoute, Webhook).join(Webhook, Webhook.id == WebhookRoute.webhook_id)
                 .where(Webhook.owner_id == owner_id, WebhookRoute.scaling_group.is_not(None)))
        if groups:
            query = query.where(WebhookRoute.scaling_group.in_(list(groups)))
        with self.reading() as s:
            return [(route, hook) for route, hook in s.execute(query.order_by(WebhookRoute.scaling_group,
                                                                              Webhook.topic))]

    # -- writing the outbox -------------------------------------------------------------------------------

    def _any_route(self, s: Session) -> bool:
        key = str(self.engine.url)
        now = time.monotonic()
        known = self._routes_known.get(key)
        if known is not None and known[0] > now:
            return known[1]
        found = bool(s.scalar(select(exists().where(WebhookRoute.id.is_not(None)))))
        self._routes_known[key] = (now + self.ROUTES_TTL, found)
        return found

    def _notify(self, s: Session, event: Event) -> None:
        """The outbox rows of ``event`` (flushed: it has its id), one per webhook a route of which matches it, in
        the caller's transaction."""
        if not self._any_route(s):
            return
        infra_id = event.infrastructure_id
        query = select(WebhookRoute, Webhook.id).join(Webhook, Webhook.id == WebhookRoute.webhook_id)
        if infra_id is None:
            query = query.where(WebhookRoute.infrastructure_id.is_(None))
        else:
            owner = select(Infrastructure.owner_id).where(Infrastructure.id == infra_id).scalar_subquery()
            query = query.where(or_(WebhookRoute.infrastructure_id == infra_id,
                                    (WebhookRoute.infrastructure_id.is_(None)) & (Webhook.owner_id == owner)))
        matched: dict[str, tuple[list[str], dict[str, Any] | None]] = {}
        for route, hook_id in s.execute(query.order_by(WebhookRoute.id)):
            names = webhooks.matching(route.kinds.get("list") or [], event.kind, event.message)
            if not names:
                continue
            found, aws = matched.setdefault(hook_id, ([], None))
            found.extend(n for n in names if n not in found)
            if route.scaling_group and aws is None:
                kind = next((n for n in names if n in webhooks.AWS_TYPES), names[0])
                matched[hook_id] = (found, {"Event": kind, "AutoScalingGroupName": route.scaling_group,
                                            "Description": event.message})
        if matched:
            self._enqueue(s, matched, event)

    def _enqueue(self, s: Session, matched: dict[str, tuple[list[str], dict[str, Any] | None]], event: Event) -> None:
        infra_name = node_name = None
        if event.infrastructure_id is not None:
            infra_name = s.scalar(select(Infrastructure.name).where(Infrastructure.id == event.infrastructure_id))
        if event.node_id is not None:
            node_name = s.scalar(select(Node.name).where(Node.id == event.node_id))
        base = event_payload(event, infra_name, node_name)
        for hook_id, (names, aws) in matched.items():
            delivery = new_id()
            payload = {"delivery_id": delivery, **base, "matched": names, **({"aws": aws} if aws else {})}
            s.add(OutboxRow(delivery_id=delivery, webhook_id=hook_id, infrastructure_id=event.infrastructure_id,
                            event_id=event.id, payload=payload, next_at=clock.now(self._dialect)))

    def enqueue(self, webhook_id: str, payload: dict[str, Any], infrastructure_id: str | None = None) -> str:
        """A notification of no event (a test one) for one webhook; its delivery id."""
        delivery = new_id()
        with self.session() as s, s.begin():
            s.add(OutboxRow(delivery_id=delivery, webhook_id=webhook_id, infrastructure_id=infrastructure_id,
                            payload={"delivery_id": delivery, **payload}, next_at=clock.now(self._dialect)))
        return delivery

    # -- the sender's side ----------------------------------------------------------------------------------

    def outbox_due(self, limit: int = 100) -> list[tuple[OutboxRow, str, str]]:
        """The oldest pending row of each webhook and infrastructure, when it is due and nobody's claim holds it
        (by the database's clock), with its webhook's URL and sealed secret."""
        heads = (select(func.min(OutboxRow.id)).where(OutboxRow.state == PENDING)
                 .group_by(OutboxRow.webhook_id, OutboxRow.infrastructure_id))
        query = (select(OutboxRow, Webhook.url, Webhook.secret_sealed).join(Webhook, Webhook.id == OutboxRow.webhook_id)
                 .where(OutboxRow.id.in_(heads), clock.passed(self._dialect, OutboxRow.next_at),
                        or_(OutboxRow.claimed_until.is_(None), clock.passed(self._dialect, OutboxRow.claimed_until)))
                 .order_by(OutboxRow.id).limit(limit))
        with self.reading() as s:
            return [(row, url, sealed) for row, url, sealed in s.execute(query)]

    def claim_outbox(self, row_id: int, token: str, seconds: float) -> bool:
        """Claim a pending row for ``seconds`` unless another sender's claim holds it; whether this one did."""
        with self.session() as s, s.begin():
            return _count(s.execute(
                update(OutboxRow).where(OutboxRow.id == row_id, OutboxRow.state == PENDING,
                                        or_(OutboxRow.claimed_until.is_(None),
                                            clock.passed(self._dialect, OutboxRow.claimed_until)))
                .values(claimed_by=token, claimed_until=clock.after(self._dialect, seconds))
                .execution_options(synchronize_session=False))) == 1

    def outbox_sent(self, row_id: int, token: str, status: int) -> bool:
        """The row delivered (the receiver answered ``status``, a 2xx); False when the claim was no longer ours."""
        with self.session() as s, s.begin():
            return _count(s.execute(
                update(OutboxRow).where(OutboxRow.id == row_id, OutboxRow.claimed_by == token,
                                        OutboxRow.state == PENDING)
                .values(state=SENT, sent_at=utcnow(), last_status=status, last_error=None, claimed_until=None,
                        attempts=OutboxRow.attempts + 1)
                .execution_options(synchronize_session=False))) == 1

    def outbox_retry(self, row_id: int, token: str, *, status: int | None, error: str, delay: float | None) -> bool:
        """An attempt failed: tried again in ``delay`` seconds, or given up (``failed``) when ``delay`` is None."""
        values: dict[str, Any] = {"last_status": status, "last_error": error[:1000], "claimed_until": None,
                                  "attempts": OutboxRow.attempts + 1}
        if delay is None:
            values["state"] = FAILED
        else:
            values["next_at"] = clock.after(self._dialect, delay)
        with self.session() as s, s.begin():
            return _count(s.execute(
                update(OutboxRow).where(OutboxRow.id == row_id, OutboxRow.claimed_by == token,
                                        OutboxRow.state == PENDING)
                .values(**values).execution_options(synchronize_session=False))) == 1

    def release_outbox(self, token: str) -> int:
        """A stopping sender's claims let go, so that another (or its next start) sends those rows at once."""
        with self.session() as s, s.begin():
            return _count(s.execute(update(OutboxRow).where(OutboxRow.claimed_by == token,
                                                            OutboxRow.state == PENDING)
                                    .values(claimed_until=None).execution_options(synchronize_session=False)))

    def retry_deliveries(self, owner_id: str, webhook_id: str | None = None) -> int:
        """The owner's given-up notifications (of one webhook) pending again, due now, with their attempts and
        their age counted afresh (``created_at`` becomes now: the payload's ``at`` keeps the event's time); how
        many.  Each goes back to its queue's head: it is sent before the rows still pending behind it."""
        hooks = select(Webhook.id).where(Webhook.owner_id == owner_id)
        if webhook_id is not None:
            hooks = hooks.where(Webhook.id == webhook_id)
        with self.session() as s, s.begin():
            return _count(s.execute(
                update(OutboxRow).where(OutboxRow.state == FAILED, OutboxRow.webhook_id.in_(hooks))
                .values(state=PENDING, attempts=0, next_at=clock.now(self._dialect), claimed_by=None,
                        claimed_until=None, created_at=utcnow())
                .execution_options(synchronize_session=False)))

    def notifications_given_up(self, infra_id: str) -> int:
        """How many of the infrastructure's notifications were given up (``status`` says so)."""
        with self.reading() as s:
            return int(s.scalar(select(func.count()).select_from(OutboxRow)
                                .where(OutboxRow.infrastructure_id == infra_id, OutboxRow.state == FAILED)) or 0)

    def deliveries(self, owner_id: str, states: Sequence[str] = (PENDING, FAILED), *,
                   webhook_id: str | None = None, limit: int = 200) -> list[OutboxRow]:
        """The owner's outbox rows in ``states``, oldest first."""
        query = (select(OutboxRow).join(Webhook, Webhook.id == OutboxRow.webhook_id)
                 .where(Webhook.owner_id == owner_id, OutboxRow.state.in_(list(states))))
        if webhook_id is not None:
            query = query.where(OutboxRow.webhook_id == webhook_id)
        with self.reading() as s:
            return list(s.scalars(query.order_by(OutboxRow.id).limit(limit)))

    def outbox_rows(self, webhook_id: str | None = None) -> list[OutboxRow]:
        """Every outbox row (of one webhook), oldest first: for tests and the status of a delivery."""
        query = select(OutboxRow)
        if webhook_id is not None:
            query = query.where(OutboxRow.webhook_id == webhook_id)
        with self.reading() as s:
            return list(s.scalars(query.order_by(OutboxRow.id)))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def event_payload(event: Event, infra_name: str | None, node_name: str | None) -> dict[str, Any]:
    """What a notification says of its event (the delivery id and the matched names are added to it)."""
    return {"event_id": event.id, "kind": event.kind, "message": event.message, "at": _iso(event.at),
            "infrastructure_id": event.infrastructure_id, "infrastructure": infra_name,
            "node_id": event.node_id, "node": node_name, "cause_id": event.cause_id, "origin": event.origin,
            "trace_id": event.trace_id}
