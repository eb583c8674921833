"""Structured logging in the two formats Prometheus exporters use: logfmt and JSON.

Context goes in `extra={...}`; every key that is not a standard LogRecord attribute becomes a field.
Log lines carry text the API wrote (names, errors), so every line is bounded (MAX_LINE bytes) and
escaped: no control character, line or paragraph separator, or lone surrogate reaches the stream
raw, and no credential the exporter was given appears in it.
"""

from __future__ import annotations

import heapq
import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO

MAX_LINE = 8192  # bytes, newline excluded
_MAX_VALUE = 1024  # characters of one field, before the line as a whole is fitted
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
    (a control character becomes six bytes) is counted at its real cost. While the line is too
    long, the field that takes the most bytes is cut to half as many characters, down to nothing
    but the note of how much was cut. When even that cannot fit every field (thousands of
    them), the fields past the first few that fit are dropped and a `truncated` field says how
    many: the line stays one valid line of its format.
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
        pieces = {key: self.piece(key, _cut(value, _MAX_VALUE)) for key, value in fields.items()}
        sizes = {key: _size(piece) for key, piece in pieces.items()}
        if self._overhead(len(sizes)) + sum(sizes.values()) <= MAX_LINE:
            return self.line(pieces.values())  # nearly always
        floors = {key: self._floor(fields[key], key, size) for key, size in sizes.items()}
        if self._overhead(len(floors)) + sum(floors.values()) > MAX_LINE:
            fields = self._drop(fields, floors)
            pieces = {key: self.piece(key, _cut(fields[key], _MAX_VALUE)) for key in fields}
            sizes = {key: _size(piece) for key, piece in pieces.items()}
        self._shorten(fields, pieces, sizes)
        return self.line(pieces.values())

    def _overhead(self, count: int) -> int:
        return len(self.prefix) + len(self.suffix) + len(self.separator) * max(0, count - 1)

    def _floor(self, value: str, key: str, size: int) -> int:
        """The fewest bytes the field can take: cut to nothing, unless it is short already."""
        if size <= _SHORT:
            return size
        return min(size, _size(self.piece(key, _cut(value, 0))))

    def _shorten(
        self, fields: dict[str, str], pieces: dict[str, str], sizes: dict[str, int]
    ) -> None:
        """Cut the field taking the most bytes to half as many characters, until the line fits
        (it does once each field is at its floor)."""
        total = self._overhead(len(sizes)) + sum(sizes.values())
        limits = dict.fromkeys(fields, _MAX_VALUE)
        # Each key is in the heap once, with its current size: the largest comes first.
        heap = [(-size, n, key) for n, (key, size) in enumerate(sizes.items()) if size > _SHORT]
        heapq.heapify(heap)
        while total > MAX_LINE and heap:
            _, n, key = heapq.heappop(heap)
            limit = limits[key]
            while limit > 0:
                limit //= 2
                piece = self.piece(key, _cut(fields[key], limit))
                size = _size(piece)
                if size < sizes[key]:
                    total += size - sizes[key]
                    pieces[key], sizes[key], limits[key] = piece, size, limit
                    if limit > 0:
                        heapq.heappush(heap, (-size, n, key))
                    break

    def _drop(self, fields: dict[str, str], floors: dict[str, int]) -> dict[str, str]:
        """The fields that say what happened, then as many of the others as fit in half the line
        at their floor, in order, and a `truncated` field that says how many were left out."""
        marker = "truncated"
        while marker in fields:
            marker += "_"
        kept = {key for key in fields if key in _CORE}
        others = [key for key in fields if key not in _CORE]
        worst = self.piece(marker, _dropped(len(others)))
        budget = MAX_LINE - self._overhead(len(kept) + 1) - _size(worst)
        budget -= sum(floors[key] for key in kept)
        budget = min(budget, MAX_LINE // 2)  # the rest is room for the message and values
        for key in others:
            cost = floors[key] + len(self.separator)
            if cost <= budget:
                kept.add(key)
                budget -= cost
        shown = {key: value for key, value in fields.items() if key in kept}
        shown[marker] = _dropped(len(fields) - len(kept))
        return shown


def _dropped(count: int) -> str:
    return f"{count} fields dropped to fit {MAX_LINE} bytes"


_CORE = frozenset({"ts", "level", "logger", "msg"})  # never dropped (cut, at most)
_SHORT = 64  # bytes: a field this short is never cut (the time, the level, most ids)


def _size(piece: str) -> int:
    return len(piece.encode("utf-8"))  # escaped: no lone surrogate is left to fail on


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
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
