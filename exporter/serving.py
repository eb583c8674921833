"""uvicorn on sockets we bind ourselves, with process signals left to the caller.

Binding first lets a port in use become a one-line configuration error, lets tests ask for port 0
and read the real one back, and lets one event loop serve the exporter and the demo's simulator.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from exporter.listener import Listener


class EmbeddedServer(uvicorn.Server):
    """uvicorn's server without its signal handling, which would re-raise SIGTERM on exit."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class GuardedServer(EmbeddedServer):
    """The exporter's server: connections come in through a `Listener` (bounded, with a head
    timeout) instead of asyncio's server; uvicorn still speaks HTTP on each of them.

    The config's app must be wrapped by `listener.track`, so the listener knows when a
    connection is busy with a request.
    """

    def __init__(self, config: uvicorn.Config, listener: Listener) -> None:
        super().__init__(config)
        self._listener = listener

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # What uvicorn's startup does for sockets it is given, with a Listener for the server.
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        config, state, loop = self.config, self.server_state, asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=state, app_state=self.lifespan.state, _loop=loop
            )

        self._listener.start(protocol)
        # uvicorn's shutdown only calls close() and wait_closed() on these
        self.servers = [self._listener]  # type: ignore[list-item]
        self.started = True


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening socket; host "" means every interface, IPv6 and IPv4 where possible.

    The socket is made with proto IPPROTO_TCP on purpose: asyncio turns on TCP_NODELAY only for
    accepted sockets whose proto says TCP, and without it a response written in two pieces
    (headers, then body) waits ~40 ms for the client's delayed ACK (Nagle's algorithm).
    """
    dualstack = not host and socket.has_dualstack_ipv6()
    if not host:
        host = "::" if dualstack else "0.0.0.0"
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if dualstack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def address_of(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return host, port
