"""Misbehaving clients on real loopback sockets: silent connections, stalled TLS handshakes,
headers dripped a byte at a time."""

from __future__ import annotations

import contextlib
import resource
import socket
import ssl
from collections.abc import Iterator

from tests.support.tools import missing


def client_hello() -> bytes:
    """The first flight of a real TLS client: enough for the server to start its handshake."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@contextlib.contextmanager
def silent_connections(address: tuple[str, int], count: int) -> Iterator[list[socket.socket]]:
    """`count` connections started at once (non-blocking connects), that never send a byte
    unless the test does; all closed on exit."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(address)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


@contextlib.contextmanager
def file_descriptors(needed: int) -> Iterator[None]:
    """This test process may open `needed` descriptors (the soft limit raised to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        missing(f"the test needs {needed} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the other end has closed the connection (EOF or reset), without waiting; what it
    sent before (a TLS server's hello, say) is read and dropped."""
    try:
        while sock.recv(65536, socket.MSG_DONTWAIT):
            pass
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    return True
