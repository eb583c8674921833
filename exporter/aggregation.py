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
    shown,
)

UNSPECIFIED_AUTH_METHOD = "unspecified"  # the client has no token_endpoint_auth_method
NO_VERIFICATION = "none"  # the client has no client_uri_verification status
OTHER = "other"  # undocumented values beyond the few exported under their own name

# Per account and label: undocumented values exported under their own name (the most common
# ones), and how many distinct ones are counted at all before the rest go straight to OTHER.
# An API that invents a value per client must not invent a series per client.
MAX_UNDOCUMENTED_VALUES = 10
MAX_TRACKED_VALUES = 1000

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
    # (label, distinct undocumented values folded into OTHER); empty when nothing was folded
    folded: tuple[tuple[str, int], ...] = ()
    with_findings: int = 0  # clients holding at least one finding


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
        "_with_findings",
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
        self._with_findings = 0

    def add(self, client: OAuthClient, findings: frozenset[str]) -> None:
        """Count `client`, whose findings (`client_findings(client)`) the caller worked out."""
        self._total += 1
        _count(self._visibility, client.visibility)
        _count(self._auth_method, client.token_endpoint_auth_method or UNSPECIFIED_AUTH_METHOD)
        _count(self._verification, client.verification_status or NO_VERIFICATION)
        self._rotated += client.has_rotated_secret
        for grant_type in client.grant_types:
            _count(self._grant_type, grant_type)
        for response_type in client.response_types:
            _count(self._response_type, response_type)
        if findings:
            self._with_findings += 1
            for finding in findings:  # our own names: never undocumented
                self._finding[finding] += 1

    @property
    def total(self) -> int:
        return self._total

    def result(self) -> ClientCounts:
        folded: list[tuple[str, int]] = []

        def breakdown(label: str, documented: tuple[str, ...], counts: Counter[str]) -> Breakdown:
            result, values_folded = _breakdown(documented, counts)
            if values_folded:
                folded.append((label, values_folded))
            return result

        return ClientCounts(
            total=self._total,
            by_visibility=breakdown("visibility", VISIBILITIES, self._visibility),
            by_auth_method=breakdown(
                "auth_method", (*AUTH_METHODS, UNSPECIFIED_AUTH_METHOD), self._auth_method
            ),
            by_verification_status=breakdown(
                "status", (*VERIFICATION_STATUSES, NO_VERIFICATION), self._verification
            ),
            rotated_secret_pending=self._rotated,
            by_grant_type=breakdown("grant_type", GRANT_TYPES, self._grant_type),
            by_response_type=breakdown("response_type", RESPONSE_TYPES, self._response_type),
            by_finding=_breakdown(FINDINGS, self._finding)[0],
            folded=tuple(folded),
            with_findings=self._with_findings,
        )


def count_clients(clients: Iterable[OAuthClient]) -> ClientCounts:
    counter = ClientCounter()
    for client in clients:
        counter.add(client, client_findings(client))
    return counter.result()


def _count(counts: Counter[str], value: str) -> None:
    held = counts.get(value)
    if held is not None:
        counts[value] = held + 1
        return
    value = shown(value)  # values that would be written the same are one series
    if value in counts or len(counts) < MAX_TRACKED_VALUES:
        counts[value] += 1
    else:
        counts[_OVERFLOW] += 1


_OVERFLOW = "\0overflow"  # clients whose value came after MAX_TRACKED_VALUES distinct ones


def _breakdown(documented: tuple[str, ...], counts: Counter[str]) -> tuple[Breakdown, int]:
    """Documented values in their order (0 included), then the most common undocumented ones by
    name, then OTHER for the rest; and how many distinct values went into OTHER."""
    undocumented = [v for v in counts if v not in documented and v not in (OTHER, _OVERFLOW)]
    undocumented.sort(key=lambda value: (-counts[value], value))
    kept = sorted(undocumented[:MAX_UNDOCUMENTED_VALUES])
    rest = undocumented[MAX_UNDOCUMENTED_VALUES:]
    # A value the API itself calls "other" is counted there too, never twice under one name.
    other = sum(counts[v] for v in rest) + counts.get(_OVERFLOW, 0) + counts.get(OTHER, 0)
    pairs = [(value, counts[value]) for value in (*documented, *kept)]
    if other:
        pairs.append((OTHER, other))
    # Values past MAX_TRACKED_VALUES were not told apart: they count as one, "at least".
    return tuple(pairs), len(rest) + (1 if _OVERFLOW in counts else 0)
