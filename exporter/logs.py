"""Structured logging in the two formats Prometheus exporters use: logfmt and JSON.

Context goes in `extra={...}`; every key that is not a standard LogRecord attribute becomes a field.
Log lines carry text the API wrote (names, errors), so every line is bounded (MAX_LINE bytes) and
escaped: no control character, line or paragraph separator, or lone surrogate reaches the stream
raw, and no credential the exporter was given appears in it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO

MAX_LINE = 8192  # bytes, newline excluded
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn"}
# C0 and C1 controls, DEL, the line and paragraph separators, and lone surrogates.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_LOGFMT_PLAIN = re.compile(r'[^\s="\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+')
_LOGFMT_KEY_UNSAFE = re.compile(r'[\s="\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')


def _fields(record: logging.LogRecord) -> dict[str, str]:
    timestamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    fields: dict[str, object] = {
        "ts": timestamp.replace("+00:00", "Z"),
        "level": _NAMES.get(record.levelno, "error"),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key] = value
    if record.exc_info:
        fields["exception"] = logging.Formatter().formatException(record.exc_info)
    return {key: _text(value) for key, value in fields.items()}


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    return str(value)


def _escape(text: str) -> str:
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class _BoundedFormatter(logging.Formatter):
    """Joins escaped fields into one line of at most MAX_LINE bytes.

    Sizes are measured as written (escaped and UTF-8 encoded), so text that escaping inflates
    (a control character becomes six bytes) is counted at its real cost. A line that fits is
    written whole. One that does not has every value longer than a cap cut to it, with a note of
    how much was cut, the cap halving from half the line down to nothing until the line fits; a
    traceback (`exception`) keeps its end, the line that says what was raised. When even values
    cut to nothing do not fit (thousands of fields), the fields past the first few that fit are
    dropped and a `truncated` field says how many: the line stays one valid line of its format.
    """

    secrets: tuple[str, ...] = ()
    prefix = ""
    separator = " "
    suffix = ""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        for secret in self.secrets:
            for key, value in fields.items():
                if secret in value:
                    fields[key] = value.replace(secret, "[REDACTED]")
        return self.fit(fields)

    def piece(self, key: str, value: str) -> str:
        """One field as it appears in the line, escaped."""
        raise NotImplementedError

    def line(self, pieces: Iterable[str]) -> str:
        return self.prefix + self.separator.join(pieces) + self.suffix

    def fit(self, fields: dict[str, str]) -> str:
        line = self._cut_to_fit(fields)
        if line is None:
            line = self._cut_to_fit(self._drop(fields))
        # The core fields cut to nothing, a few short fields and at most half a line of others.
        assert line is not None
        return line

    def _cut_to_fit(self, fields: dict[str, str]) -> str | None:
        """The line with the largest cap on values that fits; None if not even nothing does."""
        overhead = self._overhead(len(fields))
        for cap in _CAPS:
            values = {key: _cut(key, value, cap) for key, value in fields.items()}
            # Every character takes a byte at least: no need to escape what cannot fit.
            if (
                overhead + sum(len(key) + len(value) + 1 for key, value in values.items())
                > MAX_LINE
            ):
                continue
            pieces = [self.piece(key, value) for key, value in values.items()]
            if overhead + sum(map(_size, pieces)) <= MAX_LINE:
                return self.line(pieces)
        return None

    def _overhead(self, count: int) -> int:
        return len(self.prefix) + len(self.suffix) + len(self.separator) * max(0, count - 1)

    def _drop(self, fields: dict[str, str]) -> dict[str, str]:
        """The fields that say what happened, then as many of the others as fit in half the line
        cut to nothing, in order, and a `truncated` field that says how many were left out."""
        marker = "truncated"
        while marker in fields:
            marker += "_"

        def floor(key: str) -> int:
            return _size(self.piece(key, _cut(key, fields[key], 0)))

        kept = {key for key in fields if key in _CORE}
        others = [key for key in fields if key not in _CORE]
        worst = self.piece(marker, _dropped(len(others)))
        budget = MAX_LINE - self._overhead(len(kept) + 1) - _size(worst)
        budget -= sum(floor(key) for key in kept)
        budget = min(budget, MAX_LINE // 2)  # the rest is room for the message and values
        for key in others:
            cost = floor(key) + len(self.separator)
            if cost <= budget:
                kept.add(key)
                budget -= cost
        shown = {key: value for key, value in fields.items() if key in kept}
        shown[marker] = _dropped(len(fields) - len(kept))
        return shown


def _dropped(count: int) -> str:
    return f"{count} fields dropped to fit {MAX_LINE} bytes"


_CORE = frozenset({"ts", "level", "logger", "msg"})  # never dropped (cut, at most)
_SHORT = 64  # characters: a value this short is never cut (the time, the level, most ids)
# Caps on the characters of a value, tried in turn: none, then half the line halving to nothing.
_CAPS: tuple[int | None, ...] = (None, *(MAX_LINE // 2 >> n for n in range(13)), 0)


def _size(piece: str) -> int:
    return len(piece.encode("utf-8"))  # escaped: no lone surrogate is left to fail on


def _cut(key: str, text: str, limit: int | None) -> str:
    if limit is None or len(text) <= max(limit, _SHORT):
        return text
    if key == "exception":  # a traceback: its last line says what was raised
        return f"[{len(text) - limit} more]...{text[len(text) - limit :]}"
    return f"{text[:limit]}...[{len(text) - limit} more]"


class LogfmtFormatter(_BoundedFormatter):
    def piece(self, key: str, value: str) -> str:
        return f"{_logfmt_key(key)}={_logfmt_value(value)}"


class JsonFormatter(_BoundedFormatter):
    prefix = "{"
    separator = ", "
    suffix = "}"

    def piece(self, key: str, value: str) -> str:
        # ensure_ascii=False keeps names readable; what JSON leaves raw but is unsafe in a log
        # stream (C1 controls, U+2028/9, lone surrogates) is escaped after.
        return _escape(
            f"{json.dumps(key, ensure_ascii=False)}: {json.dumps(value, ensure_ascii=False)}"
        )


def _logfmt_key(key: str) -> str:
    if _LOGFMT_PLAIN.fullmatch(key):
        return key
    return _LOGFMT_KEY_UNSAFE.sub("_", key) or "_"


def _logfmt_value(text: str) -> str:
    if text and _LOGFMT_PLAIN.fullmatch(text):
        return text
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{_escape(quoted)}"'


def configure_logging(
    level: str, log_format: str, stream: IO[str] | None = None, secrets: tuple[str, ...] = ()
) -> None:
    """Log to `stream` (stderr) in `log_format`; `secrets` never appear in a line."""
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter: _BoundedFormatter = JsonFormatter() if log_format == "json" else LogfmtFormatter()
    formatter.secrets = tuple(secret for secret in secrets if secret)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
    # Per-request lines from the HTTP libraries are noise at info; our own lines say what matters.
    quiet = logging.DEBUG if level == "debug" else logging.WARNING
    for name in ("httpx", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(quiet)
    logging.getLogger("httpcore").setLevel(logging.WARNING)  # its debug lines trace every byte
