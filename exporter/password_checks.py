"""Basic-auth password checks: bcrypt on threads of its own, in an order a flood cannot starve.

bcrypt takes tens of milliseconds on purpose, so a flood of wrong passwords saturates it. Then
the right user must not be told 401 (its password was never checked) nor wait behind the flood:

- a credential that passed or failed before is answered from memory, without bcrypt;
- the others wait in a short queue, ranked: a connection that already sent a wrong password goes
  behind one that did not; among those, one from an address whose connections sent wrong
  passwords recently goes behind one from an address with fewer such connections. A flood over
  keep-alive connections (from the scraper's own address too), or one opening a connection per
  try from other addresses, therefore cannot keep a scraper's request waiting for more than
  the checks already running;
- a check that finds the queue full of better-ranked ones is answered BUSY at once (503 with
  Retry-After), never 401: 401 says the password is wrong, and it was not checked;
- so is a check that fails (bcrypt raising something unforeseen): it does not count against the
  connection or its address, and is logged at most once per LOG_INTERVAL with a count.

What it cannot tell apart: a flood from the scraper's own address that opens a new connection
for every wrong password ranks as the scraper does; the scraper then gets 503s, still never 401.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from exporter.listener import Tally

K = TypeVar("K")
log = logging.getLogger(__name__)


class Credentials(Protocol):
    """What `webconfig.BasicAuth` offers: a quick answer from memory, and bcrypt."""

    def remembered(self, header: str) -> bool | None: ...

    def check(self, header: str) -> bool: ...


WORKERS = 2  # bcrypt threads; more would take the cores the refresh and scrapes need
QUEUE_SIZE = 8  # waiting checks: at ~50 ms each (cost 10), 0.2 s of work for two threads
FAILURE_MEMORY = 600.0  # seconds a wrong password counts against its connection and address
_MAX_TRACKED = 4096  # connections and addresses remembered, oldest forgotten first


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    DENIED = "denied"  # 401: the credential was checked (now or before) and is wrong
    BUSY = "busy"  # 503: not checked, try again shortly


Client = tuple[str, int]


@dataclass(order=True)
class _Check:
    # wrong passwords on the connection, connections from the address that sent one, arrival
    rank: tuple[int, int, int]
    header: str = field(compare=False)
    client: Client | None = field(compare=False)
    verdict: asyncio.Future[Verdict] = field(compare=False)


class PasswordChecks:
    def __init__(
        self,
        auth: Credentials,
        *,
        workers: int = WORKERS,
        queue_size: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._auth = auth
        self._workers = workers
        self._queue_size = queue_size
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bcrypt")
        self._queue: list[_Check] = []
        self._running = 0
        self._arrivals = itertools.count()
        self._failed_connections: dict[Client, tuple[int, float]] = {}
        self._failed_addresses: dict[str, tuple[int, float]] = {}
        self._check_failed = Tally(
            "checking a basic-auth password failed; answered 503",
            level=logging.ERROR,
            clock=clock,
            call_later=lambda delay, flush: asyncio.get_running_loop().call_later(delay, flush),
            logger=log,
        )

    async def check(self, header: str, client: Client | None) -> Verdict:
        remembered = self._auth.remembered(header)
        if remembered is not None:
            return Verdict.ALLOWED if remembered else Verdict.DENIED
        rank = (
            self._failures(self._failed_connections, client),
            self._failures(self._failed_addresses, client[0] if client else None),
            next(self._arrivals),
        )
        if len(self._queue) >= self._queue_size:
            worst = max(self._queue)
            if worst.rank <= rank:
                return Verdict.BUSY
            self._queue.remove(worst)  # a better-ranked check takes its place
            worst.verdict.set_result(Verdict.BUSY)
        check = _Check(rank, header, client, asyncio.get_running_loop().create_future())
        self._queue.append(check)
        self._start_checks()
        return await check.verdict

    def _start_checks(self) -> None:
        while self._running < self._workers and self._queue:
            check = min(self._queue)
            self._queue.remove(check)
            if check.verdict.done():  # its request went away
                continue
            self._running += 1
            loop = asyncio.get_running_loop()
            done = loop.run_in_executor(self._pool, self._auth.check, check.header)
            done.add_done_callback(functools.partial(self._finish, check))

    def _finish(self, check: _Check, future: asyncio.Future[bool]) -> None:
        self._running -= 1
        error = None if future.cancelled() else future.exception()
        if future.cancelled() or error is not None:
            # Not checked: not the client's fault, and not a wrong password.
            if error is not None:
                self._check_failed.add(err=f"{type(error).__name__}: {error}")
            if not check.verdict.done():
                check.verdict.set_result(Verdict.BUSY)
            self._start_checks()
            return
        allowed = future.result()
        if not allowed and check.client is not None:
            # An address counts connections, not tries: a flood over a few keep-alive
            # connections (already ranked last by the connection) does not sink its address.
            if self._failures(self._failed_connections, check.client) == 0:
                self._count_failure(self._failed_addresses, check.client[0])
            self._count_failure(self._failed_connections, check.client)
        if not check.verdict.done():
            check.verdict.set_result(Verdict.ALLOWED if allowed else Verdict.DENIED)
        self._start_checks()

    def _failures(self, failures: dict[K, tuple[int, float]], key: K | None) -> int:
        if key is None:
            return 0
        count, last = failures.get(key, (0, 0.0))
        return count if self._clock() - last < FAILURE_MEMORY else 0

    def _count_failure(self, failures: dict[K, tuple[int, float]], key: K) -> None:
        count = self._failures(failures, key)
        failures.pop(key, None)
        failures[key] = (count + 1, self._clock())  # re-inserted: dicts keep the newest last
        if len(failures) > _MAX_TRACKED:
            del failures[next(iter(failures))]
