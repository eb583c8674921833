"""A clock that only moves when something sleeps on it: timers without waiting."""

from __future__ import annotations

import asyncio


class FakeClock:
    """Callable as a clock (monotonic or wall: tests pick the start); `sleep` advances it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []  # every sleep asked for, in order

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)
