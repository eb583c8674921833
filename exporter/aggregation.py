"""Pure aggregation: OAuth clients in, counts out. No I/O, no clock, no globals.

Every documented value of a dimension is present (0 included) so a dashboard never shows a gap
for "none verified"; values the API sends that are not documented are kept under their own name.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from exporter.findings import FINDINGS, client_findings
from exporter.model import (
    AUTH_METHODS,
    GRANT_TYPES,
    RESPONSE_TYPES,
    VERIFICATION_STATUSES,
    VISIBILITIES,
    OAuthClient,
)

UNSPECIFIED_AUTH_METHOD = "unspecified"  # the client has no token_endpoint_auth_method
NO_VERIFICATION = "none"  # the client has no client_uri_verification status

Breakdown = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class ClientCounts:
    """Counts of one account's clients; each breakdown is (value, count) in a stable order."""

    total: int
    by_visibility: Breakdown
    by_auth_method: Breakdown
    by_verification_status: Breakdown
    rotated_secret_pending: int
    by_grant_type: Breakdown
    by_response_type: Breakdown
    by_finding: Breakdown


class ClientRecord(NamedTuple):
    """What per-client metrics need of one client; kept only with --metrics.per-client."""

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


MAX_NAME_LENGTH = 128  # longer client names are cut: a label value is not a place for essays


def client_record(client: OAuthClient, findings: frozenset[str]) -> ClientRecord:
    return ClientRecord(
        client_id=client.client_id,
        client_name=(client.client_name or "")[:MAX_NAME_LENGTH],
        visibility=client.visibility,
        auth_method=client.token_endpoint_auth_method or UNSPECIFIED_AUTH_METHOD,
        verification_status=client.verification_status or NO_VERIFICATION,
        rotated_secret_pending=client.has_rotated_secret,
        created_at=client.created_at,
        updated_at=client.updated_at,
        promoted_at=client.promoted_at,
        findings=findings,
    )


class ClientSelection:
    """At most `limit` client records, chosen while pages stream in, so memory stays bounded.

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


class ClientCounter:
    """Accumulates counts page by page, so a refresh keeps counts instead of clients."""

    __slots__ = (
        "_auth_method",
        "_finding",
        "_grant_type",
        "_response_type",
        "_rotated",
        "_total",
        "_verification",
        "_visibility",
    )

    def __init__(self) -> None:
        self._total = 0
        self._rotated = 0
        self._visibility: Counter[str] = Counter()
        self._auth_method: Counter[str] = Counter()
        self._verification: Counter[str] = Counter()
        self._grant_type: Counter[str] = Counter()
        self._response_type: Counter[str] = Counter()
        self._finding: Counter[str] = Counter()

    def add(self, client: OAuthClient, findings: frozenset[str]) -> None:
        """Count `client`, whose findings (`client_findings(client)`) the caller worked out."""
        self._total += 1
        self._visibility[client.visibility] += 1
        self._auth_method[client.token_endpoint_auth_method or UNSPECIFIED_AUTH_METHOD] += 1
        self._verification[client.verification_status or NO_VERIFICATION] += 1
        self._rotated += client.has_rotated_secret
        for grant_type in client.grant_types:  # a loop beats Counter.update for 1-2 items
            self._grant_type[grant_type] += 1
        for response_type in client.response_types:
            self._response_type[response_type] += 1
        for finding in findings:
            self._finding[finding] += 1

    @property
    def total(self) -> int:
        return self._total

    def result(self) -> ClientCounts:
        return ClientCounts(
            total=self._total,
            by_visibility=_breakdown(VISIBILITIES, self._visibility),
            by_auth_method=_breakdown((*AUTH_METHODS, UNSPECIFIED_AUTH_METHOD), self._auth_method),
            by_verification_status=_breakdown(
                (*VERIFICATION_STATUSES, NO_VERIFICATION), self._verification
            ),
            rotated_secret_pending=self._rotated,
            by_grant_type=_breakdown(GRANT_TYPES, self._grant_type),
            by_response_type=_breakdown(RESPONSE_TYPES, self._response_type),
            by_finding=_breakdown(FINDINGS, self._finding),
        )


def count_clients(clients: Iterable[OAuthClient]) -> ClientCounts:
    counter = ClientCounter()
    for client in clients:
        counter.add(client, client_findings(client))
    return counter.result()


def _breakdown(documented: tuple[str, ...], counts: Counter[str]) -> Breakdown:
    undocumented = sorted(value for value in counts if value not in documented)
    return tuple((value, counts[value]) for value in (*documented, *undocumented))
