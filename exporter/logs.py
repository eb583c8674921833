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
    """Joins escaped fields into one line and cuts the longest values until it fits."""

    secrets: tuple[str, ...] = ()

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        for secret in self.secrets:
            for key, value in fields.items():
                if secret in value:
                    fields[key] = value.replace(secret, "[REDACTED]")
        limit = _MAX_VALUE
        cut = {key: _cut(value, limit) for key, value in fields.items()}
        line = self.join(cut.items())
        while len(line.encode("utf-8")) > MAX_LINE and limit > 16:
            limit //= 2
            longest = max(cut, key=lambda key: len(cut[key]))
            cut[longest] = _cut(fields[longest], limit)
            line = self.join(cut.items())
        return line

    def join(self, fields: Iterable[tuple[str, str]]) -> str:
        raise NotImplementedError


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more]"


class LogfmtFormatter(_BoundedFormatter):
    def join(self, fields: Iterable[tuple[str, str]]) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields)


class JsonFormatter(_BoundedFormatter):
    def join(self, fields: Iterable[tuple[str, str]]) -> str:
        # ensure_ascii=False keeps names readable; what JSON leaves raw but is unsafe in a log
        # stream (C1 controls, U+2028/9, lone surrogates) is escaped after.
        return _escape(json.dumps(dict(fields), ensure_ascii=False))


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
