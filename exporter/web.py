"""HTTP endpoints: the telemetry path, /healthz, /readyz and a landing page.

Handlers only read state the background refresh has already prepared; none calls the API.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from exporter import __version__
from exporter.metrics import CONTENT_TYPE, ExpositionStore


class Health(Protocol):
    @property
    def alive(self) -> bool: ...

    @property
    def ready(self) -> bool: ...


Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def create_app(
    *,
    store: ExpositionStore,
    health: Health,
    telemetry_path: str = "/metrics",
    lifespan: Lifespan | None = None,
) -> Starlette:
    async def metrics(_: Request) -> Response:
        return Response(store.render(), media_type=CONTENT_TYPE)

    async def healthz(_: Request) -> Response:
        if health.alive:
            return PlainTextResponse("ok\n")
        return PlainTextResponse("the background refresh has stopped\n", status_code=503)

    async def readyz(_: Request) -> Response:
        if health.ready:
            return PlainTextResponse("ready\n")
        return PlainTextResponse(
            "not ready: the first refresh of every account has not finished\n", status_code=503
        )

    landing = _landing_page(telemetry_path).encode()

    async def index(_: Request) -> Response:
        return HTMLResponse(landing)

    return Starlette(
        routes=[
            Route(telemetry_path, metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/", index, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def _landing_page(telemetry_path: str) -> str:
    path = html.escape(telemetry_path)
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Cloudflare OAuth exporter</title></head>
<body>
<h1>Cloudflare OAuth exporter</h1>
<p>Version {html.escape(__version__)}.
Counts come from a background refresh, never from a scrape.</p>
<ul>
<li><a href="{path}">{path}</a> &mdash; metrics</li>
<li><a href="/healthz">/healthz</a> &mdash; the process is alive</li>
<li><a href="/readyz">/readyz</a> &mdash; every account has been read once</li>
</ul>
</body>
</html>
"""
