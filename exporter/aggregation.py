"""Pure aggregation: OAuth clients in, counts out. No I/O, no clock, no globals.

Every documented value of a dimension is present (0 included) so a dashboard never shows a gap
for "none verified"; values the API sends that are not documented are kept under their own name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

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
