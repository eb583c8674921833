"""The background refresh against the simulator: isolation, retention, discovery, budget."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from exporter.model import Account
from exporter.ratelimit import SlidingWindowLimiter
from exporter.refresh_status import ApiFailure
from exporter.simulator import Fault, Simulator, make_account
from tests.support.refresh import Refresher

HARNESSES: list[Refresher] = []


def refresher(url: str, account_ids: tuple[str, ...] | list[str] = (), **options) -> Refresher:
    """A refresher closed after the test."""
    made = Refresher(url, account_ids, **options)
    HARNESSES.append(made)
    return made


@pytest.fixture(autouse=True)
def _close_harnesses():
    yield
    while HARNESSES:
        HARNESSES.pop().close()


def accounts(n: int, clients: int = 20, seed: int = 11):
    rng = random.Random(seed)
    return [make_account(rng, f"Account {i}", clients) for i in range(n)]


def test_a_failing_account_keeps_its_last_good_counts_and_others_are_untouched(serve_simulator):
    good, flaky = accounts(2)
    url = serve_simulator(sim := Simulator([good, flaky]))
    harness = refresher(url)
    assert harness.refresh() is True
    assert harness.value("cloudflare_oauth_clients", account_id=flaky.id) == 20
    first_success = harness.value(
        "cloudflare_oauth_account_last_success_timestamp_seconds", account_id=flaky.id
    )

    flaky.fault = Fault.api_error(403, 10000, "Authentication error")
    flaky.clients = flaky.clients[:5]  # would read 5 if it could
    good.clients = good.clients[:7]
    assert harness.refresh() is False
    assert harness.value("cloudflare_oauth_account_up", account_id=flaky.id) == 0
    assert harness.value("cloudflare_oauth_clients", account_id=flaky.id) == 20
    assert (
        harness.value(
            "cloudflare_oauth_account_last_success_timestamp_seconds", account_id=flaky.id
        )
        == first_success
    )
    assert harness.value("cloudflare_oauth_account_up", account_id=good.id) == 1
    assert harness.value("cloudflare_oauth_clients", account_id=good.id) == 7
    snapshot = harness.store.snapshot(flaky.id)
    assert snapshot is not None
    assert snapshot.last_error == ApiFailure(403, 10000, "Authentication error")
    assert sim.requests[f"/accounts/{flaky.id}/oauth_clients"] == 2  # 1 + 1, never retried

    flaky.fault = None  # recovery
    assert harness.refresh() is True
    assert harness.value("cloudflare_oauth_account_up", account_id=flaky.id) == 1
    assert harness.value("cloudflare_oauth_clients", account_id=flaky.id) == 5
    recovered = harness.store.snapshot(flaky.id)
    assert recovered is not None
    assert recovered.last_error is None


def test_an_account_that_never_succeeded_exports_up_0_and_no_counts(serve_simulator):
    (denied,) = accounts(1)
    denied.fault = Fault.html(502)
    url = serve_simulator(Simulator([denied]))
    harness = refresher(url, [denied.id])
    assert harness.refresh() is False
    found = harness.samples()
    assert found["cloudflare_oauth_account_up"] == {(("account_id", denied.id),): 0.0}
    assert (("account_id", denied.id),) in found[
        "cloudflare_oauth_account_refresh_duration_seconds"
    ]
    assert "cloudflare_oauth_clients" not in found
    assert "cloudflare_oauth_account_last_success_timestamp_seconds" not in found
    assert harness.poller.ready


@pytest.mark.parametrize(
    "fault",
    [Fault.html(200), Fault.not_json(), Fault.success_false(), Fault.missing_client_id(),
     Fault(status=200, body='{"success": true, "result": {}}')],
)  # fmt: skip
def test_malformed_answers_mark_only_that_account_failed(serve_simulator, fault):
    good, bad = accounts(2)
    url = serve_simulator(Simulator([good, bad]))
    harness = refresher(url)
    assert harness.refresh()
    bad.fault = fault
    assert harness.refresh() is False
    assert harness.value("cloudflare_oauth_account_up", account_id=bad.id) == 0
    assert harness.value("cloudflare_oauth_clients", account_id=bad.id) == 20
    assert harness.value("cloudflare_oauth_account_up", account_id=good.id) == 1


def test_vanished_accounts_leave_metrics_at_the_next_refresh(serve_simulator):
    kept, gone = accounts(2)
    url = serve_simulator(sim := Simulator([kept, gone]))
    harness = refresher(url)
    harness.refresh()
    assert harness.value("cloudflare_oauth_account_up", account_id=gone.id) == 1
    del sim.accounts[gone.id]
    harness.refresh()
    body = harness.store.render().decode()
    assert gone.id not in body
    assert kept.id in body
    assert harness.store.snapshot(gone.id) is None


def test_new_accounts_appear_at_the_next_refresh(serve_simulator):
    first, second = accounts(2)
    url = serve_simulator(sim := Simulator([first]))
    harness = refresher(url)
    harness.refresh()
    assert harness.value("cloudflare_oauth_account_up", account_id=second.id) is None
    sim.add(second)
    harness.refresh()
    assert harness.value("cloudflare_oauth_account_up", account_id=second.id) == 1
    assert (
        harness.value(
            "cloudflare_oauth_account_info", account_id=second.id, account_name="Account 1"
        )
        == 1
    )


def test_failed_discovery_keeps_the_known_accounts_and_says_so(serve_simulator):
    (only,) = accounts(1)
    url = serve_simulator(sim := Simulator([only]))
    harness = refresher(url)
    harness.refresh()
    assert harness.value("cloudflare_oauth_discovery_up") == 1
    sim.accounts_fault = Fault.api_error(403, 9109, "Invalid access token")
    assert harness.refresh() is False
    assert harness.value("cloudflare_oauth_discovery_up") == 0
    assert harness.value("cloudflare_oauth_account_up", account_id=only.id) == 1
    assert harness.value("cloudflare_oauth_account_info", account_id=only.id,
                         account_name="Account 0") == 1  # fmt: skip


def test_discovery_that_never_worked_still_gets_ready(serve_simulator):
    url = serve_simulator(sim := Simulator(accounts(2)))
    sim.accounts_fault = Fault.html(503)
    harness = refresher(url)
    assert not harness.poller.ready
    assert harness.refresh() is False
    assert harness.poller.ready
    assert harness.value("cloudflare_oauth_discovery_up") == 0
    assert sim.requests["/accounts"] == 3  # retried like any 5xx


def test_configured_accounts_are_not_discovered(serve_simulator):
    first, second = accounts(2)
    url = serve_simulator(sim := Simulator([first, second]))
    harness = refresher(url, [second.id])
    assert harness.refresh()
    assert sim.requests["/accounts"] == 0
    assert harness.value("cloudflare_oauth_account_up", account_id=first.id) is None
    assert harness.value("cloudflare_oauth_clients", account_id=second.id) == 20
    assert "cloudflare_oauth_account_info" not in harness.samples()  # no name without discovery


def test_api_requests_are_counted_by_endpoint_and_code(serve_simulator):
    ok, broken = accounts(2, clients=60)
    broken.faults.append(Fault.html(503))
    url = serve_simulator(Simulator([ok, broken]))
    harness = refresher(url)
    harness.refresh()
    assert harness.samples()["cloudflare_oauth_api_requests_total"] == {
        (("code", "200"), ("endpoint", "/accounts")): 1.0,
        (("code", "200"), ("endpoint", "/accounts/{account_id}/oauth_clients")): 4.0,
        (("code", "503"), ("endpoint", "/accounts/{account_id}/oauth_clients")): 1.0,
    }


@pytest.mark.slow
def test_refresh_waits_for_budget_with_zero_429s_and_keeps_serving(serve_simulator):
    # 5 accounts x 2 pages + discovery = 11 requests; the simulator allows 4 per 1 s window
    # and, like Cloudflare, blocks for much longer (30 s) once that is exceeded.
    url = serve_simulator(sim := Simulator(accounts(5, clients=60), rate_limit=4,
                                           rate_window=1.0, rate_block=30))  # fmt: skip
    harness = refresher(url, limiter=SlidingWindowLimiter(4, 1.0))  # the same limit as the server
    first = harness.refresh()
    assert first
    assert sim.rate_limited == 0
    before = harness.store.render()
    seen_during: list[bytes] = []

    async def refresh_while_scraping() -> bool:
        refresh = asyncio.create_task(harness.poller.refresh())
        while not refresh.done():
            seen_during.append(harness.store.render())
            await asyncio.sleep(0.1)
        return refresh.result()

    assert harness.run(refresh_while_scraping())
    assert sim.rate_limited == 0
    assert sim.status_counts[429] == 0
    assert len(seen_during) >= 10  # the refresh took several windows...
    # ...and every scrape meanwhile served complete numbers for every account
    for body in seen_during:
        assert body.count(b"cloudflare_oauth_clients{") == 5
    assert before.count(b"cloudflare_oauth_clients{") == 5


def test_an_overrunning_refresh_says_what_it_needs(serve_simulator, caplog):
    url = serve_simulator(Simulator(accounts(3, clients=60)))
    harness = refresher(url, limiter=SlidingWindowLimiter(1000, 300), interval=1.0)
    harness.poller._interval = 0.000001  # any refresh overruns this
    with caplog.at_level(logging.WARNING, logger="exporter.poller"):
        harness.refresh()
    overruns = [r for r in caplog.records if "longer than --refresh.interval" in r.getMessage()]
    assert len(overruns) == 1
    message = overruns[0].getMessage()
    assert "7 requests" in message
    assert "--cloudflare.rate-limit 1000" in message
    assert "shard" in message


def test_a_bug_in_one_account_does_not_stop_the_refresh(serve_simulator, monkeypatch, caplog):
    good, cursed = accounts(2)
    url = serve_simulator(Simulator([good, cursed]))
    harness = refresher(url)
    original = harness.api.list_oauth_clients

    async def listing(account_id: str, consume):
        if account_id == cursed.id:
            raise RuntimeError("a bug")
        return await original(account_id, consume)

    harness.api.list_oauth_clients = listing  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        assert harness.refresh() is False
    assert harness.value("cloudflare_oauth_account_up", account_id=cursed.id) == 0
    assert harness.value("cloudflare_oauth_account_up", account_id=good.id) == 1
    assert any("crashed" in r.getMessage() for r in caplog.records)


def test_per_client_series_are_capped_with_risky_clients_first(serve_simulator, caplog):
    (only,) = accounts(1, clients=10)
    for client in only.clients:
        client.update(visibility="private", response_types=["code"])
        client.pop("promoted_at", None)
    only.clients[7]["redirect_uris"] = ["http://insecure.example/cb"]
    url = serve_simulator(Simulator([only]))
    harness = refresher(url, per_client_limit=3)
    with caplog.at_level(logging.WARNING, logger="exporter.poller"):
        harness.refresh()
    found = harness.samples()
    kept = {dict(labels)["client_id"] for labels in found["cloudflare_oauth_client_info"]}
    risky = only.clients[7]["client_id"]
    others = sorted(c["client_id"] for c in only.clients if c["client_id"] != risky)
    assert kept == {risky, *others[:2]}
    assert found["cloudflare_oauth_client_finding"] == {
        (("account_id", only.id), ("client_id", risky), ("finding", "http_redirect_uri")): 1.0
    }
    # 7 clients dropped: info + rotated + created + updated each (private: no promoted time)
    assert found["cloudflare_oauth_per_client_series_dropped"] == {
        (("account_id", only.id),): 7.0 * 4
    }
    assert harness.value("cloudflare_oauth_clients", account_id=only.id) == 10  # counts: all
    assert any("per-client-limit" in r.getMessage() for r in caplog.records)


def test_clients_that_disappear_leave_per_client_metrics(serve_simulator):
    (only,) = accounts(1, clients=4)
    url = serve_simulator(Simulator([only]))
    harness = refresher(url, per_client_limit=100)
    harness.refresh()
    gone = only.clients.pop()["client_id"]
    assert gone.encode() in harness.store.render()
    harness.refresh()
    body = harness.store.render()
    assert gone.encode() not in body
    assert len(harness.samples()["cloudflare_oauth_client_info"]) == 3
    assert harness.samples()["cloudflare_oauth_per_client_series_dropped"] == {
        (("account_id", only.id),): 0.0
    }


def test_a_failed_account_keeps_its_last_per_client_series(serve_simulator):
    (only,) = accounts(1, clients=4)
    url = serve_simulator(Simulator([only]))
    harness = refresher(url, per_client_limit=100)
    harness.refresh()
    only.fault = Fault.html(502)
    harness.refresh()
    assert harness.value("cloudflare_oauth_account_up", account_id=only.id) == 0
    assert len(harness.samples()["cloudflare_oauth_client_info"]) == 4


def test_a_crash_in_discovery_is_a_failed_discovery_not_a_dead_loop(serve_simulator, caplog):
    (only,) = accounts(1)
    url = serve_simulator(Simulator([only]))
    harness = refresher(url)
    harness.refresh()

    async def explode() -> list[Account]:
        raise RuntimeError("a bug in discovery")

    harness.api.list_accounts = explode  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="exporter.poller"):
        assert harness.refresh() is False
    assert harness.value("cloudflare_oauth_discovery_up") == 0
    assert harness.value("cloudflare_oauth_account_up", account_id=only.id) == 1  # still read
    assert any("discovery crashed" in r.getMessage() for r in caplog.records)


def test_the_refresh_loop_survives_a_crashing_refresh(serve_simulator, caplog):
    url = serve_simulator(Simulator(accounts(1)))
    harness = refresher(url)
    calls: list[int] = []

    async def refresh() -> bool:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return True

    async def sleep(_: float) -> None:
        if len(calls) >= 3:
            raise asyncio.CancelledError  # stop the endless loop after three refreshes

    harness.poller.refresh = refresh  # type: ignore[method-assign]
    harness.poller._sleep = sleep
    with (
        caplog.at_level(logging.ERROR, logger="exporter.poller"),
        pytest.raises(asyncio.CancelledError),
    ):
        harness.run(harness.poller.run())
    assert calls == [0, 1, 2]
    assert any("refresh crashed" in r.getMessage() for r in caplog.records)


def test_the_change_detection_total_holds_at_any_concurrency_and_does_not_flap(
    serve_simulator, monkeypatch, caplog
):
    from exporter import changes

    # Three accounts whose baselines fit two at a time, refreshed all at once: the total must
    # hold while they are built, and the same two stay followed, refresh after refresh.
    url = serve_simulator(Simulator(accounts(3, clients=1000)))
    total = 180_000  # a baseline here takes some 70,000
    harness = refresher(url, concurrency=3, change_bytes=200_000, change_bytes_total=total)
    building: dict[changes.ChangeDetector, int] = {}  # -> the bytes of its previous baseline
    peak = 0
    made, pack, finish = (changes.ChangeDetector.__init__, changes.ChangeDetector._pack,
                          changes.ChangeDetector.finish)  # fmt: skip

    def making(detector: changes.ChangeDetector, previous, *args, **kwargs) -> None:
        made(detector, previous, *args, **kwargs)
        building[detector] = previous.size() if previous is not None else 0

    def packing(detector: changes.ChangeDetector) -> None:
        """At every pack: the baselines kept, and what those being built add to them."""
        nonlocal peak
        pack(detector)
        kept = sum(s.baseline.size() for s in harness.store.snapshots() if s.baseline)
        growth = sum(max(0, d._packed_bytes - old) for d, old in building.items()
                     if not d.overflowed)  # fmt: skip
        peak = max(peak, kept + growth)

    def finishing(detector: changes.ChangeDetector):
        done = finish(detector)
        del building[detector]
        return done

    monkeypatch.setattr(changes.ChangeDetector, "__init__", making)
    monkeypatch.setattr(changes.ChangeDetector, "_pack", packing)
    monkeypatch.setattr(changes.ChangeDetector, "finish", finishing)
    followed: list[frozenset[str]] = []
    with caplog.at_level(logging.WARNING, logger="exporter.poller"):
        for _ in range(5):
            assert harness.refresh()
            found = harness.samples()["cloudflare_oauth_account_changes_followed"]
            followed.append(frozenset(dict(k)["account_id"] for k, v in found.items() if v))
            assert sum(s.baseline.size() for s in harness.store.snapshots() if s.baseline) <= total
    assert 0 < peak <= total
    assert len(followed[0]) == 2  # two fit; the third is not followed...
    assert all(ids == followed[0] for ids in followed)  # ...and that does not come and go
    stopped = [r for r in caplog.records if r.getMessage().startswith("change detection is off")]
    assert len(stopped) == 1  # said once


def test_change_detection_reads_what_it_keeps_from_the_store(serve_simulator, caplog):
    # The store's snapshots are the one record of the baselines kept and of the accounts not
    # followed: a poller taking over a store counts the baselines already there, and does not
    # say again that an account is not followed.
    from exporter.poller import Poller

    url = serve_simulator(Simulator(accounts(3, clients=1000)))
    harness = refresher(url, concurrency=3, change_bytes=200_000, change_bytes_total=180_000)
    with caplog.at_level(logging.WARNING, logger="exporter.poller"):
        assert harness.refresh()
    assert [r for r in caplog.records if "change detection is off" in r.getMessage()]
    before = harness.samples()["cloudflare_oauth_account_changes_followed"]
    harness.poller = Poller(harness.api, harness.store, account_ids=(), interval=300.0,
                            concurrency=3, rate_limit=0, change_bytes=200_000,
                            change_bytes_total=180_000)  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="exporter.poller"):
        assert harness.refresh()
    assert harness.samples()["cloudflare_oauth_account_changes_followed"] == before
    assert sum(s.baseline.size() for s in harness.store.snapshots() if s.baseline) <= 180_000
    assert not [r for r in caplog.records if "change detection is off" in r.getMessage()]
