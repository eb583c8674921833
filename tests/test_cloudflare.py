"""The API client against the project's simulator over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections import Counter

import pytest

from exporter.aggregation import count_clients
from exporter.cloudflare import ApiError, CloudflareAPI
from exporter.credentials import GlobalKeyAuth, Secret, TokenAuth
from exporter.model import Account, OAuthClient
from exporter.ratelimit import RATE_WINDOW, SlidingWindowLimiter
from exporter.simulator import Fault, SimAccount, Simulator, make_account, make_client
from tests.support.clock import FakeClock
from tests.support.defaults import api_options
from tests.support.simulator import TOKEN

AUTH = TokenAuth(Secret(TOKEN))
CLIENTS = "/accounts/{account_id}/oauth_clients"


def account(n_clients: int, seed: int = 1, **options) -> SimAccount:
    return make_account(random.Random(seed), f"Account {seed}", n_clients, **options)


def api(url: str, **options) -> CloudflareAPI:
    options.setdefault("backoff_base", 0.01)
    auth = options.pop("auth", AUTH)
    return CloudflareAPI(url, auth, **api_options(**options))


def list_accounts(url: str) -> list[Account]:
    """The accounts listed by a fresh client for `url`."""

    async def scenario() -> list[Account]:
        client = api(url)
        try:
            return await client.list_accounts()
        finally:
            await client.aclose()

    return asyncio.run(scenario())


def list_clients(url: str, account_id: str, **options):
    """(clients seen, pages yielded, request codes) for one account."""
    codes: Counter[tuple[str, str]] = Counter()

    async def scenario():
        client = api(url, on_request=lambda e, c: codes.update([(e, c)]), **options)
        try:
            pages: list[list[OAuthClient]] = []
            await client.list_oauth_clients(account_id, pages.append)
        finally:
            await client.aclose()
        return [c for page in pages for c in page], pages

    clients, pages = asyncio.run(scenario())
    return clients, pages, codes


@pytest.mark.parametrize(
    ("n_clients", "page_size", "requests"),
    [(0, 50, 1), (3, 50, 1), (50, 50, 1), (100, 50, 2), (120, 50, 3), (120, 20, 6), (7, 1, 7)],
)
def test_paging_api_takes_the_fewest_pages(serve_simulator, n_clients, page_size, requests):
    target = account(n_clients)
    url = serve_simulator(sim := Simulator([target]))
    clients, _, codes = list_clients(url, target.id, page_size=page_size)
    assert sorted(c.client_id for c in clients) == sorted(c["client_id"] for c in target.clients)
    assert sim.requests[f"/accounts/{target.id}/oauth_clients"] == requests
    assert codes == Counter({(CLIENTS, "200"): requests})


def test_api_that_ignores_page_like_the_reference_example(serve_simulator):
    # Three clients, result_info claiming total_count 2000, the same page whatever `page` says:
    # the total says more remain, so page 2 is asked for; it brings nothing new, so it ends.
    target = account(3, paging="ignore", reported_total=2000)
    url = serve_simulator(sim := Simulator([target]))
    clients, _, _ = list_clients(url, target.id)
    assert len(clients) == 3
    assert sim.requests[f"/accounts/{target.id}/oauth_clients"] == 2


def test_api_that_ignores_page_and_per_page_returns_everything_once(serve_simulator):
    # 75 clients in one answer with per_page 20 and a bogus total: page 2 repeats page 1, stop.
    target = account(75, paging="ignore", reported_total=2000)
    url = serve_simulator(sim := Simulator([target]))
    clients, _, _ = list_clients(url, target.id)
    assert len(clients) == 75
    assert len({c.client_id for c in clients}) == 75
    assert sim.requests[f"/accounts/{target.id}/oauth_clients"] == 2


def test_api_without_result_info_is_one_page_once_the_endpoint_is_known(serve_simulator):
    # The first answer without result_info cannot say whether more pages exist: page 2 is asked
    # for once; it repeats page 1, so the endpoint is known to ignore paging from then on.
    first, second = account(60, paging="single"), account(60, seed=2, paging="single")
    url = serve_simulator(sim := Simulator([first, second]))

    async def scenario():
        client = api(url)
        try:
            return [
                await client.list_oauth_clients(a.id, lambda batch: None) for a in (first, second)
            ]
        finally:
            await client.aclose()

    summaries = asyncio.run(scenario())
    assert [s.distinct for s in summaries] == [60, 60]
    assert sim.requests[f"/accounts/{first.id}/oauth_clients"] == 2
    assert sim.requests[f"/accounts/{second.id}/oauth_clients"] == 1
    assert [s.stopped_by for s in summaries] == ["no new ids", "no result_info"]


def test_overstated_total_count_stops_on_the_empty_page(serve_simulator):
    target = account(100, reported_total=2000)
    url = serve_simulator(sim := Simulator([target]))
    clients, _, _ = list_clients(url, target.id)
    assert len(clients) == 100
    assert sim.requests[f"/accounts/{target.id}/oauth_clients"] == 3


def test_duplicate_clients_count_once(serve_simulator):
    target = account(4)
    target.clients = [*target.clients, target.clients[0], target.clients[1]]
    url = serve_simulator(Simulator([target]))
    clients, _, _ = list_clients(url, target.id, page_size=3)
    assert len(clients) == 4
    assert count_clients(clients).total == 4


def test_accounts_are_discovered_fifty_a_page(serve_simulator):
    rng = random.Random(5)
    accounts = [SimAccount(f"{rng.getrandbits(128):032x}", f"A{i}") for i in range(120)]
    url = serve_simulator(sim := Simulator(accounts))

    found = list_accounts(url)
    assert {a.id: a.name for a in found} == {a.id: a.name for a in accounts}
    assert sim.requests["/accounts"] == 3


def test_legacy_email_and_key_auth(serve_simulator):
    target = account(5)
    url = serve_simulator(Simulator([target], tokens=(), email="ops@example.com", key="k" * 37))
    auth = GlobalKeyAuth("ops@example.com", Secret("k" * 37))
    clients, _, _ = list_clients(url, target.id, auth=auth)
    assert len(clients) == 5
    with pytest.raises(ApiError) as raised:
        list_clients(url, target.id, auth=GlobalKeyAuth("ops@example.com", Secret("wrong")))
    assert (raised.value.status, raised.value.code) == (403, 9103)


@pytest.mark.parametrize(
    ("fault", "status", "code", "reason"),
    [
        (Fault.api_error(401, 10001, "Unauthorized"), 401, 10001, "Unauthorized"),
        (Fault.api_error(403, 10000, "Authentication error"), 403, 10000, "Authentication error"),
        (Fault.api_error(404, 7003, "Could not route"), 404, 7003, "Could not route"),
        (Fault.api_error(400, 6003, "Invalid request headers"), 400, 6003, "Invalid request"),
    ],
)
def test_client_errors_fail_at_once_with_the_api_code_and_message(
    serve_simulator, fault, status, code, reason
):
    target = account(5, fault=fault)
    url = serve_simulator(sim := Simulator([target]))
    with pytest.raises(ApiError) as raised:
        list_clients(url, target.id)
    assert (raised.value.status, raised.value.code) == (status, code)
    assert reason in str(raised.value)
    # No retry; a 400 to the first page, asked for with paging parameters, is asked once more
    # without them (the endpoint may refuse the parameters) and then stays an account error.
    assert sim.requests[f"/accounts/{target.id}/oauth_clients"] == (2 if status == 400 else 1)


def test_invalid_token_is_a_403_9109(serve_simulator):
    target = account(5)
    url = serve_simulator(Simulator([target]))
    with pytest.raises(ApiError) as raised:
        list_clients(url, target.id, auth=TokenAuth(Secret("not-the-token")))
    assert (raised.value.status, raised.value.code) == (403, 9109)


def test_unknown_account_is_404_7003(serve_simulator):
    url = serve_simulator(Simulator([account(1)]))
    with pytest.raises(ApiError) as raised:
        list_clients(url, "0" * 32)
    assert (raised.value.status, raised.value.code) == (404, 7003)


@pytest.mark.parametrize(
    "fault",
    [Fault.html(502), Fault.html(503), Fault.api_error(500, 1000, "boom"), Fault(status=408),
     Fault(status=409)],
)  # fmt: skip
def test_server_errors_are_retried_then_succeed(serve_simulator, fault):
    target = account(30)
    target.faults.extend([fault, fault])
    url = serve_simulator(sim := Simulator([target]))
    clients, _, codes = list_clients(url, target.id)
    assert len(clients) == 30
    assert sim.requests[f"/accounts/{target.id}/oauth_clients"] == 3
    assert codes[(CLIENTS, str(fault.status))] == 2
    assert codes[(CLIENTS, "200")] == 1


def test_server_errors_give_up_after_bounded_retries(serve_simulator):
    target = account(30, fault=Fault.html(502))
    url = serve_simulator(sim := Simulator([target]))
    with pytest.raises(ApiError) as raised:
        list_clients(url, target.id)
    assert raised.value.status == 502
    assert "text/html" in str(raised.value)
    assert sim.requests[f"/accounts/{target.id}/oauth_clients"] == 3


def test_backoff_grows_exponentially_with_jitter(serve_simulator):
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    target = account(3, fault=Fault.html(503))
    url = serve_simulator(Simulator([target]))
    with pytest.raises(ApiError):
        list_clients(url, target.id, backoff_base=0.5, sleep=record, max_retries=4)
    assert len(slept) == 4
    for attempt, seconds in enumerate(slept):
        nominal = min(0.5 * 2**attempt, 8.0)
        assert 0.75 * nominal <= seconds <= nominal


def on_a_fake_clock() -> tuple[FakeClock, dict[str, object]]:
    """A clock, and CloudflareAPI options that make every wait (and the wall time) use it."""
    clock = FakeClock(now=1_767_225_600.0)
    limiter = SlidingWindowLimiter(0, clock=clock, sleep=clock.sleep)
    return clock, {"limiter": limiter, "sleep": clock.sleep, "clock": clock}


def test_429_waits_retry_after_then_retries(serve_simulator):
    target = account(10)
    target.faults.append(Fault.rate_limited(retry_after=7))
    url = serve_simulator(sim := Simulator([target]))
    clock, options = on_a_fake_clock()
    clients, _, codes = list_clients(url, target.id, **options)
    assert clock.slept == [7.0]  # every request waits: the block is per token
    assert len(clients) == 10
    assert codes == Counter({(CLIENTS, "429"): 1, (CLIENTS, "200"): 1})
    assert sim.requests[f"/accounts/{target.id}/oauth_clients"] == 2


@pytest.mark.parametrize(
    ("retry_after", "waits"),
    [
        ("Mon, garbage", "backoff"),
        ("²", "backoff"),
        ("-5", "backoff"),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "backoff"),  # in the past
        ("soon", "backoff"),
        ("99999999999999999999", "cap"),
    ],
)
def test_odd_retry_after_values_fall_back_to_backoff_or_the_cap(
    serve_simulator, retry_after, waits
):
    target = account(10)
    target.faults.append(Fault(status=429, code=971, message="slow down", retry_after=retry_after))
    url = serve_simulator(Simulator([target]))
    clock, options = on_a_fake_clock()
    clients, _, codes = list_clients(url, target.id, retry_after_cap=60, **options)
    assert len(clients) == 10
    assert codes == Counter({(CLIENTS, "429"): 1, (CLIENTS, "200"): 1})
    [slept] = clock.slept
    if waits == "cap":
        assert slept == 60
    else:  # the first backoff: 0.01 s with up to 25 % jitter off
        assert 0.0075 <= slept <= 0.01


def test_a_retry_after_date_is_honoured(serve_simulator):
    import email.utils

    target = account(10)
    clock, options = on_a_fake_clock()
    when = email.utils.formatdate(clock.now + 42, usegmt=True)
    target.faults.append(Fault(status=429, code=971, message="slow down", retry_after=when))
    url = serve_simulator(Simulator([target]))
    clients, _, _ = list_clients(url, target.id, **options)
    assert len(clients) == 10
    assert clock.slept == [42.0]


def test_a_body_that_cannot_be_decoded_is_reported_not_raised(serve_simulator):
    target = account(10)
    broken = Fault(status=200, body="not gzip at all", content_type="application/json")
    broken.headers = {"Content-Encoding": "gzip"}
    target.fault = broken
    url = serve_simulator(Simulator([target]))
    with pytest.raises(ApiError, match="could not be decoded") as raised:
        list_clients(url, target.id, max_retries=1)
    assert raised.value.status == 200


def test_retry_after_is_capped_at_the_rate_window(serve_simulator):
    target = account(10)
    target.faults.append(Fault.rate_limited(retry_after=3600))
    url = serve_simulator(Simulator([target]))
    clock, options = on_a_fake_clock()
    clients, _, _ = list_clients(url, target.id, **options)
    assert clock.slept == [RATE_WINDOW]  # a block never lasts longer than the window
    assert len(clients) == 10


@pytest.mark.slow
def test_timeouts_are_retried_and_reported(serve_simulator):
    target = account(10)
    target.faults.append(Fault.slow(2.0))
    url = serve_simulator(Simulator([target]))
    clients, _, codes = list_clients(url, target.id, timeout=0.3)
    assert len(clients) == 10
    assert codes == Counter({(CLIENTS, "timeout"): 1, (CLIENTS, "200"): 1})


@pytest.mark.slow
def test_timeouts_that_persist_fail_the_account(serve_simulator):
    target = account(10, fault=Fault.slow(2.0))
    url = serve_simulator(Simulator([target]))
    with pytest.raises(
        ApiError, match=r"no complete answer within 0\.2s \(--cloudflare\.timeout\)"
    ):
        list_clients(url, target.id, timeout=0.2, max_retries=1)


def test_connection_errors_are_retried_then_reported():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    codes: Counter[tuple[str, str]] = Counter()

    async def scenario():
        client = api(
            f"http://127.0.0.1:{port}/client/v4", on_request=lambda e, c: codes.update([(e, c)])
        )
        try:
            await client.list_accounts()
        finally:
            await client.aclose()

    with pytest.raises(ApiError, match="connection failed") as raised:
        asyncio.run(scenario())
    assert raised.value.status is None
    assert codes == Counter({("/accounts", "connection_error"): 3})


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.html(200), "not JSON (text/html)"),
        (Fault.not_json(), "the body ends before the JSON object does"),
        (Fault.success_false(1000, "internal processing error"), "internal processing error"),
        (Fault.missing_client_id(), "no 'client_id'"),
        (Fault(status=200, body='{"success": true, "result": {}}'), "'result' is not a list"),
        (Fault(status=200, body='{"result": []}'), "boolean 'success'"),
        (Fault(status=200, body="[]"), "expected a JSON object"),
        (Fault(status=200, body='{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"), "too deeply"),
    ],
)
def test_malformed_answers_are_errors_not_crashes(serve_simulator, fault, reason):
    target = account(5, fault=fault)
    url = serve_simulator(sim := Simulator([target]))
    with pytest.raises(ApiError) as raised:
        list_clients(url, target.id)
    assert reason in str(raised.value)
    assert sim.requests[f"/accounts/{target.id}/oauth_clients"] == 1


def test_an_echoed_credential_is_redacted_from_errors(serve_simulator):
    target = account(5, fault=Fault.api_error(403, 9109, f"Invalid access token {TOKEN}"))
    url = serve_simulator(Simulator([target]))
    with pytest.raises(ApiError) as raised:
        list_clients(url, target.id)
    assert TOKEN not in str(raised.value)
    assert "[REDACTED]" in str(raised.value)
    assert TOKEN not in repr(raised.value.args)


def test_a_credential_straddling_the_cut_of_an_account_name_is_redacted_first(serve_simulator):
    # Cut at 128 characters first, the credential would no longer match, and its beginning
    # would be left in the name.
    named = SimAccount("a" * 32, "n" * 120 + TOKEN)
    url = serve_simulator(Simulator([named]))

    [found] = list_accounts(url)
    assert found.name == ("n" * 120 + "[REDACTED]")[:128]


@pytest.mark.parametrize(
    "fault",
    [
        Fault.api_error(403, 10000, "m" * 1020 + TOKEN),  # a message is cut at 1024
        Fault(status=403, body="no", content_type="x/" + "t" * 74 + TOKEN),  # a type at 80
    ],
)
def test_a_credential_straddling_the_cut_of_an_error_is_redacted_first(serve_simulator, fault):
    target = account(5, fault=fault)
    url = serve_simulator(Simulator([target]))
    with pytest.raises(ApiError) as raised:
        list_clients(url, target.id)
    assert raised.value.status == 403
    assert TOKEN[:4] not in str(raised.value)


@pytest.mark.slow
def test_concurrency_bounds_requests_in_flight(serve_simulator):
    accounts = [account(120, seed=n) for n in range(8)]
    url = serve_simulator(sim := Simulator(accounts, latency=0.05))

    async def scenario():
        client = api(url, concurrency=3)

        async def drain(account_id: str) -> int:
            return (await client.list_oauth_clients(account_id, lambda batch: None)).distinct

        try:
            return await asyncio.gather(*(drain(a.id) for a in accounts))
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == [120] * 8
    assert sim.max_in_flight == 3


@pytest.mark.slow
def test_the_client_side_budget_prevents_429s(serve_simulator):
    # The simulator enforces 12 requests per 2 s window (and blocks 2 s past it).
    accounts = [account(100, seed=n) for n in range(10)]  # 2 pages each: 20 requests
    url = serve_simulator(sim := Simulator(accounts, rate_limit=12, rate_window=2, rate_block=2))

    async def scenario():
        client = api(url, limiter=SlidingWindowLimiter(12, 2.0))
        try:
            return [
                (await client.list_oauth_clients(a.id, lambda batch: None)).distinct
                for a in accounts
            ]
        finally:
            await client.aclose()

    started = time.monotonic()
    assert asyncio.run(scenario()) == [100] * 10
    assert time.monotonic() - started >= 2.0  # it had to wait for the second window
    assert sim.rate_limited == 0
    assert sim.status_counts[429] == 0


def test_ratelimit_header_with_nothing_left_pauses_before_a_429(serve_simulator):
    target = account(100)
    target.faults.append(Fault(status=0, headers={"Ratelimit": '"default";r=0;t=17'}))
    url = serve_simulator(Simulator([target]))
    clock, options = on_a_fake_clock()
    clients, _, codes = list_clients(url, target.id, **options)
    assert len(clients) == 100
    assert clock.slept == [17.0]  # the second page waited for the window to reset
    assert codes == Counter({(CLIENTS, "200"): 2})


@pytest.mark.slow
def test_the_simulators_own_ratelimit_header_keeps_a_real_run_free_of_429s(serve_simulator):
    target = account(100)
    url = serve_simulator(sim := Simulator([target], rate_limit=1, rate_window=1, rate_block=30))
    clients, _, codes = list_clients(url, target.id)
    assert len(clients) == 100
    assert sim.rate_limited == 0
    assert codes == Counter({(CLIENTS, "200"): 2})


def test_make_client_covers_every_documented_value():
    rng = random.Random(3)
    counts = count_clients_raw([make_client(rng, i) for i in range(60)])
    for breakdown in (counts.by_visibility, counts.by_auth_method, counts.by_verification_status,
                      counts.by_grant_type, counts.by_response_type):  # fmt: skip
        assert all(count > 0 for _, count in breakdown)
    assert 0 < counts.rotated_secret_pending < counts.total


def count_clients_raw(items):
    from exporter.model import parse_oauth_client

    return count_clients(parse_oauth_client(item) for item in items)
