"""The ids a listing has seen: as distinct as a set, at a fixed, small cost per id."""

from __future__ import annotations

import sys

from hypothesis import given
from hypothesis import strategies as st

from exporter.idset import DigestSet


@given(st.lists(st.text(max_size=40)))
def test_it_tells_new_ids_from_seen_ones_like_a_set(ids):
    digests, reference = DigestSet(), set()
    for item in ids:
        assert digests.add(item) == (item not in reference)
        reference.add(item)
    assert len(digests) == len(reference)


def test_lone_surrogates_and_empty_ids_are_ids():
    digests = DigestSet()
    for item in ("\ud800", "", "\udfff"):
        assert digests.add(item)
    assert not digests.add("\ud800")


def test_an_id_costs_a_few_bytes_whatever_its_length():
    digests = DigestSet()
    for n in range(300_000):
        digests.add(f"{n:08x}" + "-a-long-client-id" * 10)
    assert len(digests) == 300_000
    # one 8-byte slot per id at most half full: 2**20 slots here, 2**21 (16 MiB) at a million
    assert sys.getsizeof(digests._slots) / len(digests) <= 32
