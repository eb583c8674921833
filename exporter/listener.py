"""Accepting HTTP connections within bounds: how many are open, how long one may stay silent, and
how loudly a failed accept is logged.

asyncio's own server gives every accepted socket a transport at once (and, with TLS, a 256 KiB
read buffer), waits 60 s for a TLS handshake, never closes a connection that sends nothing, and
logs a traceback for every accept that fails for want of file descriptors. Here instead:

- a new connection stays a bare socket until its first byte arrives, so a silent one costs
  about a kilobyte, TLS or not;
- a connection has HEAD_TIMEOUT, from its accept or from the end of its last response, to
  finish its TLS handshake and send a complete request head (Go's ReadHeaderTimeout); then it is
  closed. Between requests the HTTP server's keep-alive timeout (5 s) closes it sooner;
- a connection has WRITE_TIMEOUT, from its complete request head, to be sent its whole response
  (Go's WriteTimeout); then it is closed. The HTTP server waits for a client to read a large
  response, so without it a client that asks for /metrics and never reads would hold its
  connection, and its place under `max_connections`, forever;
- at most `max_connections` are open. Past that the connection that has waited longest for a
  request is closed to make room (as nginx reuses idle keep-alive connections): a client that
  sends its request at once, as Prometheus does, is served while silent ones pile up, and
  everything is back to normal as soon as they go. If every open connection is in the middle of
  a request, the new one is closed at once;
- an accept that fails for want of resources (EMFILE and kin) closes the longest-waiting
  connection to free a descriptor, or else pauses accepting with a growing delay (5 ms to 1 s,
  as Go's http.Server), and is logged at most once per LOG_INTERVAL with a count.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 10.0
WRITE_TIMEOUT = 60.0
LOG_INTERVAL = 10.0
TLS_SHUTDOWN_TIMEOUT = 5.0  # a peer that never answers close_notify keeps its buffers this long
_ACCEPTS_PER_WAKEUP = 128
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_BACKOFF_FIRST, _BACKOFF_MAX = 0.005, 1.0

Peer = tuple[str, int]
ProtocolFactory = Callable[[], asyncio.Protocol]


class Tally:
    """Counts an event and logs it at most once per `interval`, with how many times it happened.

    The first occurrence is logged at once; later ones in the same interval are summed into one
    line when it ends.
    """

    def __init__(
        self,
        message: str,
        *,
        interval: float = LOG_INTERVAL,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
        call_later: Callable[[float, Callable[[], None]], object] | None = None,
        logger: logging.Logger = log,
    ) -> None:
        self._message = message
        self._log = logger
        self._interval = interval
        self._level = level
        self._clock = clock
        self._call_later = call_later
        self._count = 0
        self._fields: dict[str, object] = {}
        self._quiet_until = float("-inf")
        self._flush_scheduled = False

    def add(self, **fields: object) -> None:
        self._count += 1
        self._fields = fields
        now = self._clock()
        if now >= self._quiet_until:
            self.flush()
        elif not self._flush_scheduled and self._call_later is not None:
            self._flush_scheduled = True
            self._call_later(self._quiet_until - now, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def flush(self) -> None:
        if self._count:
            self._log.log(self._level, self._message, extra={**self._fields, "times": self._count})
            self._count = 0
            self._quiet_until = self._clock() + self._interval


class _Connection:
    __slots__ = ("busy", "deadline", "handed_over", "peer", "sock", "task", "timer", "transport")

    def __init__(self, sock: socket.socket, peer: Peer) -> None:
        self.sock = sock
        self.peer = peer
        self.busy = False  # between a complete request head and the end of its response
        self.deadline = 0.0  # for the request head, or, while busy, for the whole response
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None  # handing the socket to its protocol
        self.handed_over = False  # the socket belongs to a transport now
        self.transport: asyncio.Transport | None = None


class Listener:
    """Accepts connections on a bound, listening socket and hands each to an HTTP protocol once
    it speaks. Has the `close()` and `wait_closed()` of an asyncio server, for uvicorn."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        head_timeout: float = HEAD_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
    ) -> None:
        self._sock = sock
        self._ssl = ssl_context
        self._max = max_connections
        self._head_timeout = head_timeout
        self._write_timeout = write_timeout
        self._open: dict[Peer, _Connection] = {}
        # Connections waiting for a request head, longest-waiting first (dicts keep order).
        self._waiting: dict[_Connection, None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._protocol: ProtocolFactory | None = None
        self._accepting = False
        self._backoff = _BACKOFF_FIRST
        self._resume: asyncio.TimerHandle | None = None
        self._closing = False
        self._tallies: list[Tally] = []

    # --- the numbers tests and logs read ----------------------------------------------------

    @property
    def open_connections(self) -> int:
        return len(self._open)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, protocol: ProtocolFactory) -> None:
        """Start accepting on the running loop; `protocol` makes the HTTP protocol of one
        connection."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._protocol = protocol

        def tally(message: str, level: int = logging.WARNING) -> Tally:
            made = Tally(message, level=level, clock=loop.time, call_later=loop.call_later)
            self._tallies.append(made)
            return made

        fix = "raise the file descriptor limit (ulimit -n) or lower --web.max-connections"
        self._accept_failed = tally(f"accepting a connection failed; {fix}")
        self._evicted = tally(
            "closed connections that had sent no request, to make room under --web.max-connections",
            logging.INFO,
        )
        self._failed_to_start = tally("a connection could not be handed to HTTP", logging.ERROR)
        self._timed_out = tally(
            "closed connections that were not sent their whole response in time; "
            "a client must read what it asked for",
            logging.INFO,
        )
        self._refused = tally(
            "refused new connections: every connection is in the middle of a request "
            "(--web.max-connections)"
        )
        self._resume_accepting()

    def close(self) -> None:
        """Stop accepting and close every connection that has no HTTP protocol yet; those that
        have one are closed by the HTTP server's own shutdown."""
        self._closing = True
        self._stop_accepting()
        if self._resume is not None:
            self._resume.cancel()
        for connection in list(self._open.values()):
            if connection.transport is None:
                self._close(connection)
        for tally in self._tallies:
            tally.flush()

    async def wait_closed(self) -> None:
        tasks = [c.task for c in self._open.values() if c.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    def track(self, app: ASGIApp) -> ASGIApp:
        """`app`, telling this listener when each connection is busy with a request.

        The HTTP server calls the app once a request head is complete; when the app returns,
        the response has been sent and the connection waits for its next request.
        """

        async def tracked(scope: Scope, receive: Receive, send: Send) -> None:
            client = scope.get("client") if scope["type"] == "http" else None
            connection = self._open.get((client[0], client[1])) if client else None
            if connection is None:
                await app(scope, receive, send)
                return
            self._busy(connection)
            try:
                await app(scope, receive, send)
            finally:
                self._idle(connection)

        return tracked

    # --- accepting ---------------------------------------------------------------------------

    def _resume_accepting(self) -> None:
        self._resume = None
        if self._closing or self._accepting or self._loop is None:
            return
        self._loop.add_reader(self._sock.fileno(), self._accept)
        self._accepting = True

    def _stop_accepting(self) -> None:
        if self._accepting and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._accepting = False

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                sock, address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                self._accept_failed.add(
                    err=error.strerror or str(error),
                    open_connections=len(self._open),
                    max_connections=self._max,
                )
                if error.errno in _OUT_OF_RESOURCES and self._evict_one():
                    return  # its descriptor is released before the next try
                self._pause_accepting()
                return
            self._backoff = _BACKOFF_FIRST
            self._admit(sock, (str(address[0]), int(address[1])))

    def _pause_accepting(self) -> None:
        assert self._loop is not None
        self._stop_accepting()
        self._resume = self._loop.call_later(self._backoff, self._resume_accepting)
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX)

    def _admit(self, sock: socket.socket, peer: Peer) -> None:
        assert self._loop is not None
        if len(self._open) >= self._max and not self._evict_one():
            self._refused.add(open_connections=len(self._open))
            sock.close()
            return
        sock.setblocking(False)
        connection = _Connection(sock, peer)
        self._open[peer] = connection
        self._wait(connection)
        self._loop.add_reader(sock.fileno(), self._first_bytes, connection)

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for a request; False if none waits."""
        oldest = next(iter(self._waiting), None)
        if oldest is None:
            return False
        self._evicted.add(max_connections=self._max)
        self._close(oldest)
        return True

    # --- one connection ---------------------------------------------------------------------

    def _first_bytes(self, connection: _Connection) -> None:
        """The client spoke (or hung up): now it gets a transport, TLS and its HTTP protocol."""
        assert self._loop is not None
        self._loop.remove_reader(connection.sock.fileno())
        connection.task = self._loop.create_task(self._connect(connection))

    async def _connect(self, connection: _Connection) -> None:
        assert self._loop is not None
        assert self._protocol is not None
        protocol = self._protocol

        def tracked() -> asyncio.Protocol:
            # Called as soon as the task runs, before anything is awaited; once it returns, the
            # transport made next owns the socket.
            inner = protocol()
            connection.handed_over = True
            return _Tracked(self, connection, inner)

        tls: dict[str, Any] = {}
        if self._ssl is not None:
            tls = {
                "ssl": self._ssl,
                "ssl_handshake_timeout": max(0.001, connection.deadline - self._loop.time()),
                "ssl_shutdown_timeout": TLS_SHUTDOWN_TIMEOUT,
            }
        try:
            await self._loop.connect_accepted_socket(tracked, connection.sock, **tls)
        except (TimeoutError, OSError, asyncio.CancelledError):
            # A failed or abandoned TLS handshake, a reset: the client's problem, not a log line.
            # (ssl.SSLError is an OSError.) The transport, if any, was closed on the way out.
            self._forget(connection)
        except Exception as error:  # a bug: one counted line, not one traceback per connection
            self._forget(connection)
            if not connection.handed_over:
                connection.sock.close()
            self._failed_to_start.add(err=f"{type(error).__name__}: {error}")
        finally:
            connection.task = None

    def _wait(self, connection: _Connection) -> None:
        """From now, the connection has the head timeout to send a complete request head."""
        assert self._loop is not None
        connection.deadline = self._loop.time() + self._head_timeout
        self._waiting.pop(connection, None)
        self._waiting[connection] = None
        self._arm(connection)

    def _arm(self, connection: _Connection) -> None:
        """Make sure the connection's timer goes off no later than its deadline. A timer that
        goes off sooner is kept: it is not cancelled and set again for every request (a
        keep-alive scraper makes thousands a second); `_expire` looks at the deadline then."""
        assert self._loop is not None
        timer = connection.timer
        if timer is not None:
            if timer.when() <= connection.deadline:
                return
            timer.cancel()  # the deadline moved sooner, e.g. a response ended well in time
        connection.timer = self._loop.call_at(connection.deadline, self._expire, connection)

    def _expire(self, connection: _Connection) -> None:
        """The timer of a connection went off: it finds out whether the deadline still holds,
        moved, or no longer applies."""
        assert self._loop is not None
        connection.timer = None
        if self._open.get(connection.peer) is not connection:
            return  # gone
        if self._loop.time() < connection.deadline:
            connection.timer = self._loop.call_at(connection.deadline, self._expire, connection)
            return
        if connection.busy:
            self._timed_out.add(write_timeout=self._write_timeout)
        self._close(connection)

    def _busy(self, connection: _Connection) -> None:
        """From now, the connection has the write timeout to be sent its whole response."""
        assert self._loop is not None
        connection.busy = True
        connection.deadline = self._loop.time() + self._write_timeout
        self._waiting.pop(connection, None)
        self._arm(connection)

    def _idle(self, connection: _Connection) -> None:
        connection.busy = False
        if self._open.get(connection.peer) is connection:
            self._wait(connection)

    def _close(self, connection: _Connection) -> None:
        """Close now, whatever stage the connection is at; its slot is free at once."""
        if connection.task is not None:
            if not connection.handed_over:
                connection.sock.close()  # the task has not run: it never will
            connection.task.cancel()  # mid-handshake: the transport is aborted on the way out
        elif connection.transport is not None:
            connection.transport.abort()
        else:
            if self._loop is not None:
                self._loop.remove_reader(connection.sock.fileno())
            connection.sock.close()
        self._forget(connection)

    def _forget(self, connection: _Connection) -> None:
        if connection.timer is not None:
            connection.timer.cancel()
            connection.timer = None
        self._waiting.pop(connection, None)
        if self._open.get(connection.peer) is connection:
            del self._open[connection.peer]


class _Tracked(asyncio.Protocol):
    """The HTTP protocol of one connection, seen by the listener: it learns when it closes."""

    def __init__(self, listener: Listener, connection: _Connection, inner: asyncio.Protocol):
        self._listener = listener
        self._connection = connection
        self._inner = inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._connection.transport = transport
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._inner.connection_lost(exc)
        finally:
            self._listener._forget(self._connection)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()
