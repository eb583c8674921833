"""The exporter's refresh on an event loop of its own, wired as the service wires it: an API
client, a store and a poller for one simulator URL, without the HTTP server in front."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from exporter.changes import MAX_ACCOUNT_BYTES, MAX_TOTAL_BYTES
from exporter.cloudflare import CloudflareAPI
from exporter.credentials import Secret, TokenAuth
from exporter.exposition import ExpositionStore
from exporter.poller import Poller
from exporter.ratelimit import SlidingWindowLimiter
from tests.support.defaults import api_options
from tests.support.exposition import Samples, sample, samples
from tests.support.simulator import TOKEN

T = TypeVar("T")


class Refresher:
    """`refresh()` runs one refresh; `store` holds what it published. Keyword arguments the
    store and poller do not take go to CloudflareAPI (over tests.support.defaults.api_options)."""

    def __init__(
        self,
        url: str,
        account_ids: Sequence[str] = (),
        *,
        interval: float = 300.0,
        concurrency: int = 4,
        limiter: SlidingWindowLimiter | None = None,
        per_client_limit: int | None = None,
        store_clock: Callable[[], float] = time.time,
        poller_clock: Callable[[], float] = time.time,
        poller_monotonic: Callable[[], float] = time.monotonic,
        change_bytes: int = MAX_ACCOUNT_BYTES,
        change_bytes_total: int = MAX_TOTAL_BYTES,
        **api: Any,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = ExpositionStore(
            discovering=not account_ids, refresh_interval=interval, process_metrics=False,
            per_client=per_client_limit is not None, clock=store_clock,
        )  # fmt: skip
        api.setdefault("backoff_base", 0.001)
        self.api = CloudflareAPI(
            url, TokenAuth(Secret(TOKEN)),
            **api_options(limiter=limiter, concurrency=concurrency,
                          on_request=self.store.count_request,
                          on_pause=self.store.set_paused_until, **api),
        )  # fmt: skip
        self.poller = Poller(
            self.api, self.store, account_ids=account_ids, interval=interval,
            concurrency=concurrency, rate_limit=limiter.limit if limiter else 0,
            per_client_limit=per_client_limit, clock=poller_clock, monotonic=poller_monotonic,
            change_bytes=change_bytes, change_bytes_total=change_bytes_total,
        )  # fmt: skip

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def refresh(self) -> bool:
        return bool(self.run(self.poller.refresh()))

    def samples(self) -> Samples:
        return samples(self.store.render())

    def value(self, name: str, **labels: str) -> float | None:
        return sample(self.store.render(), name, **labels)

    def close(self) -> None:
        if not self.loop.is_closed():
            self.run(self.api.aclose())
            self.loop.close()

    def __enter__(self) -> Refresher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
