"""What the exporter knows about one account after its latest refresh, as one immutable value."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.aggregation import ClientCounts
from exporter.changes import Baseline, ChangeTotals
from exporter.refresh_status import ApiFailure
from exporter.selection import ClientRecord


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """Replaced, never mutated, after every refresh of the account.

    `counts` and `last_success` come from the last refresh that succeeded, so a failing account
    keeps its last good numbers while `up` says they are stale.
    """

    account_id: str
    account_name: str | None
    up: bool
    counts: ClientCounts | None
    last_success: float | None
    refresh_duration: float
    last_error: ApiFailure | None = None
    # With --metrics.per-client: the clients that get series (capped; those holding findings
    # first, then by client id), and the series dropped.
    clients: tuple[ClientRecord, ...] = ()
    dropped_client_series: int = 0
    # Change detection: the clients' fingerprints after the last good refresh (compared with
    # the next one), and the changes counted since the exporter started; None until then.
    baseline: Baseline | None = None
    changes: ChangeTotals | None = None

    def failed(self, error: ApiFailure, duration: float, name: str | None) -> AccountSnapshot:
        """The next snapshot after a failed refresh: the last good numbers, marked down."""
        return AccountSnapshot(
            account_id=self.account_id,
            account_name=name if name is not None else self.account_name,
            up=False,
            counts=self.counts,
            last_success=self.last_success,
            refresh_duration=duration,
            last_error=error,
            clients=self.clients,
            dropped_client_series=self.dropped_client_series,
            baseline=self.baseline,
            changes=self.changes,
        )
