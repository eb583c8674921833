"""The Prometheus text exposition, and the store that owns every account's latest snapshot.

kube-state-metrics style: each account's samples are rendered to bytes once, when its snapshot
changes (off the scrape path). A scrape joins those bytes under each family's HELP/TYPE header and
appends the few exporter-wide series, so its cost grows with the number of series, never with the
number of clients. The store is also the one place that holds the snapshots themselves: the
refresh reads the previous one from here, and the status page reads them all.
"""

from __future__ import annotations

import functools
import math
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import TypeVar

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.changes import ClientChange, RecentChange, RecentChanges
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
        clock: Callable[[], float] = time.time,
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
        self._body_version = 0  # one more each time the account part changes
        self._exporter_body: bytes | None = None
        self._discovery_up: bool | None = None
        self._refresh_status: RefreshStatus | None = None
        self._refreshes = 0
        self._requests: dict[tuple[str, str], int] = {}
        self._recent = RecentChanges()
        self._paused_until = 0.0  # wall time the API lets us send again; past: not paused
        self._paused_rendered = 0.0  # the value the exporter series were last rendered with
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._clock = clock
        self._process_registry: CollectorRegistry | None = None
        if process_metrics:
            self._process_registry = CollectorRegistry(auto_describe=False)
            for collector in _process_collectors():
                self._process_registry.register(_Kept(collector, keep))
        self._process_body = b""
        self._process_rendered_at = float("-inf")
        self._gzip = b""
        self._gzip_head = b""
        self._gzip_state: zlib._Compress | None = None
        self._gzip_body_of = -1  # the version of the account part _gzip_head was made from
        self._gzip_tail_of: tuple[int, int] | None = None
        self._gzip_tail_parts: tuple[bytes, bytes] = (b"", b"")

    def per_client_series(self, record: ClientRecord) -> int:
        """The series one client adds with --metrics.per-client, counting only what is exported."""
        return client_series(self.families, record)

    # --- account state ---------------------------------------------------------------------

    def put(self, snapshot: AccountSnapshot) -> None:
        rendered = render_account(snapshot, self.families)
        with self._lock:
            self._accounts[snapshot.account_id] = (snapshot, rendered)
            self._body = None
            self._body_version += 1

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
                self._body_version += 1

    def record_changes(
        self, when: float, account_id: str, account_name: str | None,
        changes: Iterable[ClientChange], not_listed: int = 0,
    ) -> None:  # fmt: skip
        """Changes to OAuth clients, kept (the last RecentChanges.limit) for the status page;
        `not_listed`: how many more the refresh found (a burst is listed in part)."""
        with self._lock:
            self._recent.add(when, account_id, account_name, changes, not_listed)

    def recent_changes(self) -> list[RecentChange]:
        """The last changes across accounts, newest first: (time, account id, name, change)."""
        with self._lock:
            return list(self._recent.items)

    # --- exporter-wide state ---------------------------------------------------------------

    def set_discovery_up(self, up: bool) -> None:
        with self._lock:
            self._discovery_up = up
            self._exporter_body = None

    def set_paused_until(self, until: float) -> None:
        """Cloudflare asked every request to wait until this wall time."""
        with self._lock:
            self._paused_until = max(self._paused_until, until)
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
        """The whole exposition as one bytes object (for --once and tests; scrapes use parts)."""
        return b"".join(self.render_parts())

    def render_parts(self) -> tuple[bytes, bytes, bytes]:
        """The exposition in three parts — account series, exporter-wide series, process
        series — each rendered again only when it changed.

        Between refreshes that is at most once a second (the process metrics), so scrapes write
        the same bytes objects; the large account part is never copied to be sent.
        """
        with self._lock:
            if self._body is None:
                self._body = self._join_accounts()
            return self._body, *self._small_parts()

    def _small_parts(self) -> tuple[bytes, bytes]:
        paused = self._paused_until if self._paused_until > self._clock() else 0.0
        if self._exporter_body is None or paused != self._paused_rendered:
            self._paused_rendered = paused
            self._exporter_body = render_families(self._exporter_families, self._state())
        return self._exporter_body, self._render_process()

    def render_gzip(self) -> bytes:
        """The exposition gzipped (Prometheus asks for gzip). The account part is compressed a
        family at a time, once per change, straight from the accounts' rendered samples: it is
        never joined whole for this. The compressor's state is kept, so a change in the small
        parts costs only their own compression."""
        with self._lock:
            exporter, process = self._small_parts()
            if self._gzip_body_of != self._body_version:
                compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
                pieces = [compressor.compress(family) for family in self._account_families()]
                pieces.append(compressor.flush(zlib.Z_SYNC_FLUSH))
                self._gzip_head = b"".join(pieces)
                self._gzip_state = compressor
                self._gzip_body_of = self._body_version
                self._gzip_tail_of = None
            if self._gzip_tail_of != (id(exporter), id(process)):
                assert self._gzip_state is not None
                tail = self._gzip_state.copy()
                self._gzip = self._gzip_head + tail.compress(exporter + process) + tail.flush()
                self._gzip_tail_of = (id(exporter), id(process))
                self._gzip_tail_parts = (exporter, process)  # keeps the ids meaningful
            return self._gzip

    def _state(self) -> ExporterState:
        return ExporterState(
            version=self._version,
            refresh_interval=self._refresh_interval,
            shard=self._shard,
            total_shards=self._total_shards,
            discovery_up=self._discovery_up,
            requests=tuple(sorted(self._requests.items())),
            paused_until=self._paused_rendered,
        )

    def _join_accounts(self) -> bytes:
        return b"".join(self._account_families())

    def _account_families(self) -> Iterator[bytes]:
        """Each account family, header and every account's samples, one family at a time."""
        ordered = [self._accounts[account][1] for account in sorted(self._accounts)]
        for index, header in enumerate(self._headers):
            yield b"".join([header, *(chunks[index] for chunks in ordered)])

    def _render_process(self) -> bytes:
        # Process metrics read /proc; once a second is plenty for series scraped every 15s+,
        # and keeps a burst of scrapes from paying for it each time.
        if self._process_registry is None:
            return b""
        now = self._monotonic()
        if now - self._process_rendered_at >= 1.0:
            self._process_body = generate_latest(self._process_registry)
            self._process_rendered_at = now
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
