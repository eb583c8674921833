"""Client-side request budget: at most N requests in any window, retries included.

A sliding window, not a token bucket: a bucket holding N and refilled at N per window lets 2N
through within one window (N from a full bucket, N more refilled), which is exactly what gets a
Cloudflare token blocked for five minutes. The server can also pause us (429 `Retry-After`, or a
`Ratelimit` header saying nothing is left): then every caller waits, since the block is per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

# Cloudflare counts 1200 requests per token in any 5 minutes; over that, the token is blocked for
# the next 5 minutes. Every place that speaks of "the window" means this one.
RATE_WINDOW = 300.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class SlidingWindowLimiter:
    """`slot()` admits one request once sending it keeps every window within the limit.

    A request counts in every window (s - window, s] that holds its stamp. The stamp is taken when
    the request is admitted and moved to when its answer arrives: the server counted it somewhere
    in between, so counting from the later time can never undercount. `limit` 0 means no
    client-side limit; server-imposed pauses still apply.
    """

    def __init__(
        self,
        limit: int,
        window: float = RATE_WINDOW,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if limit < 0 or window <= 0:
            raise ValueError("limit must be >= 0 and window > 0")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._stamps: deque[list[float]] = deque()  # one-item lists, so a stamp can move
        self._blocked_until = float("-inf")
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for budget and spend one request of it, for the duration of the request."""
        stamp = await self._admit()
        try:
            yield
        finally:
            stamp[0] = self._clock()

    async def _admit(self) -> list[float]:
        async with self._lock:
            while True:
                now = self._clock()
                delay = self._blocked_until - now
                if delay <= 0 and self.limit:
                    while self._stamps and self._stamps[0][0] <= now - self.window:
                        self._stamps.popleft()
                    if len(self._stamps) >= self.limit:
                        delay = self._stamps[0][0] + self.window - now
                if delay <= 0:
                    stamp = [now]
                    if self.limit:
                        self._stamps.append(stamp)
                    return stamp
                await self._sleep(delay)

    def pause_for(self, seconds: float) -> bool:
        """The server asked us to stop for `seconds`: nobody sends until then. True when this
        begins a pause rather than extending one already under way."""
        now = self._clock()
        began = self._blocked_until <= now
        self._blocked_until = max(self._blocked_until, now + seconds)
        return began
