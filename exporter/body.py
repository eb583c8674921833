"""A response body decoded within bounds: decompressed a piece at a time, counted, and UTF-8.

Decompression is done here rather than by httpx so that no single network read can expand into
more than one small piece: a gzip bomb is stopped by the size cap after at most `PIECE` bytes of
it exist, and the cap counts decoded bytes, the ones that cost memory.
"""

from __future__ import annotations

import codecs
import zlib
from collections.abc import Iterator

PIECE = 64 * 1024  # decoded bytes produced per step
ACCEPT_ENCODING = "gzip, deflate"  # what we ask for; anything else the server sends is refused


class BodyError(ValueError):
    """The body cannot be read within the rules; the message is one line for the log."""


class BodyTooLarge(BodyError):
    """More decoded bytes than the cap allows."""


class BodyDecoder:
    """Feed raw bytes as they arrive, get text back; raises BodyError past `max_size` decoded
    bytes, on a corrupt compressed stream, an encoding we did not ask for, or invalid UTF-8."""

    def __init__(self, content_encoding: str | None, max_size: int) -> None:
        encoding = (content_encoding or "identity").strip().lower()
        self._max_size = max_size
        self.size = 0  # decoded bytes so far
        self._text = codecs.getincrementaldecoder("utf-8")("strict")
        self._first = True
        self._fed = False  # any raw bytes at all (an empty compressed body is just empty)
        self._inflate: zlib._Decompress | None
        self._deflate_raw_fallback = False
        if encoding in ("identity", ""):
            self._inflate = None
        elif encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            # Servers send zlib-wrapped or raw deflate under this name; try the former first.
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS)
            self._deflate_raw_fallback = True
        else:
            raise BodyError(f"the body could not be decoded (Content-Encoding {encoding[:24]!r})")

    def feed(self, raw: bytes) -> Iterator[str]:
        """Text decoded from `raw`, in pieces of at most PIECE bytes' worth."""
        self._fed = self._fed or bool(raw)
        if self._inflate is None:
            for start in range(0, len(raw), PIECE):
                yield self._decode(raw[start : start + PIECE])
            return
        data = raw
        while data and not self._inflate.eof:
            try:
                piece = self._inflate.decompress(data, PIECE)
            except zlib.error:
                if not (self._deflate_raw_fallback and self.size == 0):
                    raise BodyError("the body could not be decoded (corrupt compression)") from None
                self._deflate_raw_fallback = False
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._deflate_raw_fallback = False
            data = self._inflate.unconsumed_tail
            if piece:
                yield self._decode(piece)
        # Bytes after the end of a compressed stream are ignored, as httpx ignores them.

    def finish(self) -> str:
        """The text still held back (an incomplete UTF-8 sequence is an error here)."""
        if self._inflate is not None and not self._inflate.eof and self._fed:
            raise BodyError("the body could not be decoded (compressed data ends early)")
        try:
            return self._text.decode(b"", final=True)
        except UnicodeDecodeError:
            raise BodyError("the body could not be decoded (not UTF-8)") from None

    def _decode(self, piece: bytes) -> str:
        self.size += len(piece)
        if self.size > self._max_size:
            raise BodyTooLarge(f"the body is larger than {_size(self._max_size)}")
        if self._first:
            self._first = False
            if piece.startswith(codecs.BOM_UTF8):
                piece = piece[len(codecs.BOM_UTF8) :]
        try:
            return self._text.decode(piece)
        except UnicodeDecodeError:
            raise BodyError("the body could not be decoded (not UTF-8)") from None


def _size(count: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= factor and count % factor == 0:
            return f"{count // factor}{unit}"
    return f"{count} bytes"
