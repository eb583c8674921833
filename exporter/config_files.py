"""Reading the small files settings point to (a token, a key, the web config), bounded."""

from __future__ import annotations

import stat
from pathlib import Path

from exporter.errors import ConfigError


def read_small_file(path: str, source: str, limit: int) -> str:
    """A regular file's text, refused when it is not one (opening a FIFO waits for a writer,
    reading /dev/zero never ends) or when it is larger than `limit` bytes."""
    if "\0" in path:
        raise ConfigError(f"{source} {path!r}: a path cannot hold a NUL character")
    try:
        if not stat.S_ISREG(Path(path).stat().st_mode):
            raise ConfigError(f"{source} {path!r}: not a regular file; give the file's path")
        with Path(path).open("rb") as file:
            data = file.read(limit + 1)
    except OSError as error:
        raise ConfigError(
            f"{source} {path!r}: cannot read it ({error.strerror or error}); check the path"
        ) from None
    if len(data) > limit:
        raise ConfigError(f"{source} {path!r}: larger than {limit} bytes; is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{source} {path!r}: cannot read it (not UTF-8 text)") from None
