"""The HTTP endpoints, through the ASGI app (httpx.ASGITransport: real requests, no socket)."""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass

import httpx
import pytest

from exporter.aggregation import count_clients
from exporter.exposition import CONTENT_TYPE, ExpositionStore
from exporter.snapshot import AccountSnapshot
from exporter.web import create_app


@dataclass
class FakeHealth:
    alive: bool = True
    ready: bool = False


def get(app, path: str) -> httpx.Response:
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as client:
            return await client.get(path)

    return asyncio.run(fetch())


def make_app(health: FakeHealth, path: str = "/metrics"):
    store = ExpositionStore(discovering=False, refresh_interval=300, process_metrics=False)
    store.put(AccountSnapshot("a" * 32, None, True, count_clients([]), 1.0, 0.5))
    return create_app(store=store, health=health, telemetry_path=path), store


def test_metrics_serve_the_store_with_the_prometheus_content_type():
    app, store = make_app(FakeHealth())
    response = get(app, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    assert response.content == store.render()


def request(app, method: str, path: str) -> httpx.Response:
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as client:
            return await client.request(method, path, headers={"Accept-Encoding": "identity"})

    return asyncio.run(fetch())


def test_head_gives_the_length_without_the_body():
    app, store = make_app(FakeHealth())
    response = request(app, "HEAD", "/metrics")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == len(store.render())


def test_other_methods_are_refused():
    app, _ = make_app(FakeHealth())
    response = request(app, "POST", "/metrics")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_a_custom_telemetry_path_moves_the_metrics():
    app, _ = make_app(FakeHealth(), "/probe/metrics")
    assert get(app, "/probe/metrics").status_code == 200
    assert get(app, "/metrics").status_code == 404


def test_readyz_waits_for_the_first_refresh():
    health = FakeHealth(ready=False)
    app, _ = make_app(health)
    response = get(app, "/readyz")
    assert response.status_code == 503
    assert "not ready" in response.text
    health.ready = True
    assert get(app, "/readyz").status_code == 200


def test_healthz_fails_once_the_refresh_task_is_dead():
    health = FakeHealth(alive=True)
    app, _ = make_app(health)
    assert get(app, "/healthz").status_code == 200
    health.alive = False
    assert get(app, "/healthz").status_code == 503


def test_landing_page_links_every_endpoint():
    app, _ = make_app(FakeHealth(), "/probe")
    response = get(app, "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for link in ('href="/probe"', 'href="/healthz"', 'href="/readyz"'):
        assert link in response.text


def gzip_request(app, accept_encoding: str | None) -> httpx.Response:
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        headers = {"Accept-Encoding": accept_encoding} if accept_encoding is not None else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as client:
            request = client.build_request("GET", "/metrics", headers=headers)
            if accept_encoding is None:
                request.headers.pop("accept-encoding", None)
            return await client.send(request)

    return asyncio.run(fetch())


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        ("gzip", True),
        ("br, gzip;q=0.5", True),
        ("GZIP", True),
        ("gzip;q=0", False),
        ("identity", False),
        (None, False),
    ],
)
def test_metrics_are_gzipped_when_the_scraper_asks(accept, gzipped):
    app, store = make_app(FakeHealth())
    response = gzip_request(app, accept)
    assert response.status_code == 200
    assert response.headers["vary"] == "accept-encoding"
    assert (response.headers.get("content-encoding") == "gzip") is gzipped
    assert response.content == store.render()  # httpx decodes the gzip
    if gzipped:
        assert int(response.headers["content-length"]) == len(store.render_gzip())
        assert gzip.decompress(store.render_gzip()) == store.render()


def test_the_status_page_forbids_scripts_framing_and_sniffing():
    app, _ = make_app(FakeHealth())
    response = get(app, "/")
    policy = response.headers["content-security-policy"]
    for directive in ("default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"):
        assert directive in policy
    assert "script-src" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def page_request(app, method: str, accept_encoding: str) -> httpx.Response:
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as client:
            return await client.request(method, "/", headers={"Accept-Encoding": accept_encoding})

    return asyncio.run(fetch())


def test_the_status_page_is_bytes_made_once_gzipped_when_asked():
    app, _ = make_app(FakeHealth())
    plain = page_request(app, "GET", "identity")
    zipped = page_request(app, "GET", "gzip")
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.text == plain.text  # httpx decodes the gzip
    assert int(zipped.headers["content-length"]) < int(plain.headers["content-length"])
    assert zipped.headers["vary"] == "accept-encoding"
    head = page_request(app, "HEAD", "identity")
    assert head.content == b""
    assert head.headers["content-length"] == plain.headers["content-length"]
    refused = page_request(app, "POST", "identity")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"
