"""Per-client records, and which clients get per-client series when there are too many.

Only used with --metrics.per-client: a small record per client (not the client), chosen while
pages stream in, so memory stays bounded by --metrics.per-client-limit whatever the tenant's size.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable
from typing import NamedTuple

from exporter.aggregation import NO_VERIFICATION, UNSPECIFIED_AUTH_METHOD
from exporter.model import MAX_LABEL_LENGTH, OAuthClient, shown, well_formed


class ClientRecord(NamedTuple):
    """What per-client metrics need of one client."""

    client_id: str
    client_name: str
    visibility: str
    auth_method: str
    verification_status: str
    rotated_secret_pending: bool
    created_at: str | None
    updated_at: str | None
    promoted_at: str | None
    findings: frozenset[str]


def client_record(client: OAuthClient, findings: frozenset[str]) -> ClientRecord:
    """What is shown of a client: label values cut at MAX_LABEL_LENGTH and writable as UTF-8."""
    return ClientRecord(
        client_id=shown_id(client.client_id),
        client_name=shown(client.client_name or ""),
        visibility=shown(client.visibility),
        auth_method=shown(client.token_endpoint_auth_method or UNSPECIFIED_AUTH_METHOD),
        verification_status=shown(client.verification_status or NO_VERIFICATION),
        rotated_secret_pending=client.has_rotated_secret,
        created_at=client.created_at,
        updated_at=client.updated_at,
        promoted_at=client.promoted_at,
        findings=findings,
    )


def shown_id(client_id: str) -> str:
    """An id as a label value: a long one is cut, with a digest of the whole so that two long
    ids that share a beginning stay two series; so is one with a lone surrogate, as two ids that
    differ only there would otherwise be written the same."""
    if len(client_id) <= MAX_LABEL_LENGTH and well_formed(client_id) == client_id:
        return client_id
    digest = hashlib.sha256(client_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{well_formed(client_id[: MAX_LABEL_LENGTH - 17])}~{digest}"


class ClientSelection:
    """At most `limit` client records, chosen while pages stream in.

    Clients holding findings come first, then by client id: a stable choice across refreshes, so
    the same clients keep their series, and when the cap bites the clients a security team needs
    are the ones that stay. `dropped` sums `cost` (the series a record would add) of the rest.
    """

    def __init__(self, limit: int, cost: Callable[[ClientRecord], int]) -> None:
        self._limit = limit
        self._cost = cost
        self._worst_first: list[_Ranked] = []  # a heap whose top is the worst record kept
        self.dropped = 0

    def add(self, record: ClientRecord) -> None:
        ranked = _Ranked(record)
        if len(self._worst_first) < self._limit:
            heapq.heappush(self._worst_first, ranked)
            return
        if self._worst_first and self._worst_first[0] < ranked:
            ranked = heapq.heapreplace(self._worst_first, ranked)
        self.dropped += self._cost(ranked.record)

    def kept(self) -> tuple[ClientRecord, ...]:
        return tuple(r.record for r in sorted(self._worst_first, key=lambda r: r.key))


class _Ranked:
    __slots__ = ("key", "record")

    def __init__(self, record: ClientRecord) -> None:
        self.record = record
        self.key = (not record.findings, record.client_id)

    def __lt__(self, other: _Ranked) -> bool:
        return self.key > other.key  # reversed: heapq keeps the worst on top
