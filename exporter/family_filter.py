"""`--metrics.allowlist` / `--metrics.denylist` patterns, refused at start unless they are small,
valid and quick on every metric family name the exporter can expose.

Python's `re` backtracks, so a pattern such as `(\\w*)*x` takes hours on a 40-character name.
The names a pattern will ever see are known at start (the exporter's own families and the
process and Python collectors'), so each pattern is tried on all of them once, under a deadline;
a pattern that passes is known to be quick on exactly the names it meets later.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Iterable
from types import FrameType

from exporter.errors import ConfigError
from exporter.exposition import every_family_name

MAX_PATTERN_LENGTH = 256
MATCH_BUDGET = 1.0  # seconds for one pattern against every family name; a sane one takes µs


class _TooSlow(Exception):
    pass


def compile_pattern(pattern: str, source: str) -> re.Pattern[str]:
    """The compiled pattern; raises ConfigError when it is too long, invalid or too slow."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ConfigError(
            f"{source}: a pattern of {len(pattern)} characters; the most is "
            f"{MAX_PATTERN_LENGTH}, so split it into several comma-separated patterns"
        )
    try:
        compiled = re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as error:
        # OverflowError: a repeat count such as a{4294967296}; RecursionError: deep nesting
        reason = str(error) if isinstance(error, re.error) else "too large to compile"
        raise ConfigError(
            f"{source} {pattern!r}: not a regular expression ({reason}); fix the pattern"
        ) from None
    if not _quick(compiled, every_family_name(), MATCH_BUDGET):
        raise ConfigError(
            f"{source} {pattern!r}: takes longer than {MATCH_BUDGET:g}s to match the metric "
            "names (nested repeats such as (a*)* backtrack without end); simplify the pattern"
        )
    return compiled


def _quick(pattern: re.Pattern[str], names: Iterable[str], budget: float) -> bool:
    """Whether `pattern` fully matches (or not) every name within `budget` seconds.

    `re` checks for signals while it backtracks, so an interval timer can stop it; timers and
    signal handlers belong to the main thread, elsewhere (a library caller) the names are matched
    without a deadline.
    """
    if threading.current_thread() is not threading.main_thread():
        for name in names:
            pattern.fullmatch(name)
        return True

    def expire(signum: int, frame: FrameType | None) -> None:
        raise _TooSlow

    previous = signal.signal(signal.SIGALRM, expire)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, budget)
            for name in names:
                pattern.fullmatch(name)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _TooSlow:
        return False
    finally:
        signal.signal(signal.SIGALRM, previous)
    return True
