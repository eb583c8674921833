"""Which replica exports which account, kube-state-metrics style.

An account belongs to shard `int.from_bytes(sha256(account_id)[:8], "big") % total_shards`: stable
across versions, processes and machines, so every account lands on exactly one replica.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def shard_of(account_id: str, total_shards: int) -> int:
    digest = hashlib.sha256(account_id.lower().encode()).digest()
    return int.from_bytes(digest[:8], "big") % total_shards


@dataclass(frozen=True, slots=True)
class Shard:
    index: int = 0
    total: int = 1

    def owns(self, account_id: str) -> bool:
        return self.total == 1 or shard_of(account_id, self.total) == self.index
