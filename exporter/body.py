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
        self._inflate: zlib._Decompress | None = None
        self._compressed = True
        self._head = b""  # a deflate body's first bytes, until they say which format it is
        if encoding in ("identity", ""):
            self._compressed = False
        elif encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding != "deflate":
            raise BodyError(f"the body could not be decoded (Content-Encoding {encoding[:24]!r})")

    def feed(self, raw: bytes) -> Iterator[str]:
        """Text decoded from `raw`, in pieces of at most PIECE bytes' worth."""
        self._fed = self._fed or bool(raw)
        if not self._compressed:
            for start in range(0, len(raw), PIECE):
                yield self._decode(raw[start : start + PIECE])
            return
        if self._inflate is None:
            # Servers send zlib-wrapped or raw deflate under "deflate": the first two bytes say
            # which, so wait for them rather than guess and have to replay what was fed.
            self._head += raw
            if len(self._head) < 2:
                return
            raw, self._head = self._head, b""
            wbits = zlib.MAX_WBITS if _zlib_header(raw) else -zlib.MAX_WBITS  # negative: raw
            self._inflate = zlib.decompressobj(wbits)
        inflate = self._inflate
        data = raw
        while not inflate.eof:
            try:
                piece = inflate.decompress(data, PIECE)
            except zlib.error:
                raise BodyError("the body could not be decoded (corrupt compression)") from None
            data = inflate.unconsumed_tail
            if piece:
                yield self._decode(piece)
            # A full piece may leave output inside zlib even once the input is all taken in:
            # ask again until a short piece says nothing is held back.
            if not data and len(piece) < PIECE:
                break
        # Bytes after the end of a compressed stream are ignored, as httpx ignores them.

    def finish(self) -> str:
        """The text still held back (an incomplete UTF-8 sequence is an error here)."""
        if self._compressed and self._fed and (self._inflate is None or not self._inflate.eof):
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


def _zlib_header(head: bytes) -> bool:
    """Whether a deflate body starts with a zlib header (RFC 1950): the method is deflate and
    the two bytes, read as a big-endian number, are a multiple of 31. A raw deflate stream
    starts so only with a stored block that is not the last, of a length ending in one of 8
    byte values: rare enough to read it as corrupt then."""
    return head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


def _size(count: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= factor and count % factor == 0:
            return f"{count // factor}{unit}"
    return f"{count} bytes"
