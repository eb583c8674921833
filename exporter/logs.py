"""Structured logging in the two formats Prometheus exporters use: logfmt and JSON.

Context goes in `extra={...}`; every key that is not a standard LogRecord attribute becomes a field.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO

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


def _fields(record: logging.LogRecord) -> dict[str, object]:
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
    return fields


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in _fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str, ensure_ascii=False)


def _logfmt_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c in text for c in ' ="\\\n\t') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


def configure_logging(level: str, log_format: str, stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else LogfmtFormatter())
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
