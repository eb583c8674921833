"""HTTP endpoints: the telemetry path, /healthz, /readyz and the status page at `/`.

Handlers only read state the background refresh has already prepared; none calls the API, and
the metrics and the status page are bytes made once per change. With basic auth configured,
everything but /healthz and /readyz asks for credentials: the probes reveal nothing and kubelets
do not send any.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from exporter.exposition import CONTENT_TYPE, ExpositionStore
from exporter.password_checks import PasswordChecks, Verdict
from exporter.status_page import CONTENT_SECURITY_POLICY, StatusPage
from exporter.webconfig import BasicAuth


class Health(Protocol):
    @property
    def alive(self) -> bool: ...

    @property
    def ready(self) -> bool: ...


Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]
_OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_CHALLENGE = [
    (b"www-authenticate", b'Basic realm="cloudflare-oauth-exporter", charset="UTF-8"'),
    _TEXT,
]
_BUSY = [(b"retry-after", b"1"), _TEXT]
_METRICS = [(b"content-type", CONTENT_TYPE.encode())]
_PAGE = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
]


def create_app(
    *,
    store: ExpositionStore,
    health: Health,
    telemetry_path: str = "/metrics",
    per_client: bool = False,
    basic_auth: BasicAuth | None = None,
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

    router = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    page = StatusPage(store, telemetry_path=telemetry_path, per_client=per_client)
    return ExporterApp(store, telemetry_path, router, basic_auth, page)


class ExporterApp:
    """The telemetry path and the status page served straight from bytes already made;
    everything else through Starlette.

    A scrape is the hot path: it skips routing and middleware and writes the bytes the store
    already holds. The status page does the same, so visitors never slow scrapes down.
    """

    def __init__(
        self,
        store: ExpositionStore,
        telemetry_path: str,
        router: Starlette,
        basic_auth: BasicAuth | None = None,
        status_page: StatusPage | None = None,
    ) -> None:
        self._store = store
        self._status_page = status_page
        self._telemetry_path = telemetry_path
        self._passwords = PasswordChecks(basic_auth) if basic_auth is not None else None
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self._passwords is not None and scope["path"] not in _OPEN_PATHS:
                verdict = await self._authorize(self._passwords, scope)
                if verdict is Verdict.DENIED:
                    await _respond(send, 401, _CHALLENGE, b"401 Unauthorized\n")
                    return
                if verdict is Verdict.BUSY:
                    body = b"503 Service Unavailable: password not checked now; retry\n"
                    await _respond(send, 503, _BUSY, body)
                    return
            if scope["path"] == self._telemetry_path:
                metrics = self._store
                await _send_made(scope, send, _METRICS, metrics.render_parts, metrics.render_gzip)
                return
            page = self._status_page
            if scope["path"] == "/" and page is not None:
                await _send_made(scope, send, _PAGE, page.plain, page.gzipped)
                return
        await self.router(scope, receive, send)

    @staticmethod
    async def _authorize(passwords: PasswordChecks, scope: Scope) -> Verdict:
        raw = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        client = scope.get("client")
        peer = (str(client[0]), int(client[1])) if client else None
        return await passwords.check(raw.decode("latin-1"), peer)


async def _send_made(
    scope: Scope,
    send: Send,
    headers: list[tuple[bytes, bytes]],
    plain: Callable[[], tuple[bytes, ...]],
    gzipped: Callable[[], bytes],
) -> None:
    """Answer GET or HEAD with bytes made before the request (gzip when the client takes it),
    sent in the parts they were made in: never a copy of the whole."""
    method = scope["method"]
    if method not in ("GET", "HEAD"):
        await _respond(send, 405, [(b"allow", b"GET, HEAD")], b"")
        return
    accept_encoding = next((v for k, v in scope["headers"] if k == b"accept-encoding"), b"")
    if _accepts_gzip(accept_encoding):
        parts: tuple[bytes, ...] = (gzipped(),)
        headers = [*headers, (b"content-encoding", b"gzip")]
    else:
        parts = plain()
    length = sum(map(len, parts))
    headers = [*headers, (b"vary", b"accept-encoding"), (b"content-length", b"%d" % length)]
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
