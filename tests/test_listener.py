"""The listener: silent and slow clients cut off, a bounded number of connections, accept errors
logged with a count. In-process on real loopback sockets, with limits lowered to save time; the
issue's numbers against the exporter process are in tests/test_listener_attacks.py."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from exporter.listener import Listener, Tally
from exporter.serving import GuardedServer, address_of, bind_socket
from tests.support.attack import client_hello, closed_by_peer, silent_connections
from tests.support.tls import make_pki

HEAD_TIMEOUT = 0.5
WRITE_TIMEOUT = 1.0
BIG_PART = b"x" * (1 << 20)
BIG_PARTS = 16  # 16 MiB: more than the socket buffers and the transport hold


class ServerThread:
    """A GuardedServer in a thread with a small app: `/` answers at once, `/slow` after a second,
    `/hold` when `release` is set, `/big` with 16 MiB sent in parts, as /metrics is."""

    def __init__(
        self,
        *,
        max_connections: int = 4,
        keep_alive: int = 5,
        ssl_context: ssl.SSLContext | None = None,
        sock: socket.socket | None = None,
        write_timeout: float = 60.0,
    ) -> None:
        self.release = threading.Event()
        self.holding = 0  # requests to /hold inside the app
        self.sending_big = 0  # responses to /big not yet sent to the end
        self._socket = sock or bind_socket("127.0.0.1", 0)
        self.address = address_of(self._socket)
        self.listener = Listener(
            self._socket,
            max_connections=max_connections,
            ssl_context=ssl_context,
            head_timeout=HEAD_TIMEOUT,
            write_timeout=write_timeout,
        )
        config = uvicorn.Config(
            self.listener.track(self._app), log_config=None, access_log=False, lifespan="off",
            timeout_keep_alive=keep_alive, proxy_headers=False, http="h11",
        )  # fmt: skip
        config.load()
        config.ssl = ssl_context
        self._server = GuardedServer(config, self.listener)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/slow":
            await asyncio.sleep(1.0)
        elif scope["path"] == "/hold":
            self.holding += 1
            await asyncio.to_thread(self.release.wait, 10)
        elif scope["path"] == "/big":
            self.sending_big += 1
            try:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                for index in range(BIG_PARTS):
                    more = index < BIG_PARTS - 1
                    await send({"type": "http.response.body", "body": BIG_PART, "more_body": more})
            finally:
                self.sending_big -= 1
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.should_exit = True
        self._thread.join(timeout=15)

    @property
    def url(self) -> str:
        return "http://{}:{}".format(*self.address)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until `condition` held; fails after `timeout`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "the condition never held"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def connect() -> Iterator[Callable[[tuple[str, int]], socket.socket]]:
    """Opens non-blocking client connections, closed after the test."""
    opened: list[socket.socket] = []

    def open_one(address: tuple[str, int]) -> socket.socket:
        sock = socket.create_connection(address, timeout=5)
        sock.setblocking(False)
        opened.append(sock)
        return sock

    yield open_one
    for sock in opened:
        sock.close()


def received(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536, socket.MSG_PEEK)
    except BlockingIOError:
        return b""


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread() as running:
        yield running


@pytest.mark.slow
def test_silent_and_dripping_clients_are_closed_at_the_head_timeout(server, connect):
    silent = connect(server.address)
    dripping = connect(server.address)
    dripping.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    started = time.monotonic()
    dripped = 0
    while not (closed_by_peer(silent) and closed_by_peer(dripping)):
        assert time.monotonic() - started < 5, "still open long after the head timeout"
        try:
            dripping.send(b"a")  # a byte every 50 ms keeps no connection alive
            dripped += 1
        except OSError:
            pass
        time.sleep(0.05)
    # closed by the head timeout (0.5 s), not by something sooner
    assert time.monotonic() - started >= HEAD_TIMEOUT * 0.9
    assert dripped >= 5
    assert server.listener.open_connections == 0


@pytest.mark.slow
def test_a_request_slower_than_the_head_timeout_is_not_cut(server):
    response = httpx.get(f"{server.url}/slow", timeout=5)
    assert response.status_code == 200
    assert response.text == "ok"


@pytest.mark.slow
def test_after_a_response_the_next_head_gets_the_head_timeout(connect):
    with ServerThread(keep_alive=60) as server:  # only the head timeout can close it soon
        sock = connect(server.address)
        sock.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: b"ok" in received(sock))
        sock.send(b"GET / HTTP/1.1\r\n")  # the next request never ends its head
        assert wait_until(lambda: closed_by_peer(sock)) < 5


@pytest.mark.slow
def test_after_a_response_longer_than_the_head_timeout_the_next_head_still_gets_it(connect):
    # The timer goes off during the response and is set for the write deadline, a minute away;
    # the end of the response must bring it back to the head deadline.
    with ServerThread(keep_alive=60) as server:
        sock = connect(server.address)
        sock.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: b"ok" in received(sock))
        sock.send(b"GET / HTTP/1.1\r\n")  # the next request never ends its head
        assert wait_until(lambda: closed_by_peer(sock)) < 5


@pytest.mark.slow
def test_past_the_limit_the_longest_waiting_connection_makes_room(server):
    with silent_connections(server.address, 4) as silent:
        wait_until(lambda: server.listener.open_connections == 4)
        response = httpx.get(server.url, timeout=5)
        assert response.status_code == 200
        wait_until(lambda: closed_by_peer(silent[0]))
        assert not any(closed_by_peer(sock) for sock in silent[1:])


@pytest.mark.slow
def test_when_every_connection_is_busy_a_new_one_is_refused_and_service_recovers(server):
    results: list[int] = []

    def hold() -> None:
        results.append(httpx.get(f"{server.url}/hold", timeout=10).status_code)

    holders = [threading.Thread(target=hold) for _ in range(4)]
    for thread in holders:
        thread.start()
    wait_until(lambda: server.holding == 4)  # every connection is in the middle of a request
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url, timeout=5)  # closed at once, not left waiting
    server.release.set()
    for thread in holders:
        thread.join(timeout=10)
    assert results == [200] * 4
    assert httpx.get(server.url, timeout=5).status_code == 200


@pytest.mark.slow
def test_clients_that_ask_for_a_big_response_and_never_read_are_closed_at_the_write_timeout():
    with ServerThread(max_connections=2, write_timeout=WRITE_TIMEOUT) as server:
        stuck = []
        for _ in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(server.address)
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            stuck.append(sock)  # and never read
        try:
            wait_until(lambda: server.sending_big == 2)
            with pytest.raises(httpx.TransportError):
                httpx.get(server.url, timeout=5)  # every connection is busy: locked out, for now
            started = time.monotonic()
            wait_until(lambda: server.listener.open_connections == 0 and server.sending_big == 0)
            assert time.monotonic() - started < WRITE_TIMEOUT + 1
            assert httpx.get(server.url, timeout=5).status_code == 200
            wait_until(lambda: all(closed_by_peer(sock) for sock in stuck))
        finally:
            for sock in stuck:
                sock.close()


@pytest.mark.slow
def test_a_big_response_the_client_reads_is_sent_whole():
    with ServerThread(write_timeout=WRITE_TIMEOUT) as server:
        assert httpx.get(f"{server.url}/big", timeout=5).content == BIG_PART * BIG_PARTS


@pytest.mark.slow
def test_a_stalled_or_silent_tls_handshake_is_closed_at_the_head_timeout(tmp_path, connect):
    pki = make_pki(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    with ServerThread(ssl_context=context) as server:
        silent = connect(server.address)
        stalled = connect(server.address)
        stalled.send(client_hello())  # the server answers, then waits for the rest
        elapsed = wait_until(lambda: closed_by_peer(silent) and closed_by_peer(stalled))
        assert elapsed >= HEAD_TIMEOUT * 0.9
        client = ssl.create_default_context(cafile=str(pki.ca))
        response = httpx.get(f"https://127.0.0.1:{server.address[1]}/", verify=client, timeout=5)
        assert response.status_code == 200


def test_a_tally_logs_the_first_event_then_at_most_once_an_interval_with_a_count(caplog):
    now = [0.0]
    scheduled: list[tuple[float, Callable[[], None]]] = []
    tally = Tally(
        "accepting failed", interval=10.0, clock=lambda: now[0],
        call_later=lambda delay, callback: scheduled.append((now[0] + delay, callback)),
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="exporter.listener"):
        for _ in range(50_000):  # 50,000 failed accepts over 45 s
            tally.add(err="Too many open files")
            now[0] += 45 / 50_000
            while scheduled and scheduled[0][0] <= now[0]:
                scheduled.pop(0)[1]()
        tally.flush()
    counts = [record.times for record in caplog.records]
    assert counts[0] == 1  # the first is told at once
    assert sum(counts) == 50_000  # none is lost
    assert len(counts) <= 6  # one line per 10 s, and the last few at the end
    assert all(record.err == "Too many open files" for record in caplog.records)


class OutOfDescriptors(socket.socket):
    """A listening socket whose accept fails with EMFILE while `failing` is set."""

    failing = True
    attempts = 0

    def accept(self):
        OutOfDescriptors.attempts += 1
        if OutOfDescriptors.failing:
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


@pytest.mark.slow
def test_out_of_descriptors_with_nothing_to_close_backs_off_then_recovers(caplog):
    OutOfDescriptors.failing, OutOfDescriptors.attempts = True, 0
    sock = OutOfDescriptors(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    with (
        caplog.at_level(logging.INFO, logger="exporter.listener"),
        ServerThread(sock=sock) as server,
        socket.create_connection(server.address, timeout=5),  # waits in the backlog
    ):
        time.sleep(1.0)
        # 5 ms doubling to 1 s: about 8 tries in a second, not a busy loop
        assert 3 <= OutOfDescriptors.attempts <= 12
        OutOfDescriptors.failing = False
        assert httpx.get(server.url, timeout=5).status_code == 200
    failed = [r for r in caplog.records if "accepting a connection failed" in r.getMessage()]
    assert failed  # told, with a count, once per 10 s at most
    assert failed[0].err == "Too many open files"
    assert len(failed) <= 2


def test_a_connection_that_cannot_be_handed_to_http_is_closed_and_counted(caplog):
    def broken() -> asyncio.Protocol:
        raise RuntimeError("a bug in the protocol")

    async def scenario() -> int:
        sock = bind_socket("127.0.0.1", 0)
        listener = Listener(sock, max_connections=4)
        listener.start(broken)
        try:
            for _ in range(3):
                reader, writer = await asyncio.open_connection(*address_of(sock))
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                # closed, not hung (unread bytes make the close a reset)
                with contextlib.suppress(ConnectionResetError):
                    assert await asyncio.wait_for(reader.read(), 5) == b""
                writer.close()
                with contextlib.suppress(ConnectionResetError):
                    await writer.wait_closed()
            return listener.open_connections
        finally:
            listener.close()
            sock.close()

    with caplog.at_level(logging.INFO, logger="exporter.listener"):
        assert asyncio.run(scenario()) == 0
    lines = [r for r in caplog.records if "could not be handed" in r.getMessage()]
    assert [r.times for r in lines] == [1, 2]  # at once, then the rest counted at close
    assert lines[0].err == "RuntimeError: a bug in the protocol"
