"""The Prometheus text exposition, and the store that owns every account's latest snapshot.

kube-state-metrics style: each account's samples are rendered to bytes once, when its snapshot
changes (off the scrape path). A scrape joins those bytes under each family's HELP/TYPE header and
appends the few exporter-wide series, so its cost grows with the number of series, never with the
number of clients. The store is also the one place that holds the snapshots themselves: the
refresh reads the previous one from here, and the status page reads them all.
"""

from __future__ import annotations

import functools
import gzip
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import TypeVar

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.families import (
    ACCOUNT_FAMILIES,
    EXPORTER_FAMILIES,
    ExporterState,
    Family,
    Labels,
    client_series,
)
from exporter.refresh_status import RefreshStatus
from exporter.selection import ClientRecord
from exporter.snapshot import AccountSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

S = TypeVar("S")
RenderedAccount = tuple[bytes, ...]  # one chunk of sample lines per exported account family


def render_account(
    snapshot: AccountSnapshot,
    families: tuple[Family[AccountSnapshot], ...] = ACCOUNT_FAMILIES,
) -> RenderedAccount:
    account = f'account_id="{_escape_label(snapshot.account_id)}"'
    return tuple(_samples(family, snapshot, account) for family in families)


def render_families(families: Iterable[Family[S]], source: S) -> bytes:
    """Whole families, headers included, of samples without an account."""
    return b"".join(family_header(family) + _samples(family, source) for family in families)


def family_header(family: Family[S]) -> bytes:
    return _header(family.name, family.help, family.type).encode()


def _samples(family: Family[S], source: S, first_label: str = "") -> bytes:
    """The family's sample lines; `first_label` (rendered) goes in front of every label set."""
    return "".join(
        _sample_line(family.name, first_label, labels, value)
        for labels, value in family.samples(source)
    ).encode("utf-8", "replace")


def _sample_line(name: str, first_label: str, labels: Labels, value: float) -> str:
    rendered = [first_label] if first_label else []
    rendered.extend(f'{key}="{_escape_label(text)}"' for key, text in labels)
    braces = "{" + ",".join(rendered) + "}" if rendered else ""
    return f"{name}{braces} {_format_value(value)}\n"


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


def _header(name: str, help_text: str, kind: str) -> str:
    return f"# HELP {name} {_escape_help(help_text)}\n# TYPE {name} {kind}\n"


class ExpositionStore:
    """Every account's latest snapshot and its rendered chunks, plus the exporter-wide state;
    `render()` is all a scrape does.

    Written by the refresh task, read by scrapes and the status page. Both run on one event loop,
    but the lock keeps it safe for a threaded server too, and guards the lazily joined body.
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
        self.families = tuple(
            family
            for family in ACCOUNT_FAMILIES
            if (per_client or not family.per_client) and keep(family.name)
        )
        self._exporter_families = tuple(
            family
            for family in EXPORTER_FAMILIES
            if (discovering or not family.discovery) and keep(family.name)
        )
        self._headers = tuple(family_header(family) for family in self.families)
        self._version = version
        self._refresh_interval = refresh_interval
        self._shard = shard
        self._total_shards = total_shards
        self._accounts: dict[str, tuple[AccountSnapshot, RenderedAccount]] = {}
        self._body: bytes | None = None
        self._exporter_body: bytes | None = None
        self._discovery_up: bool | None = None
        self._refresh_status: RefreshStatus | None = None
        self._refreshes = 0
        self._requests: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._process_registry: CollectorRegistry | None = None
        if process_metrics:
            self._process_registry = CollectorRegistry(auto_describe=False)
            for collector in _process_collectors():
                self._process_registry.register(_Kept(collector, keep))
        self._process_body = b""
        self._process_rendered_at = float("-inf")
        self._full: bytes | None = None
        self._gzip = b""
        self._gzip_of: bytes | None = None  # the body _gzip was made from

    def per_client_series(self, record: ClientRecord) -> int:
        """The series one client adds with --metrics.per-client, counting only what is exported."""
        return client_series(self.families, record)

    # --- account state ---------------------------------------------------------------------

    def put(self, snapshot: AccountSnapshot) -> None:
        rendered = render_account(snapshot, self.families)
        with self._lock:
            self._accounts[snapshot.account_id] = (snapshot, rendered)
            self._body = None

    def snapshot(self, account_id: str) -> AccountSnapshot | None:
        with self._lock:
            entry = self._accounts.get(account_id)
        return entry[0] if entry is not None else None

    def snapshots(self) -> list[AccountSnapshot]:
        with self._lock:
            return [snapshot for snapshot, _ in self._accounts.values()]

    def retain(self, account_ids: Collection[str]) -> None:
        """Forget accounts that are gone, so their series leave /metrics."""
        with self._lock:
            gone = [account for account in self._accounts if account not in account_ids]
            for account in gone:
                del self._accounts[account]
            if gone:
                self._body = None

    # --- exporter-wide state ---------------------------------------------------------------

    def set_discovery_up(self, up: bool) -> None:
        with self._lock:
            self._discovery_up = up
            self._exporter_body = None

    def publish_refresh(self, status: RefreshStatus) -> None:
        """A refresh ended: what the status page shows until the next one does."""
        with self._lock:
            self._refresh_status = status
            self._refreshes += 1

    @property
    def refresh_status(self) -> RefreshStatus | None:
        """The last refresh's outcome; None until the first one ends."""
        return self._refresh_status

    @property
    def refreshes(self) -> int:
        """How many refreshes have ended: what is rendered once per refresh keys on it."""
        return self._refreshes

    def count_request(self, endpoint: str, code: str) -> None:
        with self._lock:
            key = (endpoint, code)
            self._requests[key] = self._requests.get(key, 0) + 1
            self._exporter_body = None

    # --- rendering -------------------------------------------------------------------------

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
            if self._exporter_body is None:
                self._exporter_body = render_families(self._exporter_families, self._state())
                self._full = None
            process = self._render_process()
            if self._full is None:
                self._full = b"".join((self._body, self._exporter_body, process))
            return self._full

    def render_gzip(self) -> bytes:
        """`render()` gzipped, compressed again only when it changed (Prometheus asks for gzip)."""
        body = self.render()
        with self._lock:
            if self._gzip_of is not body:
                self._gzip = gzip.compress(body, compresslevel=1, mtime=0)
                self._gzip_of = body
            return self._gzip

    def _state(self) -> ExporterState:
        return ExporterState(
            version=self._version,
            refresh_interval=self._refresh_interval,
            shard=self._shard,
            total_shards=self._total_shards,
            discovery_up=self._discovery_up,
            requests=tuple(sorted(self._requests.items())),
        )

    def _join_accounts(self) -> bytes:
        ordered = [self._accounts[account][1] for account in sorted(self._accounts)]
        parts: list[bytes] = []
        for index, header in enumerate(self._headers):
            parts.append(header)
            parts.extend(chunks[index] for chunks in ordered)
        return b"".join(parts)

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


def _process_collectors() -> tuple[Collector, ...]:
    unfiltered = CollectorRegistry(auto_describe=False)  # only a place to create them
    return (
        ProcessCollector(registry=unfiltered),
        PlatformCollector(registry=unfiltered),
        GCCollector(registry=unfiltered),
    )


def _exposed_name(family: Metric) -> str:
    return f"{family.name}_total" if family.type == "counter" else family.name


@functools.cache
def every_family_name() -> tuple[str, ...]:
    """Every family name the store can expose before --metrics.allowlist/denylist apply."""
    process = (_exposed_name(f) for c in _process_collectors() for f in c.collect())
    own = [family.name for family in ACCOUNT_FAMILIES] + [f.name for f in EXPORTER_FAMILIES]
    return tuple(sorted({*own, *process}))


class _Kept:
    """A prometheus_client collector with the families `keep` refuses left out."""

    def __init__(self, collector: Collector, keep: Callable[[str], bool]) -> None:
        self._collector = collector
        self._keep = keep

    def collect(self) -> Iterator[Metric]:
        for family in self._collector.collect():
            if self._keep(_exposed_name(family)):
                yield family
