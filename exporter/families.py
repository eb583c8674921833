"""Every metric family the exporter exposes, as a table of pure functions; the only module that
knows metric names.

kube-state-metrics style: a family is a name, a help text, a type and a function from a value to
its samples. Account families read an `AccountSnapshot`; exporter-wide families read an
`ExporterState`. Per-client families are declared per client, so what one client costs in series
is what the table says, counted without rendering anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from exporter.aggregation import Breakdown, ClientCounts
from exporter.changes import ChangeTotals
from exporter.model import unix_seconds
from exporter.selection import ClientRecord
from exporter.snapshot import AccountSnapshot

Labels = tuple[tuple[str, str], ...]
Sample = tuple[Labels, float]
S = TypeVar("S")

_FROM_REFRESH = "as of the last successful background refresh"


@dataclass(frozen=True)
class ExporterState:
    """What the exporter-wide series are made of, at one moment."""

    version: str
    refresh_interval: float
    shard: int
    total_shards: int
    discovery_up: bool | None  # None: not discovered yet
    requests: tuple[tuple[tuple[str, str], int], ...]  # ((endpoint, code), count), sorted
    paused_until: float = 0.0  # wall time Cloudflare lets requests go again; 0: not paused


@dataclass(frozen=True)
class Family(Generic[S]):
    """One metric family: a pure function from a value to its samples."""

    name: str
    help: str
    type: Literal["gauge", "counter"]
    samples: Callable[[S], Iterable[Sample]]
    per_client: bool = False  # exported only with --metrics.per-client
    discovery: bool = False  # exported only when accounts are discovered
    # Per-client families: the samples of one client (client_id is added in front).
    client_samples: Callable[[ClientRecord], Iterable[Sample]] | None = None


def client_series(families: Iterable[Family[AccountSnapshot]], record: ClientRecord) -> int:
    """The series one client adds to these families."""
    return sum(
        sum(1 for _ in family.client_samples(record))
        for family in families
        if family.client_samples is not None
    )


def _counted(
    extract: Callable[[ClientCounts], Iterable[Sample]],
) -> Callable[[AccountSnapshot], Iterable[Sample]]:
    """Samples from the last good counts; none until the account has been read once."""

    def samples(snapshot: AccountSnapshot) -> Iterable[Sample]:
        return extract(snapshot.counts) if snapshot.counts is not None else ()

    return samples


def _by(
    label: str, breakdown: Callable[[ClientCounts], Breakdown]
) -> Callable[[AccountSnapshot], Iterable[Sample]]:
    return _counted(
        lambda counts: [(((label, value),), count) for value, count in breakdown(counts)]
    )


def _breakdown(
    name: str, what: str, label: str, breakdown: Callable[[ClientCounts], Breakdown]
) -> Family[AccountSnapshot]:
    return Family(name, f"{what}, {_FROM_REFRESH}.", "gauge", _by(label, breakdown))


def _per_client(
    name: str, help_text: str, client_samples: Callable[[ClientRecord], Iterable[Sample]]
) -> Family[AccountSnapshot]:
    def samples(snapshot: AccountSnapshot) -> Iterator[Sample]:
        for client in snapshot.clients:
            prefix = (("client_id", client.client_id),)
            for labels, value in client_samples(client):
                yield prefix + labels, value

    return Family(name, help_text, "gauge", samples, per_client=True, client_samples=client_samples)


def _totals(
    label: str, pairs: Callable[[ChangeTotals], tuple[tuple[str, int], ...]]
) -> Callable[[AccountSnapshot], Iterable[Sample]]:
    """Cumulative change counts; none until the account has been read once."""

    def samples(snapshot: AccountSnapshot) -> Iterable[Sample]:
        if snapshot.changes is None:
            return ()
        return [(((label, value),), count) for value, count in pairs(snapshot.changes)]

    return samples


def _client_time(
    when: Callable[[ClientRecord], str | None],
) -> Callable[[ClientRecord], list[Sample]]:
    def samples(client: ClientRecord) -> list[Sample]:
        seconds = unix_seconds(when(client))
        return [((), seconds)] if seconds is not None else []

    return samples


ACCOUNT_FAMILIES: tuple[Family[AccountSnapshot], ...] = (
    Family(
        "cloudflare_oauth_clients",
        f"Number of OAuth clients in the account, {_FROM_REFRESH}.",
        "gauge",
        _counted(lambda c: [((), c.total)]),
    ),
    _breakdown(
        "cloudflare_oauth_clients_by_visibility",
        "OAuth clients by visibility (public or private)",
        "visibility", lambda c: c.by_visibility,
    ),
    _breakdown(
        "cloudflare_oauth_clients_by_auth_method",
        "OAuth clients by token endpoint auth method (unspecified: the client sets none)",
        "auth_method", lambda c: c.by_auth_method,
    ),
    _breakdown(
        "cloudflare_oauth_clients_by_verification_status",
        "OAuth clients by client URI verification status (none: no verification)",
        "status", lambda c: c.by_verification_status,
    ),
    Family(
        "cloudflare_oauth_clients_rotated_secret_pending",
        f"OAuth clients with a rotated secret that has not been deleted yet, {_FROM_REFRESH}.",
        "gauge",
        _counted(lambda c: [((), c.rotated_secret_pending)]),
    ),
    _breakdown(
        "cloudflare_oauth_clients_by_grant_type", "OAuth clients allowing each grant type",
        "grant_type", lambda c: c.by_grant_type,
    ),
    _breakdown(
        "cloudflare_oauth_clients_by_response_type", "OAuth clients allowing each response type",
        "response_type", lambda c: c.by_response_type,
    ),
    _breakdown(
        "cloudflare_oauth_clients_with_finding",
        "OAuth clients holding each security finding (see the README for the rules)",
        "finding", lambda c: c.by_finding,
    ),
    Family(
        "cloudflare_oauth_account_up",
        "1 if the last background refresh of the account succeeded, 0 if it failed.",
        "gauge",
        lambda s: [((), 1 if s.up else 0)],
    ),
    Family(
        "cloudflare_oauth_account_last_success_timestamp_seconds",
        "Unix time of the last successful background refresh of the account.",
        "gauge",
        lambda s: [((), s.last_success)] if s.last_success is not None else (),
    ),
    Family(
        "cloudflare_oauth_account_refresh_duration_seconds",
        "Duration of the last background refresh of the account, successful or not.",
        "gauge",
        lambda s: [((), s.refresh_duration)],
    ),
    Family(
        "cloudflare_oauth_account_info",
        "Account name as listed by account discovery; always 1.",
        "gauge",
        lambda s: [((("account_name", s.account_name),), 1)] if s.account_name is not None else (),
    ),
    # --- changes between good refreshes; the first good refresh after start is the baseline ---
    Family(
        "cloudflare_oauth_client_changes_total",
        "OAuth clients created, deleted or changed, as seen between two successful refreshes.",
        "counter",
        _totals("change", lambda t: t.by_change),
    ),
    Family(
        "cloudflare_oauth_client_field_changes_total",
        "Changed OAuth clients by documented field that changed (findings: the set of security "
        "findings the client holds).",
        "counter",
        _totals("field", lambda t: t.by_field),
    ),
    Family(
        "cloudflare_oauth_client_findings_gained_total",
        "OAuth clients that came to hold a security finding, created with it or changed to it.",
        "counter",
        _totals("finding", lambda t: t.findings_gained),
    ),
    Family(
        "cloudflare_oauth_client_made_public_total",
        "OAuth clients whose visibility changed to public.",
        "counter",
        lambda s: [((), s.changes.made_public)] if s.changes is not None else (),
    ),
    Family(
        "cloudflare_oauth_account_changes_followed",
        "1 if changes to the account's OAuth clients are detected; 0 when it has more clients than "
        "change detection follows or they would take more memory than it may use: the change "
        "counters then stand still.",
        "gauge",
        # Only a good refresh that could not keep the clients' fingerprints leaves none.
        lambda s: [((), int(s.baseline is not None))] if s.counts is not None else (),
    ),
    # --- per client (opt-in), capped per account by --metrics.per-client-limit ---
    _per_client(
        "cloudflare_oauth_client_info",
        f"One OAuth client, {_FROM_REFRESH}; always 1. Names are cut at 128 characters.",
        lambda c: [(
            (("client_name", c.client_name), ("visibility", c.visibility),
             ("auth_method", c.auth_method), ("verification_status", c.verification_status)),
            1,
        )],
    ),
    _per_client(
        "cloudflare_oauth_client_created_timestamp_seconds",
        "Unix time the OAuth client was created (when the API gives it).",
        _client_time(lambda c: c.created_at),
    ),
    _per_client(
        "cloudflare_oauth_client_updated_timestamp_seconds",
        "Unix time the OAuth client was last updated (when the API gives it).",
        _client_time(lambda c: c.updated_at),
    ),
    _per_client(
        "cloudflare_oauth_client_promoted_timestamp_seconds",
        "Unix time the OAuth client became public (when the API gives it).",
        _client_time(lambda c: c.promoted_at),
    ),
    _per_client(
        "cloudflare_oauth_client_rotated_secret_pending",
        "1 if the OAuth client has a rotated secret that has not been deleted yet, else 0.",
        lambda c: [((), int(c.rotated_secret_pending))],
    ),
    _per_client(
        "cloudflare_oauth_client_finding",
        "A security finding the OAuth client holds; always 1.",
        lambda c: [((("finding", finding),), 1) for finding in sorted(c.findings)],
    ),
    Family(
        "cloudflare_oauth_per_client_series_dropped",
        "Per-client series not exported for the account because of --metrics.per-client-limit.",
        "gauge",
        lambda s: [((), s.dropped_client_series)] if s.counts is not None else (),
        per_client=True,
    ),
)  # fmt: skip

EXPORTER_FAMILIES: tuple[Family[ExporterState], ...] = (
    Family(
        "cloudflare_oauth_discovery_up",
        "1 if the last account discovery (GET /accounts) succeeded, else 0.",
        "gauge",
        lambda e: [((), int(e.discovery_up))] if e.discovery_up is not None else (),
        discovery=True,
    ),
    Family(
        "cloudflare_oauth_api_requests_total",
        "Cloudflare API requests sent by the background refresh, by endpoint and HTTP status "
        "code (or timeout, connection_error, decode_error).",
        "counter",
        lambda e: [
            ((("endpoint", endpoint), ("code", code)), count)
            for (endpoint, code), count in e.requests
        ],
    ),
    Family(
        "cloudflare_oauth_api_paused_until_timestamp_seconds",
        "Unix time until which Cloudflare asked every API request to wait (Retry-After, or a "
        "Ratelimit header with nothing left); 0 when requests are not paused.",
        "gauge",
        lambda e: [((), e.paused_until)],
    ),
    Family(
        "cloudflare_oauth_exporter_build_info",
        "Version of the exporter; always 1.",
        "gauge",
        lambda e: [((("version", e.version),), 1)],
    ),
    # The interval lets alert rules say "stale" in refresh intervals; total_shards lets them
    # count the shard_info series.
    Family(
        "cloudflare_oauth_exporter_refresh_interval_seconds",
        "The configured --refresh.interval: how often every account is read.",
        "gauge",
        lambda e: [((), e.refresh_interval)],
    ),
    Family(
        "cloudflare_oauth_exporter_shard_info",
        "The shard this replica exports (--shard of --total-shards); always 1.",
        "gauge",
        lambda e: [((("shard", str(e.shard)), ("total_shards", str(e.total_shards))), 1)],
    ),
    Family(
        "cloudflare_oauth_exporter_total_shards",
        "The --total-shards the accounts are split across.",
        "gauge",
        lambda e: [((), e.total_shards)],
    ),
)
