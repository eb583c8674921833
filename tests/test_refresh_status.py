"""What a refresh publishes exporter-wide: when it ended, when the next starts, and a failed
discovery's code and message, which the log line counts too."""

from __future__ import annotations

import logging
import random

import pytest

from exporter.exposition import ExpositionStore
from exporter.refresh_status import ApiFailure
from exporter.simulator import Fault, Simulator, make_account
from tests.support.clock import FakeClock
from tests.support.refresh import Refresher

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def refresh(url: str, account_ids: tuple[str, ...] = ()) -> tuple[ExpositionStore, bool]:
    with Refresher(
        url, account_ids, concurrency=2, poller_clock=FakeClock(NOW),
        poller_monotonic=FakeClock(50.0),
    ) as refresher:  # fmt: skip
        return refresher.store, refresher.refresh()


def finished_line(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    (record,) = [r for r in caplog.records if r.getMessage() == "refresh finished"]
    return record


def test_a_failed_discovery_is_published_with_its_code_and_counted_in_the_log(
    serve_simulator, caplog
):
    simulator = Simulator([make_account(random.Random(1), "Acme", 3)])
    simulator.accounts_fault = Fault.api_error(403, 9109, "Invalid access token")
    with caplog.at_level(logging.INFO, logger="exporter.poller"):
        store, ok = refresh(serve_simulator(simulator))
    assert ok is False
    status = store.refresh_status
    assert status is not None
    assert status.discovering
    assert status.discovery_failure == ApiFailure(403, 9109, "Invalid access token")
    assert str(status.discovery_failure) == "HTTP 403 code 9109: Invalid access token"
    hint = status.discovery_failure.hint
    assert hint is not None
    assert "invalid, expired or revoked" in hint
    line = finished_line(caplog)
    assert (line.accounts, line.failed, line.discovery) == (0, 1, "failed")  # type: ignore[attr-defined]


def test_a_refresh_publishes_when_it_ended_and_when_the_next_starts(serve_simulator, caplog):
    url = serve_simulator(Simulator([make_account(random.Random(1), "Acme", 3)]))
    with caplog.at_level(logging.INFO, logger="exporter.poller"):
        store, ok = refresh(url)
    assert ok is True
    assert store.refreshes == 1
    status = store.refresh_status
    assert status is not None
    assert status.discovery_failure is None
    assert (status.finished_at, status.next_at, status.duration) == (NOW, NOW + 300, 0.0)
    line = finished_line(caplog)
    assert (line.accounts, line.failed, line.discovery) == (1, 0, "ok")  # type: ignore[attr-defined]


def test_without_discovery_there_is_no_discovery_status(serve_simulator, caplog):
    account = make_account(random.Random(1), "Acme", 3)
    with caplog.at_level(logging.INFO, logger="exporter.poller"):
        store, _ = refresh(serve_simulator(Simulator([account])), (account.id,))
    status = store.refresh_status
    assert status is not None
    assert not status.discovering
    assert not hasattr(finished_line(caplog), "discovery")


@pytest.mark.parametrize(
    ("failure", "meaning"),
    [
        (ApiFailure(403, 10000, "Authentication error"), "lack a permission"),
        (ApiFailure(400, 9103, "Unknown X-Auth-Key or X-Auth-Email"), "Global API key"),
        (ApiFailure(429, None, "Too Many Requests"), "rate-limited"),
        (ApiFailure(500, 7000, "No route for that URI"), None),
        (ApiFailure(None, None, "connection refused"), None),
    ],
)
def test_a_failure_says_what_its_code_usually_means(failure, meaning):
    assert failure.hint == meaning or (meaning is not None and meaning in (failure.hint or ""))
