"""The running exporter: its parts wired once from Settings, and their start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from exporter.cloudflare import CloudflareAPI
from exporter.exposition import ExpositionStore
from exporter.poller import Poller
from exporter.ratelimit import SlidingWindowLimiter
from exporter.settings import Settings
from exporter.sharding import Shard
from exporter.web import create_app

log = logging.getLogger(__name__)


class ExporterService:
    def __init__(self, settings: Settings, *, process_metrics: bool = True) -> None:
        if settings.auth is None:
            raise ValueError("settings without credentials")
        self.settings = settings
        self.store = ExpositionStore(
            discovering=settings.discovers_accounts,
            refresh_interval=settings.refresh_interval,
            shard=settings.shard,
            total_shards=settings.total_shards,
            per_client=settings.per_client,
            keep=settings.keeps,
            process_metrics=process_metrics,
        )
        self.api = CloudflareAPI(
            settings.api_url,
            settings.auth,
            timeout=settings.timeout,
            concurrency=settings.concurrency,
            page_size=settings.page_size,
            max_response_size=settings.max_response_size,
            max_clients=settings.max_clients_per_account,
            limiter=SlidingWindowLimiter(settings.rate_limit),
            on_request=self.store.count_request,
            on_pause=self.store.set_paused_until,
        )
        self.poller = Poller(
            self.api,
            self.store,
            account_ids=settings.account_ids,
            interval=settings.refresh_interval,
            concurrency=settings.concurrency,
            rate_limit=settings.rate_limit,
            shard=Shard(settings.shard, settings.total_shards),
            per_client_limit=settings.per_client_limit if settings.per_client else None,
        )
        self._task: asyncio.Task[None] | None = None
        self.app = create_app(
            store=self.store,
            health=self,
            telemetry_path=settings.telemetry_path,
            per_client=settings.per_client,
            basic_auth=settings.web_config.basic_auth,
            lifespan=self.lifespan,
        )

    @property
    def alive(self) -> bool:
        """False once the refresh task has died; the refresh catches API errors, so only a bug."""
        return self._task is None or not self._task.done()

    @property
    def ready(self) -> bool:
        return self.poller.ready

    def start(self) -> None:
        self._task = asyncio.create_task(self.poller.run(), name="refresh")
        self._task.add_done_callback(self._on_refresh_done)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.api.aclose()

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        self.start()
        try:
            yield
        finally:
            await self.stop()

    @staticmethod
    def _on_refresh_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the background refresh stopped", exc_info=task.exception())
