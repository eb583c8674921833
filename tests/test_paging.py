"""Paging whatever the endpoint does: exact counts and the fewest requests, for every behaviour.

The pager's rules are checked as a table; then the API client walks every paging mode of the
simulator over real HTTP, and must find exactly the account's clients at the documented cost.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from typing import Any

import httpx
import pytest

from exporter.cloudflare import ApiError, CloudflareAPI, ListingSummary
from exporter.credentials import Secret, TokenAuth
from exporter.model import OAuthClient, ResultInfo
from exporter.paging import EndpointHabits, PageFacts, Pager
from exporter.simulator import SimAccount, Simulator, make_account
from exporter.simulator.data import Paging
from tests.support.defaults import api_options
from tests.support.simulator import TOKEN

CLIENTS = "/accounts/{account_id}/oauth_clients"


def info(**fields: Any) -> ResultInfo:
    return ResultInfo(**fields)


@pytest.mark.parametrize(
    ("facts", "habits", "expected"),
    [
        (PageFacts(0, 0, 0, info(total_count=5)), EndpointHabits(), "empty page"),
        (PageFacts(20, 0, 20, info(total_count=2000)), EndpointHabits(), "no new ids"),
        (PageFacts(20, 20, 20, info(total_count=20)), EndpointHabits(), "total_count reached"),
        # never stop on a short page while total_count says more remain (a fixed page size
        # while result_info echoes our per_page)
        (PageFacts(20, 20, 20, info(per_page=50, total_count=60)), EndpointHabits(), None),
        (PageFacts(20, 20, 20, info(per_page=50)), EndpointHabits(), "short page"),
        (PageFacts(50, 50, 50, info(per_page=50)), EndpointHabits(), None),
        (PageFacts(7, 7, 7, info(count=7)), EndpointHabits(), "short page"),  # our per_page 50
        (PageFacts(20, 20, 20, info(cursor="abc")), EndpointHabits(), None),
        (PageFacts(20, 20, 20, info(cursor="", total_count=99)), EndpointHabits(), "last cursor"),
        # no result_info: a probe while the endpoint is unknown, then what it has shown
        (PageFacts(7, 7, 7, None), EndpointHabits(), None),
        (PageFacts(7, 7, 7, None), EndpointHabits(ignores_paging=True), "no result_info"),
        (PageFacts(7, 7, 7, None), EndpointHabits(takes_page=False), "no result_info"),
        (PageFacts(7, 7, 7, None), EndpointHabits(ignores_paging=False), None),
        (PageFacts(7, 7, 7, None), EndpointHabits(quiet_page_size=20), "short page"),
        (PageFacts(20, 20, 20, None), EndpointHabits(quiet_page_size=20), None),
        # an endpoint known to answer 400 to page=N: what one answer gave is all
        (
            PageFacts(30, 30, 30, info(total_count=2000)),
            EndpointHabits(takes_page=False),
            "page refused",
        ),
        (
            PageFacts(30, 30, 30, info(total_count=30)),
            EndpointHabits(takes_page=False),
            "total_count reached",
        ),
    ],
)
def test_the_first_answer_decides_the_next_step(facts, habits, expected):
    pager = Pager(habits, page_size=50)
    assert pager.advance(facts) == expected
    if expected is None:
        assert pager.query() in (
            {"page": "2", "per_page": "50"},
            {"cursor": "abc", "per_page": "50"},
        )


def test_queries_follow_what_the_endpoint_takes():
    habits = EndpointHabits()
    pager = Pager(habits, page_size=50)
    assert pager.query() == {"page": "1", "per_page": "50"}
    habits.takes_per_page = False
    assert Pager(habits, 50).query() == {}  # spec-literal: no parameters at all
    pager = Pager(habits, 50)
    pager.advance(PageFacts(20, 20, 20, info(total_count=45)))
    assert pager.query() == {"page": "2"}
    pager.advance(PageFacts(20, 20, 40, info(cursor="next")))
    assert pager.query() == {"cursor": "next"}


def test_a_probe_that_repeats_the_first_page_teaches_that_the_endpoint_ignores_paging():
    habits = EndpointHabits()
    pager = Pager(habits, 50)
    assert pager.advance(PageFacts(7, 7, 7, None)) is None
    assert pager.probing
    assert pager.advance(PageFacts(7, 0, 7, None)) == "no new ids"
    assert habits.ignores_paging is True


def test_a_probe_that_brings_new_ids_teaches_the_page_size_of_a_quiet_pager():
    habits = EndpointHabits()
    pager = Pager(habits, 50)
    assert pager.advance(PageFacts(20, 20, 20, None)) is None
    assert pager.advance(PageFacts(20, 20, 40, None)) is None
    assert (habits.ignores_paging, habits.quiet_page_size) == (False, 20)
    assert pager.advance(PageFacts(3, 3, 43, None)) == "short page"


# --- every paging mode of the simulator, over HTTP -------------------------------------------


def list_all(url: str, accounts, **options) -> list[tuple[set[str], ListingSummary]]:
    """(client ids found, summary) per account, listed one after another by one client."""

    async def scenario():
        client = CloudflareAPI(url, TokenAuth(Secret(TOKEN)), **api_options(**options))
        found = []
        try:
            for account in accounts:
                ids: set[str] = set()

                def consume(batch: list[OAuthClient], ids: set[str] = ids) -> None:
                    assert not ids & {c.client_id for c in batch}, "a client handed over twice"
                    ids.update(c.client_id for c in batch)

                found.append((ids, await client.list_oauth_clients(account.id, consume)))
        finally:
            await client.aclose()
        return found

    return asyncio.run(scenario())


def ideal(mode: Paging, n: int, page_size: int, first: bool) -> int:
    """The fewest requests each behaviour allows (see the README's paging section)."""
    fixed = 20
    if mode in ("pages",):
        return max(1, math.ceil(n / page_size))
    if mode in ("spec", "ignore"):
        return 1
    if mode == "single":
        return 1 if (n == 0 or not first) else 2  # one probe per process teaches it
    if mode == "strict":
        return 2 if first else 1  # one 400 per process teaches it
    if mode in ("fixed", "fixed_echo"):
        return max(1, math.ceil(n / fixed))
    if mode == "fixed_bare":  # nothing says the last full page is the last: one more, or 2
        return 1 if n == 0 else max(2, math.ceil(n / fixed) + (n % fixed == 0))
    if mode == "cursor":
        return max(1, math.ceil(n / page_size))
    if mode == "max_per_page":  # refuses per_page 50: pages of its default 20 after one 400
        return max(1, math.ceil(n / fixed)) + (1 if first else 0)
    raise AssertionError(mode)


MODES: tuple[Paging, ...] = (
    "pages", "spec", "ignore", "single", "fixed", "fixed_echo", "fixed_bare", "cursor", "strict",
    "max_per_page",
)  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", [0, 7, 20, 50, 51, 120])
def test_every_paging_behaviour_gives_exact_counts_at_the_fewest_requests(serve_simulator, mode, n):
    rng = random.Random(n)
    accounts = [make_account(rng, f"Account {i}", n, paging=mode) for i in range(3)]
    url = serve_simulator(sim := Simulator(accounts))
    found = list_all(url, accounts)
    for index, (account, (ids, summary)) in enumerate(zip(accounts, found, strict=True)):
        assert ids == {c["client_id"] for c in account.clients}
        assert summary.distinct == n
        requests = sim.requests[f"/accounts/{account.id}/oauth_clients"]
        assert requests == summary.requests == ideal(mode, n, 50, first=index == 0), (
            index,
            summary,
        )


def test_an_overstated_total_count_costs_at_most_one_more_request(serve_simulator):
    accounts = [make_account(random.Random(1), "Globex", 3, paging="ignore", reported_total=2000)]
    url = serve_simulator(sim := Simulator(accounts))
    ((ids, summary),) = list_all(url, accounts)
    assert len(ids) == 3
    assert summary.stopped_by == "no new ids"
    assert sim.requests[f"/accounts/{accounts[0].id}/oauth_clients"] == 2


def test_the_400_fallback_is_learned_once_per_endpoint_and_said_once(serve_simulator, caplog):
    rng = random.Random(4)
    accounts = [make_account(rng, f"A{i}", 30, paging="strict") for i in range(3)]
    url = serve_simulator(sim := Simulator(accounts))
    with caplog.at_level(logging.INFO, logger="exporter.cloudflare"):
        found = list_all(url, accounts)
    assert [len(ids) for ids, _ in found] == [30, 30, 30]
    assert [sim.requests[f"/accounts/{a.id}/oauth_clients"] for a in accounts] == [2, 1, 1]
    assert sim.status_counts[400] == 1
    learned = [r for r in caplog.records if r.getMessage().startswith("learned how an endpoint")]
    assert len(learned) == 1
    assert learned[0].endpoint == CLIENTS


def test_a_400_to_the_plain_request_stays_an_account_error(serve_simulator):
    from exporter.simulator import Fault

    account = make_account(random.Random(2), "Denied", 5)
    account.fault = Fault.api_error(400, 6003, "Invalid request headers")
    url = serve_simulator(sim := Simulator([account]))
    with pytest.raises(ApiError) as raised:
        list_all(url, [account])
    assert (raised.value.status, raised.value.code) == (400, 6003)
    assert sim.requests[f"/accounts/{account.id}/oauth_clients"] == 2  # with, then without


def test_fewer_clients_than_total_count_is_said_with_the_rule_and_both_numbers(
    serve_simulator, caplog
):
    account = make_account(random.Random(3), "Globex", 3, paging="ignore", reported_total=2000)
    url = serve_simulator(Simulator([account]))
    with caplog.at_level(logging.INFO, logger="exporter.cloudflare"):
        list_all(url, [account])
    [record] = [r for r in caplog.records if "fewer distinct" in r.getMessage()]
    assert record.levelname == "INFO"
    assert (record.stopped_by, record.distinct, record.total_count) == (
        "no new ids", 3, 2000,
    )  # fmt: skip


def test_a_complete_listing_says_nothing(serve_simulator, caplog):
    account = make_account(random.Random(3), "Acme", 120)
    url = serve_simulator(Simulator([account]))
    with caplog.at_level(logging.INFO, logger="exporter.cloudflare"):
        list_all(url, [account])
    assert not [r for r in caplog.records if "fewer distinct" in r.getMessage()]


def test_repeats_within_and_across_pages_count_once(serve_simulator):
    account = make_account(random.Random(6), "Dupes", 40, paging="fixed")
    account.clients = [*account.clients, *account.clients[:15]]  # pages 3 repeats page 1
    url = serve_simulator(Simulator([account]))
    ((ids, summary),) = list_all(url, [account])
    assert len(ids) == summary.distinct == 40


def test_a_client_with_an_empty_id_is_still_a_client(serve_simulator):
    account = make_account(random.Random(7), "Odd", 3)
    account.clients[0]["client_id"] = ""
    url = serve_simulator(Simulator([account]))
    ((ids, summary),) = list_all(url, [account])
    assert "" in ids
    assert summary.distinct == 3


@pytest.mark.parametrize("mode", MODES)
def test_every_paging_behaviour_exports_exact_counts_with_up_1(serve_simulator, mode):
    """The same behaviours through the refresh and the exposition, as a user sees them."""
    from tests.support.exposition import sample
    from tests.support.refresh import Refresher

    rng = random.Random(len(mode))
    accounts = [make_account(rng, f"Account {n}", n, paging=mode) for n in (0, 33, 120)]
    url = serve_simulator(Simulator(accounts))

    with Refresher(url, concurrency=1) as refresher:
        assert refresher.refresh()
        body = refresher.store.render()
    for account in accounts:
        assert sample(body, "cloudflare_oauth_account_up", account_id=account.id) == 1
        assert sample(body, "cloudflare_oauth_clients", account_id=account.id) == len(
            account.clients
        )


# --- an endpoint that refuses paging parameters and overstates total_count ------------------


def test_a_400_to_page_2_of_an_endpoint_that_refuses_paging_ends_the_listing(
    serve_simulator, caplog
):
    """The spec's body (per_page 20, total_count 2000, every client in one answer) from an
    endpoint that answers 400 to any query parameter: valid under the schema, so no account
    fails. The 400 to page=2 is learned once; later listings are one request each."""
    rng = random.Random(8)
    accounts = [
        make_account(rng, f"A{i}", 30, paging="strict", reported_total=2000) for i in range(3)
    ]
    url = serve_simulator(sim := Simulator(accounts))
    with caplog.at_level(logging.INFO, logger="exporter.cloudflare"):
        found = list_all(url, accounts)
    for account, (ids, summary) in zip(accounts, found, strict=True):
        assert ids == {c["client_id"] for c in account.clients}
        assert (summary.distinct, summary.total_count) == (30, 2000)
        assert summary.stopped_by == "page refused"
    assert [sim.requests[f"/accounts/{a.id}/oauth_clients"] for a in accounts] == [3, 1, 1]
    assert sim.status_counts[400] == 2  # page=1&per_page=50, then page=2: each once
    learned = [r.learned for r in caplog.records if r.getMessage().startswith("learned how")]
    assert len(learned) == 2, learned
    short = [r for r in caplog.records if "fewer distinct" in r.getMessage()]
    assert [(r.account_id, r.stopped_by, r.distinct, r.total_count) for r in short] == [
        (a.id, "page refused", 30, 2000) for a in accounts
    ]


def test_a_400_to_page_2_of_an_endpoint_that_took_page_numbers_stays_an_error(serve_simulator):
    """Only an endpoint learned to refuse paging parameters ends a listing on a 400 to a later
    page; from one that has answered page=N before, a 400 is an error, as any other."""
    from exporter.simulator import Fault

    rng = random.Random(9)
    first, second = (make_account(rng, f"A{i}", 30, paging="max_per_page") for i in range(2))
    url = serve_simulator(sim := Simulator([first, second]))

    async def scenario() -> None:
        client = CloudflareAPI(url, TokenAuth(Secret(TOKEN)), **api_options())
        try:
            assert (await client.list_oauth_clients(first.id, lambda batch: None)).distinct == 30
            second.faults.extend([Fault.slow(0), Fault.api_error(400, 6008, "Invalid request")])
            with pytest.raises(ApiError) as raised:
                await client.list_oauth_clients(second.id, lambda batch: None)
            assert raised.value.status == 400
        finally:
            await client.aclose()

    asyncio.run(scenario())
    assert sim.requests[f"/accounts/{second.id}/oauth_clients"] == 2


# --- the first listing of an endpoint teaches it; the others wait for the lesson ------------


@pytest.mark.parametrize(("reported_total", "refusals"), [(None, 1), (2000, 2)])
def test_concurrent_first_listings_pay_for_a_lesson_once(serve_simulator, reported_total, refusals):
    """8 accounts at concurrency 4 on an endpoint that answers 400 to any parameter: one 400
    for the process (two when total_count overstates, which page=2 answers), none later."""
    from tests.support.exposition import sample
    from tests.support.refresh import Refresher

    rng = random.Random(10)
    accounts = [
        make_account(rng, f"A{i}", 10 + i, paging="strict", reported_total=reported_total)
        for i in range(8)
    ]
    url = serve_simulator(sim := Simulator(accounts, latency=0.05))
    with Refresher(url, concurrency=4) as refresher:
        for refresh in (1, 2):
            sim.max_in_flight = 0
            assert refresher.refresh()
            assert sim.status_counts[400] == refusals, refresh
            assert sim.max_in_flight > 1, "once learned, listings run side by side"
            body = refresher.store.render()
            for account in accounts:
                assert sample(body, "cloudflare_oauth_account_up", account_id=account.id) == 1
                assert sample(body, "cloudflare_oauth_clients", account_id=account.id) == len(
                    account.clients
                )
    paths = [f"/accounts/{a.id}/oauth_clients" for a in accounts]
    assert sum(sim.requests[p] for p in paths) == 2 * len(accounts) + refusals


def list_side_by_side(
    client: CloudflareAPI, accounts: list[SimAccount]
) -> list[ListingSummary | BaseException]:
    """Every account's clients listed at once by `client` (closed after), failures returned."""

    async def scenario() -> list[ListingSummary | BaseException]:
        try:
            return await asyncio.wait_for(
                asyncio.gather(
                    *(client.list_oauth_clients(a.id, lambda batch: None) for a in accounts),
                    return_exceptions=True,
                ),
                timeout=30,
            )
        finally:
            await client.aclose()

    return asyncio.run(scenario())


def test_the_next_listing_learns_when_the_first_one_fails(serve_simulator):
    """The first listing holds the others back while it learns; when it fails, the next one
    learns in its place, and nothing waits for ever."""
    from exporter.simulator import Fault

    rng = random.Random(11)
    accounts = [make_account(rng, f"A{i}", 5, paging="strict") for i in range(4)]
    accounts[0].fault = Fault.api_error(403, 10000, "Authentication error")
    url = serve_simulator(sim := Simulator(accounts))

    client = CloudflareAPI(url, TokenAuth(Secret(TOKEN)), **api_options(concurrency=4))
    failed, *listed = list_side_by_side(client, accounts)
    assert isinstance(failed, ApiError)
    assert failed.status == 403
    assert [s.distinct for s in listed if isinstance(s, ListingSummary)] == [5, 5, 5]
    assert sim.status_counts[400] == 1


def test_the_next_listing_learns_when_the_first_one_is_cancelled(serve_simulator):
    from exporter.simulator import Fault

    rng = random.Random(12)
    accounts = [make_account(rng, f"A{i}", 5, paging="strict") for i in range(3)]
    accounts[0].fault = Fault.slow(10)
    url = serve_simulator(sim := Simulator(accounts))

    async def scenario() -> list[int]:
        client = CloudflareAPI(url, TokenAuth(Secret(TOKEN)), **api_options(concurrency=4))
        try:
            slow = asyncio.ensure_future(client.list_oauth_clients(accounts[0].id, lambda b: None))
            while not sim.in_flight:  # the first listing holds the lesson, and waits
                await asyncio.sleep(0.01)
            others = asyncio.gather(
                *(client.list_oauth_clients(a.id, lambda batch: None) for a in accounts[1:])
            )
            for _ in range(10):
                await asyncio.sleep(0)  # as far as they can go
            assert not others.done()  # they wait for what the first one learns
            assert not any(sim.requests[f"/accounts/{a.id}/oauth_clients"] for a in accounts[1:])
            slow.cancel()
            summaries = await asyncio.wait_for(others, timeout=30)
            return [s.distinct for s in summaries]
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == [5, 5]
    assert sim.status_counts[400] == 1


@pytest.mark.parametrize("outage", ["403", "503", "timeout"])
def test_an_outage_of_every_account_does_not_run_the_listings_one_at_a_time(
    serve_simulator, outage
):
    """Every listing fails, none with a 400: nothing is learned, and waiting for a lesson would
    make the outage cost one listing after another (N x timeout x retries)."""
    from exporter.simulator import Fault

    fault = {
        "403": Fault.api_error(403, 10000, "Authentication error"),
        "503": Fault.html(503),
        "timeout": Fault.slow(5),
    }[outage]
    rng = random.Random(14)
    accounts = [make_account(rng, f"A{i}", 5, paging="strict", fault=fault) for i in range(8)]
    url = serve_simulator(Simulator(accounts, latency=0.05))
    in_flight = peak = 0

    class Counting(httpx.AsyncHTTPTransport):
        """Requests waiting for an answer, as the client sees them (a timeout ends the wait)."""

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await super().handle_async_request(request)
            finally:
                in_flight -= 1

    options = api_options(concurrency=4, timeout=0.3, max_retries=1, backoff_base=0.01)
    client = CloudflareAPI(url, TokenAuth(Secret(TOKEN)), transport=Counting(), **options)
    results = list_side_by_side(client, accounts)
    assert all(isinstance(result, ApiError) for result in results)
    assert peak > 1


# --- result absent or null, through the refresh ---------------------------------------------


def test_a_success_without_result_or_with_result_null_exports_0_clients_with_up_1(
    serve_simulator,
):
    import json

    from exporter.simulator import Fault
    from tests.support.exposition import sample
    from tests.support.refresh import Refresher

    rng = random.Random(13)
    absent, null = make_account(rng, "Absent", 0), make_account(rng, "Null", 0)
    envelope = {"success": True, "errors": [], "messages": []}
    absent.fault = Fault.envelope(json.dumps(envelope))
    null.fault = Fault.envelope(json.dumps({**envelope, "result": None}))
    url = serve_simulator(sim := Simulator([absent, null]))
    with Refresher(url) as refresher:
        assert refresher.refresh()
        body = refresher.store.render()
    for account in (absent, null):
        assert sample(body, "cloudflare_oauth_account_up", account_id=account.id) == 1
        assert sample(body, "cloudflare_oauth_clients", account_id=account.id) == 0
        assert sim.requests[f"/accounts/{account.id}/oauth_clients"] == 1
