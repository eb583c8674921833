"""The background refresh: discover accounts, count each account's clients, publish snapshots.

Runs on its own schedule, never on the scrape path. One account's failure never touches another:
it keeps its last good counts and is marked down.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence

from exporter.aggregation import ClientCounter
from exporter.changes import (
    CHANGES,
    MAX_ACCOUNT_BYTES,
    MAX_TOTAL_BYTES,
    NO_CHANGES,
    ByteBudget,
    ChangeDetector,
    Detected,
)
from exporter.changes import MAX_CLIENTS as CHANGE_LIMIT
from exporter.cloudflare import ApiError, CloudflareAPI
from exporter.durations import format_duration
from exporter.exposition import ExpositionStore
from exporter.findings import client_findings
from exporter.model import Account, OAuthClient
from exporter.ratelimit import RATE_WINDOW, Sleep
from exporter.refresh_status import INTERNAL_ERROR, ApiFailure, RefreshStatus
from exporter.selection import ClientSelection, client_record
from exporter.sharding import Shard
from exporter.snapshot import AccountSnapshot

log = logging.getLogger(__name__)
audit = logging.getLogger("exporter.audit")  # one line per OAuth client change: filter on it
_LARGE_COMPARISON = 2000  # changed clients past which they are compared on a thread


class Poller:
    def __init__(
        self,
        api: CloudflareAPI,
        store: ExpositionStore,
        *,
        account_ids: Sequence[str],
        interval: float,
        concurrency: int,
        rate_limit: int,
        shard: Shard | None = None,
        per_client_limit: int | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        change_bytes: int = MAX_ACCOUNT_BYTES,
        change_bytes_total: int = MAX_TOTAL_BYTES,
    ) -> None:
        self._api = api
        self._store = store
        self._discovering = not account_ids
        self._shard = shard or Shard()
        self._accounts: list[Account] = [
            Account(account_id) for account_id in account_ids if self._shard.owns(account_id)
        ]
        self._interval = interval
        self._concurrency = concurrency
        self._rate_limit = rate_limit
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._per_client_limit = per_client_limit
        # Bytes of fingerprints change detection may keep for one account, and for all.
        self._change_bytes = change_bytes
        self._change_bytes_total = change_bytes_total
        self._discovery_failure: ApiFailure | None = None
        self.ready = False

    async def run(self) -> None:
        """Refresh every interval until cancelled; an overrunning refresh is followed at once."""
        while True:
            started = self._monotonic()
            try:
                await self.refresh()
            except Exception:
                # A bug must cost one refresh, not every later one: the numbers go stale (and
                # alerts say so) but the next interval tries again.
                log.exception("refresh crashed; trying again next interval")
            elapsed = self._monotonic() - started
            await self._sleep(max(0.0, self._interval - elapsed))

    async def refresh(self) -> bool:
        """One full refresh; True if discovery (if any) and every account succeeded."""
        started = self._monotonic()
        requests_before = self._api.requests_sent
        ok = await self._discover() if self._discovering else True

        known = {account.id for account in self._accounts}
        self._store.retain(known)
        # Shared by this refresh's accounts as they build their baselines, however many at once;
        # it starts with the baselines the store keeps.
        kept = sum(s.baseline.size() for s in self._store.snapshots() if s.baseline is not None)
        budget = ByteBudget(self._change_bytes_total, kept)

        pending = deque(self._accounts)
        failures = 0

        async def worker() -> None:
            nonlocal failures
            while pending:
                if not await self._refresh_account(pending.popleft(), budget):
                    failures += 1

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self._concurrency, len(pending))):
                group.create_task(worker())

        self.ready = True
        elapsed = self._monotonic() - started
        requests = self._api.requests_sent - requests_before
        fields: dict[str, object] = {
            "accounts": len(self._accounts),
            "failed": failures + (not ok),  # a failed discovery counts
            "requests": requests,
            "duration": format_duration(elapsed),
        }
        if self._discovering:
            fields["discovery"] = "ok" if ok else "failed"
        log.info("refresh finished", extra=fields)
        if elapsed > self._interval:
            self._warn_overrun(elapsed, requests)
        self._publish_status(elapsed, discovered=ok)
        return ok and failures == 0

    def _publish_status(self, elapsed: float, *, discovered: bool) -> None:
        """The exporter-wide outcome, for the status page: run() sleeps what is left of the
        interval, so that is when the next refresh starts."""
        finished = self._clock()
        self._store.publish_refresh(
            RefreshStatus(
                finished_at=finished,
                next_at=finished + max(0.0, self._interval - elapsed),
                duration=elapsed,
                discovering=self._discovering,
                discovery_failure=None if discovered else self._discovery_failure,
            )
        )

    async def _discover(self) -> bool:
        try:
            accounts = await self._api.list_accounts()
        except Exception as error:
            self._store.set_discovery_up(False)
            if isinstance(error, ApiError):
                self._discovery_failure = error.failure
                log.warning(
                    "account discovery failed; keeping the accounts found before",
                    extra={"err": str(error), "accounts": len(self._accounts)},
                )
            else:
                self._discovery_failure = INTERNAL_ERROR
                log.exception("account discovery crashed; keeping the accounts found before")
            return False
        self._store.set_discovery_up(True)
        owned = [account for account in accounts if self._shard.owns(account.id)]
        if {a.id for a in owned} != {a.id for a in self._accounts}:
            fields: dict[str, object] = {"accounts": len(owned)}
            if self._shard.total > 1:
                fields.update(listed=len(accounts), shard=self._shard.index)
            log.info("accounts discovered", extra=fields)
        self._accounts = owned
        return True

    async def _refresh_account(self, account: Account, budget: ByteBudget) -> bool:
        started = self._monotonic()
        previous = self._store.snapshot(account.id)
        counter = ClientCounter()
        detector = ChangeDetector(
            previous.baseline if previous is not None else None,
            max_bytes=self._change_bytes,
            budget=budget,
        )
        selection = (
            ClientSelection(self._per_client_limit, self._store.per_client_series)
            if self._per_client_limit is not None
            else None
        )
        error: ApiFailure | None = None

        def consume(batch: list[OAuthClient]) -> None:
            for client in batch:
                findings = client_findings(client)
                counter.add(client, findings)
                detector.add(client, findings)
                if selection is not None:
                    selection.add(client_record(client, findings))

        try:
            await self._api.list_oauth_clients(account.id, consume)
        except ApiError as api_error:
            error = api_error.failure
            log.warning(
                "account refresh failed; keeping its last good counts",
                extra={"account_id": account.id, "err": str(error)},
            )
        except Exception:
            # A bug must cost one account one refresh, not the whole exporter.
            error = INTERNAL_ERROR
            log.exception("account refresh crashed", extra={"account_id": account.id})
        duration = self._monotonic() - started
        if error is not None:
            detector.cancel()  # what it built is let go; the previous baseline, if any, stays

        if error is None:
            kept = selection.kept() if selection is not None else ()
            dropped = selection.dropped if selection is not None else 0
            if detector.pending_work() > _LARGE_COMPARISON:
                # Many changed clients: compared on a thread, so scrapes are not held up.
                baseline, detected = await asyncio.to_thread(detector.finish)
            else:
                baseline, detected = detector.finish()
            # Said once each time it stops: a good refresh that kept no baseline means it had.
            was_off = (
                previous is not None and previous.counts is not None and previous.baseline is None
            )
            if detector.overflowed and not was_off:
                log.warning(
                    "change detection is off for this account: it has more clients than it "
                    "follows, or they would take more memory than change detection may use; "
                    "counts are exported as usual, cloudflare_oauth_account_changes_followed is 0",
                    extra={"account_id": account.id, "followed": CHANGE_LIMIT},
                )
            # The first good refresh is the baseline: what came before it is unknown, not new
            # (a detector with no previous baseline, or that overflowed, detects nothing).
            totals = (previous.changes if previous is not None else None) or NO_CHANGES
            if detected.total:
                totals = totals.plus(detected)
                self._audit(account, detected)
            snapshot = AccountSnapshot(
                account_id=account.id,
                account_name=account.name,
                up=True,
                counts=counter.result(),
                last_success=self._clock(),
                refresh_duration=duration,
                clients=kept,
                dropped_client_series=dropped,
                baseline=baseline,
                changes=totals,
            )
            folded = snapshot.counts.folded if snapshot.counts is not None else ()
            if folded:
                log.warning(
                    "undocumented values beyond the first few are counted as 'other'",
                    extra={"account_id": account.id,
                           "folded": ",".join(f"{label}={n}" for label, n in folded)},
                )  # fmt: skip
            if dropped:
                log.warning(
                    "per-client series capped by --metrics.per-client-limit",
                    extra={"account_id": account.id, "clients": counter.total,
                           "kept": len(kept), "dropped_series": dropped},
                )  # fmt: skip
        elif previous is not None:
            snapshot = previous.failed(error, duration, account.name)
        else:
            snapshot = AccountSnapshot(
                account_id=account.id,
                account_name=account.name,
                up=False,
                counts=None,
                last_success=None,
                refresh_duration=duration,
                last_error=error,
            )
        self._store.put(snapshot)
        return error is None

    def _audit(self, account: Account, detected: Detected) -> None:
        """One line per change (the first MAX_EVENTS of a refresh), then one for the rest."""
        for change in detected.events:
            audit.info(
                "oauth client changed",
                extra={"account_id": account.id, "account_name": account.name or "",
                       "client_id": change.client_id, "client_name": change.client_name,
                       "change": change.change, "fields": ",".join(change.fields),
                       **dict(change.details)},
            )  # fmt: skip
        if detected.total > len(detected.events):
            audit.info(
                "oauth client changes past the first few of a refresh are counted, not listed",
                extra={"account_id": account.id, "account_name": account.name or "",
                       "listed": len(detected.events),
                       "not_listed": detected.total - len(detected.events),
                       **{f"clients_{change}": detected.by_change[change] for change in CHANGES}},
            )  # fmt: skip
        self._store.record_changes(self._clock(), account.id, account.name, detected.events,
                                   not_listed=detected.total - len(detected.events))  # fmt: skip

    def _warn_overrun(self, elapsed: float, requests: int) -> None:
        advice = "raise --refresh.interval or shard the accounts across replicas"
        fields: dict[str, object] = {
            "duration": format_duration(elapsed),
            "interval": format_duration(self._interval),
            "requests": requests,
        }
        if self._rate_limit:
            needed = math.ceil(requests / self._rate_limit * RATE_WINDOW)
            fields["rate_limit_per_5m"] = self._rate_limit
            fields["interval_needed"] = format_duration(needed)
            advice = (
                f"{requests} requests need at least {format_duration(needed)} at "
                f"--cloudflare.rate-limit {self._rate_limit}; {advice}"
            )
        log.warning(f"refresh took longer than --refresh.interval: {advice}", extra=fields)
