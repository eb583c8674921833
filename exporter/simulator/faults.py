"""Answers the simulator gives instead of the normal one: every way the API can fail."""

from __future__ import annotations

import asyncio
import itertools
import json
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

# A body made as it is sent, never held whole: from a thread (Iterator) or the server's loop.
Chunks = Callable[[], Iterator[bytes] | AsyncIterator[bytes]]
_CHUNK = 64 * 1024


@dataclass
class Fault:
    """An answer the simulator gives instead of the normal one."""

    status: int = 500
    code: int | None = None
    message: str = ""
    body: str | None = None
    content_type: str = "application/json"
    retry_after: str | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    stream: Chunks | None = None  # instead of `body`: sent chunked, as it is made

    @classmethod
    def api_error(cls, status: int, code: int, message: str) -> Fault:
        return cls(status=status, code=code, message=message)

    @classmethod
    def html(cls, status: int = 502) -> Fault:
        return cls(
            status=status,
            body="<html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>",
            content_type="text/html",
        )

    @classmethod
    def not_json(cls) -> Fault:
        return cls(
            status=200, body='{"success": true, "result": [', content_type="application/json"
        )

    @classmethod
    def success_false(cls, code: int = 1000, message: str = "internal processing error") -> Fault:
        return cls(
            status=200,
            body=json.dumps(
                {
                    "success": False,
                    "errors": [{"code": code, "message": message}],
                    "messages": [],
                    "result": None,
                }
            ),
        )

    @classmethod
    def missing_client_id(cls) -> Fault:
        return cls(
            status=200,
            body=json.dumps(
                {
                    "success": True,
                    "errors": [],
                    "messages": [],
                    "result": [{"visibility": "private"}],
                    "result_info": {"page": 1, "per_page": 20, "count": 1, "total_count": 1},
                }
            ),
        )

    @classmethod
    def rate_limited(cls, retry_after: int = 1) -> Fault:
        return cls(
            status=429,
            code=971,
            message="Please wait and consider throttling your request speed",
            retry_after=str(retry_after),
        )

    @classmethod
    def nothing_left(cls, reset: int) -> Fault:
        """Answers normally, with a `Ratelimit` header saying no request is left for `reset`
        seconds: the client should wait that long before its next request."""
        return cls(status=0, headers={"Ratelimit": f'"default";r=0;t={reset}'})

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Answers normally, but only after `delay` seconds (for client timeouts)."""
        return cls(status=0, delay=delay)

    @classmethod
    def envelope(cls, text: str) -> Fault:
        """A 200 whose body is exactly `text` (for odd JSON: NaN, 1e999, deep nesting...)."""
        return cls(status=200, body=text)

    @classmethod
    def clients_without_end(cls, megabytes: float | None = None) -> Fault:
        """A list answer that never closes: ever more made-up clients, for `megabytes` of body
        or, with None, for ever (an endless chunked body)."""

        def chunks() -> Iterator[bytes]:
            yield b'{"success": true, "errors": [], "messages": [], "result": ['
            sent = 0
            for n in itertools.count():
                clients = ",".join(
                    json.dumps({"client_id": f"endless-{n:08x}-{i:03x}", "visibility": "private",
                                "client_name": "x" * 200})
                    for i in range(200)
                )  # fmt: skip
                piece = (clients + ",").encode()
                if megabytes is not None and sent + len(piece) > megabytes * 1e6:
                    return
                sent += len(piece)
                yield piece

        return cls(status=200, stream=chunks)

    @classmethod
    def drip(cls, every: float = 0.1) -> Fault:
        """A 200 that starts a list answer, then sends one more byte every `every` seconds for
        ever: every read gets something, so only a timeout over the whole body ends it."""

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"success": true, "errors": [], "messages": [], "result": ['
            while True:
                await asyncio.sleep(every)
                yield b" "

        return cls(status=200, stream=chunks)

    @classmethod
    def junk(cls, megabytes: float) -> Fault:
        """A 200 of `megabytes` of bytes that are not JSON (a proxy's error page gone wrong)."""

        def chunks() -> Iterator[bytes]:
            piece = b"<junk>" * (_CHUNK // 6)
            for _ in range(int(megabytes * 1e6 / len(piece)) + 1):
                yield piece

        return cls(status=200, stream=chunks, content_type="text/html")

    @classmethod
    def gzip_bomb(cls, expanded_megabytes: int = 1024) -> Fault:
        """A small gzip body that expands to `expanded_megabytes` of JSON whitespace."""
        return cls(
            status=200, stream=lambda: iter(_bomb(expanded_megabytes)),
            headers={"Content-Encoding": "gzip"},
        )  # fmt: skip

    @classmethod
    def gzip_repeats(cls, client: dict[str, object], expanded_megabytes: int) -> Fault:
        """A valid answer, gzip-compressed: `client` repeated for `expanded_megabytes` of JSON
        (one client, listed again and again; a few hundred times smaller on the wire)."""
        compress = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        item = json.dumps(client).encode() + b","
        parts = [compress.compress(b'{"success": true, "errors": [], "messages": [], "result": [')]
        block = item * ((1 << 20) // len(item) + 1)
        parts.extend(compress.compress(block) for _ in range(expanded_megabytes))
        parts.append(compress.compress(json.dumps(client).encode() + b"]}") + compress.flush())
        body = [part for part in parts if part]
        return cls(status=200, stream=lambda: iter(body), headers={"Content-Encoding": "gzip"})


_BOMBS: dict[int, list[bytes]] = {}


def _bomb(expanded_megabytes: int) -> list[bytes]:
    """Made once per size: `{"result": [` then spaces, gzip-compressed (about 1000:1)."""
    if expanded_megabytes not in _BOMBS:
        compress = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        parts = [compress.compress(b'{"success": true, "result": [')]
        spaces = b" " * (1 << 20)
        parts.extend(compress.compress(spaces) for _ in range(expanded_megabytes))
        parts.append(compress.flush())
        _BOMBS[expanded_megabytes] = [part for part in parts if part]
    return _BOMBS[expanded_megabytes]
