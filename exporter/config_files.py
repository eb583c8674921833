"""Reading the small files settings point to (a token, a key, the web config), bounded."""

from __future__ import annotations

import stat
from pathlib import Path

from exporter.errors import ConfigError


def regular_file(path: str, source: str, base: Path | None = None) -> Path:
    """`path` (relative to `base`, if given), refused unless it names a regular file: opening a
    FIFO waits for a writer, reading /dev/zero never ends."""
    shown = _quoted(path)
    if "\0" in path:
        raise ConfigError(f"{source} {shown}: a path cannot hold a NUL character")
    resolved = base / path if base is not None and not Path(path).is_absolute() else Path(path)
    try:
        mode = resolved.stat().st_mode
    except OSError as error:  # missing, unreadable, a name too long
        raise ConfigError(
            f"{source} {shown}: cannot read it ({error.strerror or error}); check the path"
        ) from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{source} {shown}: not a regular file; give the file's path")
    return resolved


def read_small_file(path: str, source: str, limit: int) -> str:
    """A regular file's text, refused when it is not one or when it is larger than `limit`
    bytes."""
    shown = _quoted(path)
    try:
        with regular_file(path, source).open("rb") as file:
            data = file.read(limit + 1)
    except OSError as error:
        raise ConfigError(
            f"{source} {shown}: cannot read it ({error.strerror or error}); check the path"
        ) from None
    if len(data) > limit:
        raise ConfigError(f"{source} {shown}: larger than {limit} bytes; is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{source} {shown}: cannot read it (not UTF-8 text)") from None


def _quoted(path: str) -> str:
    """A path for an error line: quoted, whole unless it is absurdly long."""
    quoted = repr(path)
    return quoted if len(quoted) <= 300 else quoted[:299] + "…"
