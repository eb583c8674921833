"""Response bodies decoded within bounds: compression, the size cap, UTF-8."""

from __future__ import annotations

import gzip
import zlib

import pytest

from exporter.body import PIECE, BodyDecoder, BodyError, BodyTooLarge

TEXT = '{"result": ["é", "🚀"], "success": true}' * 100


def decode(raw: bytes, encoding: str | None, max_size: int = 1 << 30, step: int = 7) -> str:
    decoder = BodyDecoder(encoding, max_size)
    parts = [text for i in range(0, len(raw), step) for text in decoder.feed(raw[i : i + step])]
    return "".join(parts) + decoder.finish()


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        (None, lambda b: b),
        ("identity", lambda b: b),
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # zlib-wrapped, as the standard says
        ("deflate", lambda b: zlib.compress(b, wbits=-15)),  # raw, as some servers send it
        ("GZIP", gzip.compress),
    ],
)
def test_every_encoding_we_ask_for_decodes_whatever_the_read_sizes(encoding, compress):
    raw = compress(TEXT.encode())
    assert decode(raw, encoding) == TEXT
    assert decode(raw, encoding, step=1 << 20) == TEXT


COMPRESSIONS = [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", lambda b: zlib.compress(b, wbits=-15)),
]


@pytest.mark.parametrize(("encoding", "compress"), COMPRESSIONS)
@pytest.mark.parametrize("size", [PIECE - 1, PIECE, PIECE + 1, 2 * PIECE, 3 * PIECE])
def test_a_byte_at_a_time_decodes_every_size_around_a_piece(encoding, compress, size):
    # A piece that fills PIECE exactly as the input runs out may leave output inside zlib; a
    # deflate body's format is told from its first two bytes, which may come one at a time.
    text = ("0123456789abcdef" * (size // 16 + 1))[:size]
    raw = compress(text.encode())
    assert decode(raw, encoding, step=1) == text
    assert decode(raw, encoding, step=len(raw)) == text


@pytest.mark.parametrize(("encoding", "compress"), COMPRESSIONS)
def test_a_body_that_inflates_to_exactly_a_piece_per_read_loses_nothing(encoding, compress):
    raw = compress(b"a" * 65537)  # 64 KiB out of a few bytes: a full piece as the read ends
    assert decode(raw, encoding, step=len(raw)) == "a" * 65537
    assert decode(raw, encoding, step=1) == "a" * 65537


@pytest.mark.parametrize("body", [b"x", zlib.compress(b"{}")[:1]])
def test_a_deflate_body_of_one_byte_ends_early(body):
    with pytest.raises(BodyError, match="ends early"):
        decode(body, "deflate")


def test_a_bom_is_dropped():
    assert decode(b"\xef\xbb\xbf{}", None) == "{}"


def test_a_gzip_bomb_is_stopped_after_one_piece_past_the_cap():
    bomb = gzip.compress(b" " * (64 << 20), compresslevel=9)  # 64 MiB of spaces in ~64 KiB
    decoder = BodyDecoder("gzip", max_size=1 << 20)
    pieces: list[str] = []

    def feed_it_all() -> None:
        pieces.extend(decoder.feed(bomb))  # one read: the whole bomb at once

    with pytest.raises(BodyTooLarge, match=r"larger than 1MiB"):
        feed_it_all()
    assert all(len(piece) <= PIECE for piece in pieces)
    assert sum(map(len, pieces)) <= (1 << 20)


def test_the_cap_counts_decoded_bytes_not_wire_bytes():
    raw = gzip.compress(b"a" * 5000)
    assert len(raw) < 100
    with pytest.raises(BodyTooLarge):
        decode(raw, "gzip", max_size=4096)


@pytest.mark.parametrize(
    ("raw", "encoding", "message"),
    [
        (b"not gzip at all", "gzip", "corrupt compression"),
        (gzip.compress(TEXT.encode())[:-20], "gzip", "ends early"),
        (b"{}", "br", "Content-Encoding 'br'"),
        (b'{"a": "\xff"}', None, "not UTF-8"),
        (b'{"a": "\xc3', None, "not UTF-8"),  # a sequence cut off by the end
    ],
)
def test_what_cannot_be_decoded_is_one_line(raw, encoding, message):
    with pytest.raises(BodyError, match=message) as raised:
        decode(raw, encoding)
    assert "\n" not in str(raised.value)
