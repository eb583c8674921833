"""The ceiling for /metrics: a minimal ASGI app that returns fixed bytes, nothing else.

    python bench/ceiling.py BODY_FILE HOST:PORT      # PORT 0 picks a free one

Served exactly as the exporter serves (same socket setup, same uvicorn server and settings), so
the ratio between the two measures only what the exporter does per scrape.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.serving import EmbeddedServer, address_of, bind_socket

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def main() -> None:
    body = Path(sys.argv[1]).read_bytes()
    host, _, port = sys.argv[2].rpartition(":")
    headers = [(b"content-type", CONTENT_TYPE), (b"content-length", b"%d" % len(body))]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    sock = bind_socket(host, int(port))
    bound_host, bound_port = address_of(sock)
    print(f"ceiling: http://{bound_host}:{bound_port}/metrics", flush=True)
    server = EmbeddedServer(
        uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", interface="asgi3")
    )
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
