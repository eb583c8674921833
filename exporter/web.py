"""HTTP endpoints: the telemetry path, /healthz, /readyz and the status page at `/`.

Handlers only read state the background refresh has already prepared; none calls the API. With
basic auth configured, everything but /healthz and /readyz asks for credentials: the probes
reveal nothing and kubelets do not send any.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from exporter.exposition import CONTENT_TYPE, ExpositionStore
from exporter.snapshot import AccountSnapshot
from exporter.status_page import CONTENT_SECURITY_POLICY, render_status_page
from exporter.webconfig import BasicAuth


class Health(Protocol):
    @property
    def alive(self) -> bool: ...

    @property
    def ready(self) -> bool: ...


Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]
_CONTENT_TYPE = CONTENT_TYPE.encode()
_OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_MAX_BCRYPT_PENDING = 8
_CHALLENGE = [
    (b"www-authenticate", b'Basic realm="cloudflare-oauth-exporter", charset="UTF-8"'),
    (b"content-type", b"text/plain; charset=utf-8"),
]


def create_app(
    *,
    store: ExpositionStore,
    health: Health,
    telemetry_path: str = "/metrics",
    snapshots: Callable[[], Iterable[AccountSnapshot]] = tuple,
    per_client: bool = False,
    basic_auth: BasicAuth | None = None,
    lifespan: Lifespan | None = None,
    clock: Callable[[], float] = time.time,
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

    async def status(_: Request) -> Response:
        page = render_status_page(
            snapshots(), telemetry_path=telemetry_path, now=clock(), per_client=per_client
        )
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "X-Content-Type-Options": "nosniff",
            },
        )

    router = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/", status, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    return ExporterApp(store, telemetry_path, router, basic_auth)


class ExporterApp:
    """The telemetry path served straight from the store; everything else through Starlette.

    A scrape is the hot path: it skips routing and middleware and writes the bytes the store
    already holds.
    """

    def __init__(
        self,
        store: ExpositionStore,
        telemetry_path: str,
        router: Starlette,
        basic_auth: BasicAuth | None = None,
    ) -> None:
        self._store = store
        self._telemetry_path = telemetry_path
        self._basic_auth = basic_auth
        self._bcrypt = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bcrypt")
        self._bcrypt_pending = 0
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            guarded = self._basic_auth is not None and scope["path"] not in _OPEN_PATHS
            if guarded and not await self._authorized(scope):
                await _respond(send, 401, _CHALLENGE, b"401 Unauthorized\n")
                return
            if scope["path"] == self._telemetry_path:
                encoding = next((v for k, v in scope["headers"] if k == b"accept-encoding"), b"")
                await self._metrics(scope["method"], encoding, send)
                return
        await self.router(scope, receive, send)

    async def _authorized(self, scope: Scope) -> bool:
        assert self._basic_auth is not None
        raw = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        header = raw.decode("latin-1")
        allowed = self._basic_auth.remembered(header)
        if allowed is not None:
            return allowed
        # bcrypt takes tens of milliseconds: on threads of its own, so neither the event loop nor
        # the default executor (which resolves the API's host name) waits behind a flood of bad
        # passwords; past a few at once, the answer is no without asking bcrypt.
        if self._bcrypt_pending >= _MAX_BCRYPT_PENDING:
            return False
        self._bcrypt_pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._bcrypt, self._basic_auth.check, header)
        finally:
            self._bcrypt_pending -= 1

    async def _metrics(self, method: str, accept_encoding: bytes, send: Send) -> None:
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, [(b"allow", b"GET, HEAD")], b"")
            return
        parts: tuple[bytes, ...]
        if _accepts_gzip(accept_encoding):
            parts = (self._store.render_gzip(),)
            headers = [(b"content-type", _CONTENT_TYPE), (b"content-encoding", b"gzip")]
        else:
            parts = self._store.render_parts()  # sent as they are: no copy of the whole
            headers = [(b"content-type", _CONTENT_TYPE)]
        length = sum(map(len, parts))
        headers += [(b"vary", b"accept-encoding"), (b"content-length", b"%d" % length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if method == "HEAD":
            parts = (b"",)
        for index, part in enumerate(parts):
            more = index < len(parts) - 1
            await send({"type": "http.response.body", "body": part, "more_body": more})


def _accepts_gzip(header: bytes) -> bool:
    for part in header.lower().split(b","):
        coding, _, params = part.strip().partition(b";")
        if coding.strip() == b"gzip":
            return params.replace(b" ", b"") not in (b"q=0", b"q=0.0", b"q=0.00", b"q=0.000")
    return False


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
