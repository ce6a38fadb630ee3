"""The FastAPI application of ``cloudherd serve``: native routes under ``/v1``, Occopus' routes under
``/infrastructures``, the AWS Auto Scaling Query API at ``POST /autoscaling`` (and ``POST /``), and
``GET /healthz`` and ``GET /metrics``.  Its lifespan runs the manager for every attached infrastructure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response

from cloudherd import __version__
from cloudherd.api.client import Client
from cloudherd.api.metrics_view import Listener
from cloudherd.server.config import ServerConfig
from cloudherd.server.gate import Gate
from cloudherd.server.runtime import Runtime


def create_app(config: ServerConfig | None = None, *, db_url: str | None = None) -> FastAPI:
    from cloudherd.server import autoscaling, errors, metrics_route, native, native_choices, notify_routes, occopus, ui

    runtime = Runtime(config or ServerConfig(), Client(db_url))
    runtime.client.max_group_size = runtime.config.max_group_size  # every face's scales stop at the server's ceiling
    # metrics_listen: /metrics there without a token; bound now, so that an address taken is one line, not a start
    metrics = Listener(runtime.config.metrics_listen, runtime.store) if runtime.config.metrics_listen else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if metrics is not None:
            metrics.start()
        try:
            await runtime.start()
            try:
                yield
            finally:
                await runtime.stop()
        finally:
            if metrics is not None:
                await asyncio.to_thread(metrics.stop)

    app = FastAPI(title="cloudherd", version=__version__, lifespan=lifespan, default_response_class=errors.ServerJSON,
                  description="Fleets of machines from one spec: create, keep alive, scale, run commands, "
                              "tear down. Every route but /healthz needs `Authorization: Bearer <token>` "
                              "(`cloudherd token create`).")
    app.state.runtime = runtime

    @app.get("/healthz", tags=["service"])
    async def healthz(response: Response) -> dict[str, Any]:
        """Health, without a token: the database answers and the manager completes its rounds (503 and
        ``Retry-After`` when not; the body says which)."""
        ok, parts = await asyncio.to_thread(runtime.health)
        if not ok:
            response.status_code = 503
            response.headers["Retry-After"] = "5"
        return {"status": "ok" if ok else "unavailable", "version": __version__, **parts}

    errors.install(app)
    app.add_middleware(Gate)
    app.include_router(native.router)
    app.include_router(native_choices.router)
    app.include_router(notify_routes.router)
    app.include_router(occopus.router)
    app.include_router(autoscaling.router)
    app.include_router(ui.router)
    app.include_router(metrics_route.router)
    return app
