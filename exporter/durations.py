"""Go-style durations (`30s`, `5m`, `1h30m`) as used by Prometheus flags, to and from seconds."""

from __future__ import annotations

import math
import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")


class DurationError(ValueError):
    """The text is not a duration."""


def parse_duration(text: str) -> float:
    """Seconds in `text`: a Go duration (`1h30m`, `500ms`) or a plain number of seconds."""
    text = text.strip()
    if not text:
        raise DurationError("empty duration")
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise DurationError(f"{text!r} is not a finite number of seconds")
        return seconds
    position, total = 0, 0.0
    while position < len(text):
        match = _PART.match(text, position)
        if match is None:
            raise DurationError(f"{text!r} is not a duration")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return total


def format_duration(seconds: float) -> str:
    """Shortest Go-style text for `seconds` (`300` -> `5m`, `90.5` -> `1m30.5s`)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole_hours, rest = divmod(seconds, 3600)
    whole_minutes, secs = divmod(rest, 60)
    parts = []
    if whole_hours:
        parts.append(f"{int(whole_hours)}h")
    if whole_minutes:
        parts.append(f"{int(whole_minutes)}m")
    if secs or not parts:
        secs = round(secs, 3)
        parts.append(f"{int(secs)}s" if secs == int(secs) else f"{secs:g}s")
    return "".join(parts)
