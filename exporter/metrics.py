"""Metric names, help texts and the Prometheus text exposition; the only module that knows them.

kube-state-metrics style: each account's samples are rendered to bytes once, when its snapshot
changes (off the scrape path). A scrape joins those bytes under each family's HELP/TYPE header and
appends the few process-wide series, so its cost grows with the number of series, never with the
number of clients.
"""

from __future__ import annotations

import gzip
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.aggregation import Breakdown, ClientCounts, ClientRecord
from exporter.model import unix_seconds
from exporter.snapshot import AccountSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_FROM_REFRESH = "as of the last successful background refresh"

Labels = tuple[tuple[str, str], ...]
Sample = tuple[Labels, float]


@dataclass(frozen=True)
class Family:
    """One metric family: a pure function from an account's snapshot to its samples."""

    name: str
    help: str
    type: str
    samples: Callable[[AccountSnapshot], Iterable[Sample]]
    per_client: bool = False  # exported only with --metrics.per-client

    def header(self) -> bytes:
        return _header(self.name, self.help, self.type).encode()


def _counted(
    extract: Callable[[ClientCounts], Iterable[Sample]],
) -> Callable[[AccountSnapshot], Iterable[Sample]]:
    """Samples from the last good counts; none until the account has been read once."""

    def samples(snapshot: AccountSnapshot) -> Iterable[Sample]:
        return extract(snapshot.counts) if snapshot.counts is not None else ()

    return samples


def _client_times(
    when: Callable[[ClientRecord], str | None],
) -> Callable[[AccountSnapshot], Iterable[Sample]]:
    def samples(snapshot: AccountSnapshot) -> Iterable[Sample]:
        for client in snapshot.clients:
            seconds = unix_seconds(when(client))
            if seconds is not None:
                yield (("client_id", client.client_id),), seconds

    return samples


def _by(
    label: str, breakdown: Callable[[ClientCounts], Breakdown]
) -> Callable[[AccountSnapshot], Iterable[Sample]]:
    return _counted(
        lambda counts: [(((label, value),), count) for value, count in breakdown(counts)]
    )


ACCOUNT_FAMILIES: tuple[Family, ...] = (
    Family(
        "cloudflare_oauth_clients",
        f"Number of OAuth clients in the account, {_FROM_REFRESH}.",
        "gauge",
        _counted(lambda c: [((), c.total)]),
    ),
    Family(
        "cloudflare_oauth_clients_by_visibility",
        f"OAuth clients by visibility (public or private), {_FROM_REFRESH}.",
        "gauge",
        _by("visibility", lambda c: c.by_visibility),
    ),
    Family(
        "cloudflare_oauth_clients_by_auth_method",
        "OAuth clients by token endpoint auth method (unspecified: the client sets none), "
        f"{_FROM_REFRESH}.",
        "gauge",
        _by("auth_method", lambda c: c.by_auth_method),
    ),
    Family(
        "cloudflare_oauth_clients_by_verification_status",
        "OAuth clients by client URI verification status (none: no verification), "
        f"{_FROM_REFRESH}.",
        "gauge",
        _by("status", lambda c: c.by_verification_status),
    ),
    Family(
        "cloudflare_oauth_clients_rotated_secret_pending",
        f"OAuth clients with a rotated secret that has not been deleted yet, {_FROM_REFRESH}.",
        "gauge",
        _counted(lambda c: [((), c.rotated_secret_pending)]),
    ),
    Family(
        "cloudflare_oauth_clients_by_grant_type",
        f"OAuth clients allowing each grant type, {_FROM_REFRESH}.",
        "gauge",
        _by("grant_type", lambda c: c.by_grant_type),
    ),
    Family(
        "cloudflare_oauth_clients_by_response_type",
        f"OAuth clients allowing each response type, {_FROM_REFRESH}.",
        "gauge",
        _by("response_type", lambda c: c.by_response_type),
    ),
    Family(
        "cloudflare_oauth_clients_with_finding",
        "OAuth clients holding each security finding (see the README for the rules), "
        f"{_FROM_REFRESH}.",
        "gauge",
        _by("finding", lambda c: c.by_finding),
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
    # --- per client (opt-in), capped per account by --metrics.per-client-limit ---
    Family(
        "cloudflare_oauth_client_info",
        f"One OAuth client, {_FROM_REFRESH}; always 1. Names are cut at 128 characters.",
        "gauge",
        lambda s: [
            (
                (
                    ("client_id", c.client_id),
                    ("client_name", c.client_name),
                    ("visibility", c.visibility),
                    ("auth_method", c.auth_method),
                    ("verification_status", c.verification_status),
                ),
                1,
            )
            for c in s.clients
        ],
        per_client=True,
    ),
    Family(
        "cloudflare_oauth_client_created_timestamp_seconds",
        "Unix time the OAuth client was created (when the API gives it).",
        "gauge",
        _client_times(lambda c: c.created_at),
        per_client=True,
    ),
    Family(
        "cloudflare_oauth_client_updated_timestamp_seconds",
        "Unix time the OAuth client was last updated (when the API gives it).",
        "gauge",
        _client_times(lambda c: c.updated_at),
        per_client=True,
    ),
    Family(
        "cloudflare_oauth_client_promoted_timestamp_seconds",
        "Unix time the OAuth client became public (when the API gives it).",
        "gauge",
        _client_times(lambda c: c.promoted_at),
        per_client=True,
    ),
    Family(
        "cloudflare_oauth_client_rotated_secret_pending",
        "1 if the OAuth client has a rotated secret that has not been deleted yet, else 0.",
        "gauge",
        lambda s: [
            ((("client_id", c.client_id),), int(c.rotated_secret_pending)) for c in s.clients
        ],
        per_client=True,
    ),
    Family(
        "cloudflare_oauth_client_finding",
        "A security finding the OAuth client holds; always 1.",
        "gauge",
        lambda s: [
            ((("client_id", c.client_id), ("finding", finding)), 1)
            for c in s.clients
            for finding in sorted(c.findings)
        ],
        per_client=True,
    ),
    Family(
        "cloudflare_oauth_per_client_series_dropped",
        "Per-client series not exported for the account because of --metrics.per-client-limit.",
        "gauge",
        lambda s: [((), s.dropped_client_series)] if s.counts is not None else (),
        per_client=True,
    ),
)

RenderedAccount = tuple[bytes, ...]  # one chunk of sample lines per ACCOUNT_FAMILIES entry


def render_account(
    snapshot: AccountSnapshot, families: tuple[Family, ...] = ACCOUNT_FAMILIES
) -> RenderedAccount:
    prefix = f'{{account_id="{_escape_label(snapshot.account_id)}"'
    return tuple(
        "".join(
            _sample_line(family.name, prefix, labels, value)
            for labels, value in family.samples(snapshot)
        ).encode("utf-8", "replace")
        for family in families
    )


def _sample_line(name: str, prefix: str, labels: Labels, value: float) -> str:
    rendered = "".join(f',{key}="{_escape_label(text)}"' for key, text in labels)
    return f"{name}{prefix}{rendered}}} {_format_value(value)}\n"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


class ExpositionStore:
    """Rendered account chunks plus process-wide state; `render()` is all a scrape does.

    Written by the refresh task, read by scrapes. Both run on one event loop, but the lock keeps it
    safe for a threaded server too, and guards the lazily joined body.
    """

    def __init__(
        self,
        *,
        discovering: bool,
        refresh_interval: float,
        shard: int = 0,
        total_shards: int = 1,
        per_client: bool = False,
        keep: Callable[[str], bool] = lambda name: True,
        version: str = __version__,
        process_metrics: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`keep` decides, by family name, what is exported (--metrics.allowlist/denylist)."""
        self._keep = keep
        self._families = tuple(
            family
            for family in ACCOUNT_FAMILIES
            if (per_client or not family.per_client) and keep(family.name)
        )
        self._headers = tuple(family.header() for family in self._families)
        self._discovering = discovering
        self._accounts: dict[str, RenderedAccount] = {}
        self._body: bytes | None = None
        self._dynamic: bytes | None = None
        self._discovery_up: bool | None = None
        self._requests: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        # Fixed for the process's life, so rendered once. The interval lets alert rules say
        # "stale" in refresh intervals; total_shards lets them count the shard_info series.
        self._static = "".join(
            _header(name, help_text) + f"{name}{labels} {_format_value(value)}\n"
            for name, help_text, labels, value in (
                ("cloudflare_oauth_exporter_build_info", "Version of the exporter; always 1.",
                 f'{{version="{_escape_label(version)}"}}', 1),
                ("cloudflare_oauth_exporter_refresh_interval_seconds",
                 "The configured --refresh.interval: how often every account is read.",
                 "", refresh_interval),
                ("cloudflare_oauth_exporter_shard_info",
                 "The shard this replica exports (--shard of --total-shards); always 1.",
                 f'{{shard="{shard}",total_shards="{total_shards}"}}', 1),
                ("cloudflare_oauth_exporter_total_shards",
                 "The --total-shards the accounts are split across.", "", total_shards),
            )
            if keep(name)
        ).encode()  # fmt: skip
        self._monotonic = monotonic
        self._process_registry: CollectorRegistry | None = None
        if process_metrics:
            self._process_registry = CollectorRegistry(auto_describe=False)
            unfiltered = CollectorRegistry(auto_describe=False)  # only a place to create them
            for collector in (
                ProcessCollector(registry=unfiltered),
                PlatformCollector(registry=unfiltered),
                GCCollector(registry=unfiltered),
            ):
                self._process_registry.register(_Kept(collector, keep))
        self._process_body = b""
        self._process_rendered_at = float("-inf")
        self._full: bytes | None = None
        self._gzip = b""
        self._gzip_of: bytes | None = None  # the body _gzip was made from

    def per_client_series(self, record: ClientRecord) -> int:
        """The series one client adds with --metrics.per-client, counting only what is exported."""
        alone = AccountSnapshot("", None, True, None, None, 0.0, clients=(record,))
        return sum(
            len(list(family.samples(alone)))
            for family in self._families
            if family.per_client and family.name != "cloudflare_oauth_per_client_series_dropped"
        )

    def put(self, snapshot: AccountSnapshot) -> None:
        rendered = render_account(snapshot, self._families)
        with self._lock:
            self._accounts[snapshot.account_id] = rendered
            self._body = None

    def retain(self, account_ids: Collection[str]) -> None:
        """Forget accounts that are gone, so their series leave /metrics."""
        with self._lock:
            gone = [account for account in self._accounts if account not in account_ids]
            for account in gone:
                del self._accounts[account]
            if gone:
                self._body = None

    def set_discovery_up(self, up: bool) -> None:
        with self._lock:
            self._discovery_up = up
            self._dynamic = None

    def count_request(self, endpoint: str, code: str) -> None:
        with self._lock:
            key = (endpoint, code)
            self._requests[key] = self._requests.get(key, 0) + 1
            self._dynamic = None

    def render(self) -> bytes:
        """The whole exposition, joined again only when a part of it changed.

        Between refreshes that is at most once a second (the process metrics), so scrapes
        write the same bytes object; during a refresh the small request counter changes often,
        and a scrape pays one copy of the account series.
        """
        with self._lock:
            if self._body is None:
                self._body = self._join_accounts()
                self._full = None
            if self._dynamic is None:
                self._dynamic = self._render_dynamic()
                self._full = None
            process = self._render_process()
            if self._full is None:
                self._full = b"".join((self._body, self._dynamic, process))
            return self._full

    def render_gzip(self) -> bytes:
        """`render()` gzipped, compressed again only when it changed (Prometheus asks for gzip)."""
        body = self.render()
        with self._lock:
            if self._gzip_of is not body:
                self._gzip = gzip.compress(body, compresslevel=1, mtime=0)
                self._gzip_of = body
            return self._gzip

    def _join_accounts(self) -> bytes:
        ordered = [self._accounts[account] for account in sorted(self._accounts)]
        parts: list[bytes] = []
        for index, header in enumerate(self._headers):
            parts.append(header)
            parts.extend(chunks[index] for chunks in ordered)
        return b"".join(parts)

    def _render_dynamic(self) -> bytes:
        lines: list[str] = []
        if self._discovering and self._keep("cloudflare_oauth_discovery_up"):
            lines.append(
                _header(
                    "cloudflare_oauth_discovery_up",
                    "1 if the last account discovery (GET /accounts) succeeded, else 0.",
                )
            )
            if self._discovery_up is not None:
                lines.append(f"cloudflare_oauth_discovery_up {int(self._discovery_up)}\n")
        if self._keep("cloudflare_oauth_api_requests_total"):
            lines.append(
                _header(
                    "cloudflare_oauth_api_requests_total",
                    "Cloudflare API requests sent by the background refresh, by endpoint and HTTP "
                    "status code (or timeout, connection_error, decode_error).",
                    "counter",
                )
            )
            for (endpoint, code), count in sorted(self._requests.items()):
                lines.append(
                    f'cloudflare_oauth_api_requests_total{{endpoint="{_escape_label(endpoint)}",'
                    f'code="{_escape_label(code)}"}} {count}\n'
                )
        return "".join(lines).encode() + self._static

    def _render_process(self) -> bytes:
        # Process metrics read /proc; once a second is plenty for series scraped every 15s+,
        # and keeps a burst of scrapes from paying for it each time.
        if self._process_registry is None:
            return b""
        now = self._monotonic()
        if now - self._process_rendered_at >= 1.0:
            self._process_body = generate_latest(self._process_registry)
            self._process_rendered_at = now
            self._full = None
        return self._process_body


class _Kept:
    """A prometheus_client collector with the families `keep` refuses left out."""

    def __init__(self, collector: Collector, keep: Callable[[str], bool]) -> None:
        self._collector = collector
        self._keep = keep

    def collect(self) -> Iterator[Metric]:
        for family in self._collector.collect():
            exposed = f"{family.name}_total" if family.type == "counter" else family.name
            if self._keep(exposed):
                yield family


def _header(name: str, help_text: str, kind: str = "gauge") -> str:
    return f"# HELP {name} {_escape_help(help_text)}\n# TYPE {name} {kind}\n"
