"""The project's Cloudflare API simulator on a loopback port, served by uvicorn in a thread."""

from __future__ import annotations

import threading
import time

import uvicorn
from starlette.types import Receive, Scope, Send

from exporter.serving import EmbeddedServer, bind_socket
from exporter.simulator import DEFAULT_TOKEN, Simulator, url_of

TOKEN = DEFAULT_TOKEN


class SimulatorThread:
    """`simulator` can be swapped while serving, so a test session can share one server."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self._socket = bind_socket(host, port)
        self.url = url_of(self._socket)
        self._server = EmbeddedServer(
            uvicorn.Config(
                self._app, log_config=None, access_log=False, lifespan="off", interface="asgi3"
            )
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.simulator.app(scope, receive, send)

    def __enter__(self) -> SimulatorThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
