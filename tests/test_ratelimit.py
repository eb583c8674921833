"""The request budget, on a fake clock: no window may hold more than the limit."""

from __future__ import annotations

import asyncio

import pytest

from exporter.ratelimit import SlidingWindowLimiter
from tests.support.clock import FakeClock


def max_in_any_window(times: list[float], window: float) -> int:
    """The most sends in any half-open window (t - window, t]."""
    times = sorted(times)
    return max((sum(1 for other in times if t - window < other <= t) for t in times), default=0)


def token_bucket_send_times(limit: int, window: float, want: int) -> list[float]:
    """What a token bucket (capacity N, refilled N per window) lets through, sending ASAP."""
    clock, tokens, rate = 0.0, float(limit), limit / window
    sent: list[float] = []
    while len(sent) < want:
        if tokens >= 1:
            tokens -= 1
            sent.append(clock)
        else:
            wait = (1 - tokens) / rate
            clock += wait
            tokens += wait * rate
    return sent


async def send(limiter: SlidingWindowLimiter, clock: FakeClock, count: int, workers: int):
    times: list[float] = []

    async def worker(share: int) -> None:
        for _ in range(share):
            async with limiter.slot():
                times.append(clock())

    await asyncio.gather(*(worker(count // workers) for _ in range(workers)))
    return times


def test_a_token_bucket_would_send_twice_the_limit_in_one_window():
    # The reason for a sliding window: this schedule gets a Cloudflare token blocked.
    times = token_bucket_send_times(limit=10, window=300, want=40)
    assert max_in_any_window(times, 300) >= 19


@pytest.mark.parametrize(("limit", "workers"), [(10, 1), (10, 4), (7, 3), (1, 2)])
def test_sliding_window_never_exceeds_the_limit_in_any_window(limit, workers):
    clock = FakeClock()
    limiter = SlidingWindowLimiter(limit, 300, clock=clock, sleep=clock.sleep)
    times = asyncio.run(send(limiter, clock, limit * 4 * workers, workers))
    assert len(times) == limit * 4 * workers
    assert max_in_any_window(times, 300) == limit
    # and it does not waste budget: the whole run takes just over (rounds - 1) windows
    assert max(times) - min(times) == pytest.approx(300 * (4 * workers - 1), abs=1e-6)


def test_a_server_pause_stops_everyone_even_without_a_limit():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(0, 300, clock=clock, sleep=clock.sleep)

    async def scenario() -> float:
        async with limiter.slot():
            limiter.pause_for(42)
        async with limiter.slot():
            return clock()

    assert asyncio.run(scenario()) == pytest.approx(1042)


def test_a_request_counts_from_when_its_answer_arrived():
    # The server counted the request somewhere between sending and answering; the budget must
    # assume the latest moment, or a slow answer lets the next window start too early.
    clock = FakeClock()
    limiter = SlidingWindowLimiter(1, 300, clock=clock, sleep=clock.sleep)

    async def scenario() -> float:
        async with limiter.slot():
            clock.now += 7  # a slow answer
        async with limiter.slot():
            return clock()

    assert asyncio.run(scenario()) == pytest.approx(1000 + 7 + 300)


def test_invalid_limits_are_refused():
    with pytest.raises(ValueError, match="limit"):
        SlidingWindowLimiter(-1)
    with pytest.raises(ValueError, match="window"):
        SlidingWindowLimiter(1, 0)
