"""Distinct ids kept as 64-bit digests in one flat table: 8 to 16 bytes an id, whatever its length.

A listing must count each client once even when the API repeats pages, so it remembers every id
it has seen; a Python set of strings would cost a hundred bytes and more per id, and an API that
invents ids would grow it without end. The digest is Python's own string hash (SipHash, keyed per
process), so nobody outside the process can craft ids that collide.
"""

from __future__ import annotations

from array import array

_MASK64 = (1 << 64) - 1
_INITIAL_SLOTS = 1024


class DigestSet:
    """`add(id)` says whether the id is new; the table doubles when half full."""

    __slots__ = ("_count", "_mask", "_slots")

    def __init__(self) -> None:
        self._slots = array("Q", bytes(8 * _INITIAL_SLOTS))
        self._mask = _INITIAL_SLOTS - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, item: str) -> bool:
        digest = (hash(item) & _MASK64) or 1  # 0 marks an empty slot
        slots, mask = self._slots, self._mask
        index = digest & mask
        while True:
            held = slots[index]
            if held == 0:
                slots[index] = digest
                self._count += 1
                if self._count * 2 > len(slots):
                    self._grow()
                return True
            if held == digest:
                return False
            index = (index + 1) & mask

    def _grow(self) -> None:
        old = self._slots
        slots = array("Q", bytes(16 * len(old)))
        mask = len(slots) - 1
        for digest in old:
            if digest:
                index = digest & mask
                while slots[index]:
                    index = (index + 1) & mask
                slots[index] = digest
        self._slots, self._mask = slots, mask
