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
from starlette.types import Receive, Scope, Send

from exporter import __version__
from exporter.metrics import CONTENT_TYPE, ExpositionStore


class Health(Protocol):
    @property
    def alive(self) -> bool: ...

    @property
    def ready(self) -> bool: ...


Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]
_CONTENT_TYPE = CONTENT_TYPE.encode()


def create_app(
    *,
    store: ExpositionStore,
    health: Health,
    telemetry_path: str = "/metrics",
    lifespan: Lifespan | None = None,
) -> ExporterApp:
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

    router = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/", index, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    return ExporterApp(store, telemetry_path, router)


class ExporterApp:
    """The telemetry path served straight from the store; everything else through Starlette.

    A scrape is the hot path: it skips routing and middleware and writes the bytes the store
    already holds.
    """

    def __init__(self, store: ExpositionStore, telemetry_path: str, router: Starlette) -> None:
        self._store = store
        self._telemetry_path = telemetry_path
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self._telemetry_path:
            await self._metrics(scope["method"], send)
        else:
            await self.router(scope, receive, send)

    async def _metrics(self, method: str, send: Send) -> None:
        if method not in ("GET", "HEAD"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 405,
                    "headers": [(b"allow", b"GET, HEAD")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        body = self._store.render()
        headers = [(b"content-type", _CONTENT_TYPE), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body if method == "GET" else b""})


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
