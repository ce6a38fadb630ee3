"""``GET /metrics``: Prometheus' text format, for a scraper holding a token of the server (Prometheus' ``authorization:
{credentials: …}``), and the same without a token on ``metrics_listen`` when the server file names one (a listen
address the operator chose for it, e.g. ``127.0.0.1:9108``).

The counters and histograms are this process's (its manager's passes, its cloud calls); the gauges are read from the
state at each scrape (:mod:`cloudherd.api.metrics_view`).  Every user's token scrapes the whole server: the labels
name every user's infrastructures, so give Prometheus a user (and token) of its own."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from cloudherd.api.metrics_view import reader, scrape_failed
from cloudherd.observe.metrics import CONTENT_TYPE, exposition
from cloudherd.server.deps import Caller, runtime_of

router = APIRouter()


@router.get("/metrics", tags=["service"], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus' text format"}})
async def metrics(request: Request, who: Caller) -> Response:
    """cloudherd's metrics in Prometheus' text format (names and labels: the README's "Watch it in Prometheus")."""
    body = await asyncio.to_thread(exposition, reader(runtime_of(request).store), scrape_failed)
    return Response(body, media_type=CONTENT_TYPE)
