"""uvicorn on sockets we bind ourselves, with process signals left to the caller.

Binding first lets a port in use become a one-line configuration error, lets tests ask for port 0
and read the real one back, and lets one event loop serve the exporter and the demo's simulator.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """uvicorn's server without its signal handling, which would re-raise SIGTERM on exit."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening socket; host "" means every interface, IPv6 and IPv4 where possible."""
    if not host:
        if socket.has_dualstack_ipv6():
            sock = socket.create_server(
                ("::", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=backlog
            )
        else:
            sock = socket.create_server(("0.0.0.0", port), backlog=backlog)
    else:
        family = socket.AF_INET
        try:
            if ipaddress.ip_address(host).version == 6:
                family = socket.AF_INET6
        except ValueError:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=backlog)
    sock.setblocking(False)
    return sock


def address_of(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return host, port
