"""The native API's notifications (:mod:`cloudherd.api.notify`): the caller's webhooks under
``/v1/notifications``.  The server's sender delivers them (:mod:`cloudherd.server.runtime`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from cloudherd.api.notify import Delivery, NewWebhook, Notifications, TestResult, WebhookInfo
from cloudherd.server.deps import Caller, runtime_of
from cloudherd.server.native import text_only

router = APIRouter(prefix="/v1", tags=["notifications"], dependencies=[Depends(text_only)])


class WebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="Where the notifications are POSTed (http or https)")
    infrastructure: str | None = Field(default=None, max_length=200,
                                       description="Only this infrastructure's events (id or name); none: every one")
    events: list[str] = Field(default_factory=list, max_length=100,
                              description="Kinds (node.made, scale, … or an event's own kind, * for all)")
    topic: str | None = Field(default=None, max_length=255,
                              description="The SNS topic ARN the Auto Scaling API names it by")


class WebhookChoice(BaseModel):
    """Which webhook ``/notifications/test`` and ``/notifications/retry`` act on."""

    model_config = ConfigDict(extra="forbid")

    webhook: str | None = Field(default=None, max_length=32, description="One webhook's id; none: every one")


def _model(request: Request, who: Caller) -> Notifications:
    return Notifications(runtime_of(request).store, who.user_id)


@router.post("/notifications", status_code=201, response_model=NewWebhook)
async def add_webhook(request: Request, body: WebhookBody, who: Caller) -> NewWebhook:
    """A webhook; its signing secret is in this answer only."""
    model = _model(request, who)
    return await asyncio.to_thread(lambda: model.add(body.url, infrastructure=body.infrastructure,
                                                     events=body.events, topic=body.topic))


@router.get("/notifications", response_model=list[WebhookInfo])
async def list_webhooks(request: Request, who: Caller) -> list[WebhookInfo]:
    return await asyncio.to_thread(_model(request, who).webhooks)


@router.delete("/notifications/{webhook_id}")
async def remove_webhook(request: Request, webhook_id: str, who: Caller) -> dict[str, str]:
    """The webhook gone, with its undelivered notifications."""
    await asyncio.to_thread(_model(request, who).remove, webhook_id)
    return {"removed": webhook_id}


@router.post("/notifications/test", response_model=list[TestResult])
async def test_webhooks(request: Request, body: WebhookChoice, who: Caller) -> list[TestResult]:
    """A signed test notification sent now; what each receiver answered."""
    return await _model(request, who).test(body.webhook)


@router.get("/notifications/deliveries", response_model=list[Delivery])
async def deliveries(request: Request, who: Caller,
                     state: Annotated[list[str] | None, Query(max_length=3)] = None,
                     webhook: Annotated[str | None, Query(max_length=32)] = None) -> list[Delivery]:
    """Notifications waiting (pending) or given up (failed); ``state=sent`` for the delivered ones."""
    model = _model(request, who)
    return await asyncio.to_thread(lambda: model.deliveries(webhook_id=webhook,
                                                            states=state or ("pending", "failed")))


@router.post("/notifications/retry")
async def retry_deliveries(request: Request, body: WebhookChoice, who: Caller) -> dict[str, int]:
    """The given-up notifications (of ``webhook``, else of every one of the caller's) queued again."""
    return {"retried": await asyncio.to_thread(_model(request, who).retry, body.webhook)}
