"""The listening socket: bound before serving, and fast for small multi-write responses."""

from __future__ import annotations

import asyncio
import socket

import pytest

from exporter.serving import address_of, bind_socket


def test_accepted_connections_get_tcp_nodelay():
    # asyncio sets TCP_NODELAY only on accepted sockets whose proto is TCP; without it a
    # response written as headers-then-body waits ~40 ms for the peer's delayed ACK.
    async def scenario() -> int:
        listener = bind_socket("127.0.0.1", 0)
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        host, port = address_of(listener)
        _, writer = await asyncio.open_connection(host, port)
        try:
            return await asyncio.wait_for(accepted, 5)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(scenario()) != 0


def test_every_interface_when_no_host_is_given():
    sock = bind_socket("", 0)
    try:
        host, port = address_of(sock)
        assert port > 0
        assert host in ("::", "0.0.0.0")
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        sock.close()


def test_a_port_in_use_raises_oserror_and_leaks_nothing():
    first = bind_socket("127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match="in use"):
            bind_socket("127.0.0.1", address_of(first)[1])
    finally:
        first.close()
