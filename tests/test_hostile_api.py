"""Whatever the API sends: no crash, one clear line, last good counts kept, others untouched.

Odd JSON, echoed credentials, invented values and ids go through the whole refresh in this
process; bodies that would cost memory (500 MB, endless, a gzip bomb, junk, invented ids) are
sent to the exporter running as its own process, whose peak RSS is read from /proc.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import re
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from exporter.body import PIECE, BodyDecoder
from exporter.logs import JsonFormatter, LogfmtFormatter, configure_logging
from exporter.ratelimit import SlidingWindowLimiter
from exporter.simulator import Fault, SimAccount, Simulator, make_account
from exporter.status_page import render_status_page
from tests.support import refresh
from tests.support.clock import FakeClock
from tests.support.exposition import label_values, sample, samples
from tests.support.process import ExporterProcess
from tests.support.simulator import TOKEN, SimulatorThread


class Refresher(refresh.Refresher):
    """With per-client series (the most API text reaches the page and the exposition)."""

    def __init__(self, url: str, account_ids=(), **options) -> None:
        super().__init__(url, account_ids, per_client_limit=100, **options)

    def page(self) -> bytes:
        html = render_status_page(
            self.store.snapshots(), self.store.refresh_status, telemetry_path="/metrics",
            per_client=True,
        )  # fmt: skip
        return html.encode("utf-8")  # strict: a lone surrogate here would be a crash


@pytest.fixture
def refresher(serve_simulator):
    made: list[Refresher] = []

    def make(simulator: Simulator, account_ids=(), **options) -> Refresher:
        made.append(Refresher(serve_simulator(simulator), account_ids, **options))
        return made[-1]

    yield make
    for each in made:
        each.close()


def two_accounts(n: int = 6) -> tuple[SimAccount, SimAccount]:
    rng = random.Random(9)
    return make_account(rng, "Good", n), make_account(rng, "Bad", n)


def envelope(result: str, info: str = '{"page": 1, "per_page": 50, "count": 1, "total_count": 1}'):
    return f'{{"success": true, "errors": [], "result": {result}, "result_info": {info}}}'


CLIENT = '{"client_id": "c1", "visibility": "private"}'


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        (envelope(f"[{CLIENT}]", '{"total_count": NaN, "per_page": Infinity}'), 1),
        (envelope(f"[{CLIENT}]", '{"total_count": 1e999, "page": -Infinity}'), 1),
        (envelope(f"[{CLIENT}]", '{"total_count": 1.5, "count": true}'), 1),
        (envelope(f"[{CLIENT}]", '{"total_count": ' + "7" * 5000 + "}"), "4300 digits"),
        (envelope('[{"client_id": "c1", "visibility": "private", "x": ' + "[" * 100_000
                  + "]" * 100_000 + "}]"), "too deeply"),
        (envelope('[{"client_id": "c\\ud800", "visibility": "pub\\udfffl",'
                  ' "client_name": "n\\ud83d"}]'), 1),
        (envelope('[{"client_id": "c\\u0000\\u001b[31m", "visibility": "\\u2028x\\u0085",'
                  ' "client_name": "a\\nb\\rc"}]'), 1),
        (envelope(f"[{CLIENT}]", '"not an object"'), 1),
        ('{"success": "yes", "result": []}', "boolean 'success'"),
        ('{"success": true, "result": [' + CLIENT + "], " + '"errors": ' + "[" * 50 + "]" * 50
         + "}", 1),
    ],
)  # fmt: skip
def test_odd_json_is_a_value_or_one_line_never_a_crash(refresher, caplog, body, outcome):
    good, bad = two_accounts()
    bad.fault = Fault.envelope(body)
    poller = refresher(Simulator([good, bad]))
    with caplog.at_level(logging.WARNING):
        poller.refresh()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a crash was logged"
    found = samples(poller.store.render())
    assert sample(found, "cloudflare_oauth_account_up", account_id=good.id) == 1
    if outcome == 1:
        assert sample(found, "cloudflare_oauth_account_up", account_id=bad.id) == 1
        assert sample(found, "cloudflare_oauth_clients", account_id=bad.id) == 1
    else:
        assert sample(found, "cloudflare_oauth_account_up", account_id=bad.id) == 0
        [line] = [r for r in caplog.records if r.getMessage().startswith("account refresh failed")]
        assert str(outcome) in line.err
    poller.store.render().decode("utf-8")
    poller.page()


def test_lone_surrogates_in_names_never_break_a_page_or_a_series(refresher):
    account = make_account(random.Random(12), "bad \ud800 name", 2)
    account.clients[0].update(
        client_id="id-\udfff", client_name="n\ud83d", allowed_cors_origins=["*"]
    )
    poller = refresher(Simulator([account]))
    assert poller.refresh()
    page = poller.page().decode("utf-8")  # strict
    assert "bad \ufffd name" in page
    assert "n\ufffd" in page  # a client holding a finding is listed by name
    assert "id-\ufffd" in poller.store.render().decode("utf-8")


def test_values_differing_only_in_lone_surrogates_are_one_series_not_two(refresher):
    # Written as UTF-8 both read "x\ufffd": two counters (or two records) for them would be a
    # duplicate series, and Prometheus refuses the whole scrape for one.
    account = make_account(random.Random(13), "Acme", 4)
    for n, (half, auth) in enumerate([("\ud800", "a\ud800"), ("\udc00", "a\udfff")] * 2):
        account.clients[n].update(
            client_id=f"id-{half}" if n < 2 else f"id-{n}", visibility=f"v{half}",
            token_endpoint_auth_method=auth, grant_types=[f"g{half}"],
        )  # fmt: skip
    poller = refresher(Simulator([account]))
    assert poller.refresh()
    body = poller.store.render()
    lines = [line.rsplit(b" ", 1)[0] for line in body.splitlines() if not line.startswith(b"#")]
    assert len(lines) == len(set(lines)), "a duplicate series"
    found = samples(body)
    by = {"account_id": account.id}
    assert sample(found, "cloudflare_oauth_clients_by_visibility", **by, visibility="v\ufffd") == 4
    assert (
        sample(found, "cloudflare_oauth_clients_by_auth_method", **by, auth_method="a\ufffd") == 4
    )
    assert sample(found, "cloudflare_oauth_clients_by_grant_type", **by, grant_type="g\ufffd") == 4
    ids = label_values(found, "cloudflare_oauth_client_info", "client_id")
    assert len(ids) == 4


def test_a_failed_answer_keeps_the_last_good_counts(refresher):
    good, bad = two_accounts(9)
    poller = refresher(Simulator([good, bad]))
    assert poller.refresh()
    bad.fault = Fault.envelope('{"result": [' + "9" * 5000 + "]}")
    assert not poller.refresh()
    found = samples(poller.store.render())
    assert sample(found, "cloudflare_oauth_account_up", account_id=bad.id) == 0
    assert sample(found, "cloudflare_oauth_clients", account_id=bad.id) == 9


def test_invented_values_fold_into_other_beyond_ten(refresher, caplog):
    (account,) = [make_account(random.Random(4), "Inventive", 3000)]
    for n, client in enumerate(account.clients):
        client["visibility"] = f"v{n % 1500:04d}" if n >= 100 else "private"
        client["token_endpoint_auth_method"] = "x" * 300 + str(n % 2)  # long: cut at 128
    poller = refresher(Simulator([account]))
    with caplog.at_level(logging.WARNING, logger="exporter.poller"):
        assert poller.refresh()
        assert poller.refresh()
    found = samples(poller.store.render())
    visibility = {
        dict(labels)["visibility"]: value
        for labels, value in found["cloudflare_oauth_clients_by_visibility"].items()
    }
    assert len(visibility) == 2 + 10 + 1  # public, private, ten invented, other
    assert sum(visibility.values()) == 3000
    assert visibility["private"] == 100
    assert visibility["other"] == 3000 - 100 - sum(
        value for name, value in visibility.items() if name.startswith("v")
    )
    methods = [
        dict(labels)["auth_method"] for labels in found["cloudflare_oauth_clients_by_auth_method"]
    ]
    assert all(len(method) <= 128 for method in methods)
    assert len([m for m in methods if m.startswith("xxx")]) == 1  # both cut to the same value
    folded = [r for r in caplog.records if "counted as 'other'" in r.getMessage()]
    assert len(folded) == 2  # once per refresh
    assert "visibility=" in folded[0].folded


def test_ids_that_are_not_account_ids_never_reach_a_url(refresher, caplog):
    good = make_account(random.Random(2), "Good", 3)
    odd = [SimAccount(weird, f"Odd {n}") for n, weird in
           enumerate([".", "..", "a/b", "x" * 65, "a?b", "%2e%2e", "é"])]  # fmt: skip
    simulator = Simulator([good, *odd])
    poller = refresher(simulator)
    with caplog.at_level(logging.WARNING, logger="exporter.cloudflare"):
        assert poller.refresh()
    assert set(simulator.requests) == {"/accounts", f"/accounts/{good.id}/oauth_clients"}
    [warning] = [r for r in caplog.records if "not account ids" in r.getMessage()]
    assert warning.skipped == len(odd)
    assert {s.account_id for s in poller.store.snapshots()} == {good.id}


def test_a_credential_echoed_anywhere_is_redacted_everywhere(refresher, serve_simulator):
    good = make_account(random.Random(3), f"Acme {TOKEN}", 2)
    good.clients[0].update(client_name=f"echo {TOKEN}", visibility=f"v-{TOKEN}",
                           redirect_uris=[f"http://x/{TOKEN}"])  # fmt: skip
    bad = make_account(random.Random(4), "Denied", 2)
    bad.fault = Fault.api_error(403, 10000, f"token {TOKEN} lacks permission")
    poller = refresher(Simulator([good, bad]))
    stream = io.StringIO()
    configure_logging("debug", "logfmt", stream=stream, secrets=(TOKEN,))
    try:
        poller.refresh()
        logging.getLogger("test").warning("echo", extra={"value": TOKEN})
    finally:
        configure_logging("info", "logfmt")
    body, page, log = poller.store.render().decode(), poller.page().decode(), stream.getvalue()
    for text in (body, page, log):
        assert TOKEN not in text
    assert "[REDACTED]" in body
    assert "[REDACTED]" in page
    assert "[REDACTED]" in log


@pytest.mark.parametrize("status", [403, 200])  # an error answer, and success: false in a 200
def test_the_apis_error_messages_are_joined_up_to_1_kb_and_the_cut_is_said(
    refresher, caplog, status
):
    good, bad = two_accounts()
    errors = [
        {"code": 10000 + n, "message": f"reason {n}: " + "no " * 100 + "\x00\x1b\u2028" * 20}
        for n in range(40)
    ]  # 40 messages of 370 characters, ~490 once escaped
    bad.fault = Fault(status=status, body=json.dumps(
        {"success": False, "errors": errors, "messages": [], "result": None}
    ))  # fmt: skip
    poller = refresher(Simulator([good, bad]))
    with caplog.at_level(logging.WARNING):
        assert not poller.refresh()
    [line] = [r for r in caplog.records if r.getMessage().startswith("account refresh failed")]
    assert line.account_id == bad.id
    [failure] = [s.last_error for s in poller.store.snapshots() if s.account_id == bad.id]
    assert failure is not None
    assert failure.code == 10000
    assert line.err == str(failure) == f"HTTP {status} code 10000: {failure.message}"
    message = failure.message
    assert len(message) <= 1024
    assert message.startswith("reason 0: no no ")
    assert "; reason 1: no " in message  # joined
    assert "\\x00\\x1b" in message  # escaped, not raw
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", message)
    cut = re.fullmatch(r".*\.\.\.\[(\d+) more\]", message)  # says it was cut, and how much
    assert cut is not None, message[-40:]
    assert int(cut[1]) > 8_000  # of the ~9,800 the first 20 messages (all that are kept) make
    assert sample(poller.samples(), "cloudflare_oauth_account_up", account_id=good.id) == 1


# How Cloudflare asks for a pause: a 429 with Retry-After (the request is retried after it), or
# a `Ratelimit` header with nothing left on an answer (the next page waits for it).
PAUSES: dict[str, Callable[[int], Fault]] = {
    "Retry-After": Fault.rate_limited,
    "Ratelimit r=0": Fault.nothing_left,
}


@pytest.mark.parametrize("header", sorted(PAUSES))
@pytest.mark.parametrize(("seconds", "said"), [(120, True), (60, False), (30, False)])
def test_a_pause_over_a_minute_is_said_once_and_exported_until_it_ends(
    refresher, caplog, header, seconds, said
):
    account = make_account(random.Random(5), "Throttled", 3)
    account.faults.append(PAUSES[header](seconds))
    start = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
    clock = FakeClock(now=start)  # the exporter's: it sleeps through the pause at once
    scrape_time = [start]  # when Prometheus scrapes
    poller = refresher(
        Simulator([account]), [account.id], store_clock=lambda: scrape_time[0],
        limiter=SlidingWindowLimiter(0, clock=clock, sleep=clock.sleep), sleep=clock.sleep,
        clock=clock, page_size=2,  # two pages: the second waits out a pause the first gave
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="exporter.cloudflare"):
        assert poller.refresh()
    assert clock.slept == [seconds]
    assert sample(poller.samples(), "cloudflare_oauth_clients", account_id=account.id) == 3
    pauses = [r for r in caplog.records if "pause" in r.getMessage()]
    if said:
        [pause] = pauses
        assert pause.levelno == logging.WARNING
        assert pause.resume_at == "Thu, 01 Jan 2026 00:02:00 GMT"
        assert pause.pause == "120s"
    else:
        assert pauses == []
    paused = "cloudflare_oauth_api_paused_until_timestamp_seconds"
    assert sample(poller.store.render(), paused) == start + seconds
    scrape_time[0] = start + seconds + 1  # the pause is over
    assert sample(poller.store.render(), paused) == 0


def test_log_lines_are_bounded_and_escaped():
    formatter = LogfmtFormatter()
    record = logging.LogRecord("exporter", logging.WARNING, "", 0, "m\u2028sg", None, None)
    record.err = "x" * 100_000 + "\x1b[31m\x85\ud800"
    record.other = "y" * 50_000
    line = formatter.format(record)
    assert len(line.encode("utf-8")) <= 8192
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]", line)
    assert "more]" in line


def test_a_compressed_answer_lets_the_event_loop_run_while_it_inflates(refresher, monkeypatch):
    # A few KB on the wire that inflate to 16 MB: one network read holds hundreds of pieces of
    # text to parse, and scrapes (any other task) must get the loop between them, not after.
    good, bad = two_accounts(5)
    bad.fault = Fault.gzip_repeats(bad.clients[0], expanded_megabytes=16)
    since_tick = [0]  # pieces decoded since the other task last ran
    most = [0]
    feed = BodyDecoder.feed

    def counted(self: BodyDecoder, raw: bytes) -> Iterator[str]:
        for text in feed(self, raw):
            since_tick[0] += 1
            most[0] = max(most[0], since_tick[0])
            yield text

    monkeypatch.setattr(BodyDecoder, "feed", counted)
    poller = refresher(Simulator([good, bad]))

    async def refresh_beside_another_task() -> bool:
        async def other() -> None:
            while True:
                since_tick[0] = 0
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        try:
            return bool(await poller.poller.refresh())
        finally:
            task.cancel()

    assert poller.run(refresh_beside_another_task())
    assert poller.value("cloudflare_oauth_clients", account_id=bad.id) == 1  # repeats of one
    assert poller.value("cloudflare_oauth_account_up", account_id=bad.id) == 1
    assert most[0] <= 2, f"{most[0]} pieces of {PIECE} bytes parsed without a pause"


# Text escaping inflates: six bytes for a control, two for a quote or a backslash.
ESCAPED = {"\x00": r"\u0000", "\x1b": r"\u001b", "\x85": r"\u0085", "\u2028": r"\u2028",
           "\u2029": r"\u2029", "\ud800": r"\ud800", '"': r'\"', "\\": r"\\"}  # fmt: skip
_PAIR = r'([^\s="\\]+)=([^\s="\\]+|"(?:[^"\\]|\\.)*")'


def parse_logfmt(line: str) -> dict[str, str]:
    """Strictly: key=value pairs separated by one space, values plain or quoted."""
    assert re.fullmatch(rf"{_PAIR}(?: {_PAIR})*", line), line[:300]
    return {
        key: re.sub(r'\\(["\\])', r"\1", value[1:-1]) if value.startswith('"') else value
        for key, value in re.findall(_PAIR, line)
    }


def parse(line: str, log_format: str) -> dict[str, str]:
    return json.loads(line) if log_format == "json" else parse_logfmt(line)


def record_with(msg: str = "hostile", **fields: str) -> logging.LogRecord:
    record = logging.LogRecord("exporter.cloudflare", logging.WARNING, "", 0, msg, None, None)
    record.__dict__.update(fields)
    return record


EVERY_ESCAPE = "".join(ESCAPED)
# name: (the record, the escapes its line must show)
RECORDS = {
    # 8 fields of 5000 NULs: each of their 1024 kept characters takes 6 bytes once escaped.
    "escape-heavy fields": (
        lambda: record_with(**{f"f{n}": "\x00" * 5000 for n in range(8)}),
        [r"\u0000"],
    ),
    "every escape, in every field": (
        lambda: record_with(**{f"f{n}": EVERY_ESCAPE * 2000 for n in range(12)}),
        ESCAPED.values(),
    ),
    "many fields": (lambda: record_with(**{f"field{n}": f"v{n}" for n in range(3000)}), []),
    "many escape-heavy fields": (
        lambda: record_with(**{f"field{n}": EVERY_ESCAPE * 10 for n in range(2000)}),
        [r"\u0000", r"\u001b"],  # what is kept of each value: its first few characters
    ),
    "a huge message": (
        lambda: record_with(EVERY_ESCAPE * 200_000, account_id="a" * 32),
        ESCAPED.values(),
    ),
}


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
@pytest.mark.parametrize("case", sorted(RECORDS))
def test_no_log_line_exceeds_8_kb_whatever_its_fields(log_format, case):
    make, escapes = RECORDS[case]
    stream = io.StringIO()
    configure_logging("info", log_format, stream=stream)
    try:
        logging.getLogger("exporter.cloudflare").handle(make())
    finally:
        configure_logging("info", "logfmt")
    [line] = stream.getvalue().splitlines()
    assert len(line.encode("utf-8")) <= 8192  # strict: a raw lone surrogate would raise here
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]", line)
    fields = parse(line, log_format)
    assert {"ts", "level", "logger", "msg"} <= set(fields)  # what happened is always said
    assert fields["level"] == "warn"
    assert "more]" in line or "fields dropped" in line  # a cut is said
    if case.startswith("many"):
        assert fields["truncated"].endswith(" fields dropped to fit 8192 bytes")
        assert "field0" in fields  # the first fields are kept
    for escaped in escapes:
        assert escaped in line, escaped


def test_a_line_that_fits_is_written_whole_in_both_formats():
    record = record_with("account refresh failed", account_id="abc", err='say "x"\n\\ \u2028')
    logfmt = LogfmtFormatter().format(record)
    assert logfmt.split(" ", 1)[1] == (
        'level=warn logger=exporter.cloudflare msg="account refresh failed" account_id=abc '
        r'err="say \"x\"\u000a\\ \u2028"'
    )
    event = json.loads(JsonFormatter().format(record))
    assert event["err"] == 'say "x"\n\\ \u2028'
    assert "truncated" not in event


def traceback_record(depth: int) -> logging.LogRecord:
    """A record of a KeyError raised `depth` calls deep, as `log.exception` makes it (two
    functions call each other, so that Python does not fold the frames into one line)."""

    def ping(n: int) -> None:
        if n == 0:
            raise KeyError("account_id")
        pong(n - 1)

    def pong(n: int) -> None:
        ping(n)

    try:
        ping(depth)
    except KeyError:
        record = record_with("refresh crashed")
        record.exc_info = sys.exc_info()
        return record
    raise AssertionError("no KeyError")


def logged(line: str, formatter: type) -> dict[str, str]:
    """The fields of a line, newlines as they were logged."""
    if formatter is JsonFormatter:
        fields: dict[str, str] = json.loads(line)
        return fields
    return {k: v.replace(r"\u000a", "\n") for k, v in parse_logfmt(line).items()}


@pytest.mark.parametrize("formatter", [LogfmtFormatter, JsonFormatter])
def test_a_traceback_that_fits_is_written_whole(formatter):
    record = traceback_record(depth=15)  # 2 to 5 KB, with the checkout's path in every frame
    assert record.exc_info is not None
    written = logging.Formatter().formatException(record.exc_info)
    assert 1024 < len(written) < 7000  # more than the 1 KB a value was once cut to, and fits
    line = formatter().format(record)
    assert logged(line, formatter)["exception"] == written
    assert "more]" not in line


@pytest.mark.parametrize("formatter", [LogfmtFormatter, JsonFormatter])
def test_a_traceback_too_long_for_the_line_keeps_its_end(formatter):
    record = traceback_record(depth=200)  # ~50 KB
    record.err = "x" * 20_000  # cut too, from the end
    line = formatter().format(record)
    assert len(line.encode("utf-8")) <= 8192
    fields = logged(line, formatter)
    assert re.fullmatch(r"\[\d+ more\]\.\.\..*\nKeyError: 'account_id'", fields["exception"], re.S)
    assert re.fullmatch(r"x+\.\.\.\[\d+ more\]", fields["err"])


@pytest.mark.slow  # the 1 s --cloudflare.timeout is a real timer
def test_a_body_that_drips_for_ever_fails_its_account_at_the_timeout(refresher, caplog):
    good, bad = two_accounts(9)
    poller = refresher(Simulator([good, bad]), timeout=1.0, max_retries=0)
    assert poller.refresh()
    bad.fault = Fault.drip(every=0.1)  # a byte every 0.1 s: no single read ever waits 1 s
    with caplog.at_level(logging.WARNING):
        started = time.monotonic()
        refreshed = poller.run(asyncio.wait_for(poller.poller.refresh(), 20))  # a hang fails
        elapsed = time.monotonic() - started
    assert not refreshed
    assert 1.0 <= elapsed < 5, elapsed  # the timeout covers the whole body: one second of it
    [line] = [r for r in caplog.records if r.getMessage().startswith("account refresh failed")]
    assert line.account_id == bad.id
    assert line.err == "no complete answer within 1s (--cloudflare.timeout)"
    found = poller.samples()
    assert sample(found, "cloudflare_oauth_account_up", account_id=bad.id) == 0
    assert sample(found, "cloudflare_oauth_clients", account_id=bad.id) == 9  # last good
    assert sample(found, "cloudflare_oauth_account_up", account_id=good.id) == 1
    assert sample(found, "cloudflare_oauth_clients", account_id=good.id) == 9
    requests = "cloudflare_oauth_api_requests_total"
    endpoint = "/accounts/{account_id}/oauth_clients"
    assert sample(found, requests, endpoint=endpoint, code="timeout") == 1


# --- the exporter as its own process: memory -------------------------------------------------


# name: (the fault, what the one line says, refreshes to watch: junk comes every time)
HOSTILE = {
    "500 MB body": (lambda: Fault.clients_without_end(500), "larger than 256MiB", 1),
    "endless chunked body": (lambda: Fault.clients_without_end(None), "larger than 256MiB", 1),
    "gzip bomb (1 GiB)": (lambda: Fault.gzip_bomb(1024), "larger than 256MiB", 2),
    "50 MB of junk on every refresh": (lambda: Fault.junk(50), "not JSON (text/html)", 4),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_answer_costs_one_line_not_the_memory_limit(name):
    make_fault, reason, refreshes = HOSTILE[name]
    good, bad = two_accounts(30)
    simulator = Simulator([good, bad])
    with SimulatorThread(simulator) as api, ExporterProcess(
        "--cloudflare.api-url", api.url, "--refresh.interval", "2s", "--cloudflare.timeout", "60s",
        CLOUDFLARE_API_TOKEN=TOKEN,
    ) as exporter:  # fmt: skip
        exporter.wait_ready()
        bad.fault = make_fault()
        deadline = time.monotonic() + 120
        while len(failures(exporter.lines, bad.id)) < refreshes and time.monotonic() < deadline:
            time.sleep(0.2)
        found = samples(exporter.get("/metrics").text)
        peak = exporter.peak_rss() / 2**20
    lines = failures(exporter.lines, bad.id)
    assert len(lines) >= refreshes, "\n".join(exporter.lines[-20:])
    assert all(reason in line for line in lines)
    assert sample(found, "cloudflare_oauth_account_up", account_id=bad.id) == 0
    assert sample(found, "cloudflare_oauth_clients", account_id=bad.id) == 30  # last good
    assert sample(found, "cloudflare_oauth_account_up", account_id=good.id) == 1
    assert not [line for line in exporter.lines if "Traceback" in line or "crashed" in line]
    assert max(len(line.encode()) for line in exporter.lines) <= 8192
    assert peak < 100, f"peak RSS {peak:.1f} MB"


def failures(lines: list[str], account_id: str) -> list[str]:
    return [line for line in lines if "account refresh failed" in line and account_id in line]


@pytest.mark.slow
def test_endless_pages_of_new_ids_stop_at_the_cap_with_one_line():
    good, bad = two_accounts(30)
    bad.paging = "endless"
    with SimulatorThread(Simulator([good, bad])) as api, ExporterProcess(
        "--cloudflare.api-url", api.url, "--cloudflare.rate-limit", "0",
        "--cloudflare.max-clients-per-account", "20000", CLOUDFLARE_API_TOKEN=TOKEN,
    ) as exporter:  # fmt: skip
        exporter.wait_ready()
        found = samples(exporter.get("/metrics").text)
    [line] = failures(exporter.lines, bad.id)
    assert "more than 20000 distinct items" in line
    assert "--cloudflare.max-clients-per-account" in line
    assert sample(found, "cloudflare_oauth_account_up", account_id=bad.id) == 0
    assert sample(found, "cloudflare_oauth_account_up", account_id=good.id) == 1


@pytest.mark.slow
def test_one_answer_of_100000_clients_is_counted_exactly_in_bounded_memory():
    rng = random.Random(100)
    big = make_account(rng, "Big", 100_000, paging="spec")
    with SimulatorThread(Simulator([big], cache_pages=True)) as api, ExporterProcess(
        "--cloudflare.api-url", api.url, CLOUDFLARE_API_TOKEN=TOKEN,  # default flags
    ) as exporter:  # fmt: skip
        # Scrapes keep being answered while the answer is parsed (the event loop stays free):
        # the benchmark measures how fast; here, that none waits for the refresh.
        answered = 0
        deadline = time.monotonic() + 120  # it takes ~5 s: a hang fails, never waits forever
        while exporter.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "never ready:\n" + "\n".join(exporter.lines)
            assert exporter.get("/metrics").status_code == 200
            answered += 1
        found = samples(exporter.get("/metrics").text)
        peak = exporter.peak_rss() / 2**20
    assert sample(found, "cloudflare_oauth_clients", account_id=big.id) == 100_000
    assert answered > 0
    assert peak < 100, f"peak RSS {peak:.1f} MB"
    body = json.dumps(big.clients[0])
    assert len(body) > 500  # the clients are realistic in size: ~1 KB each, ~120 MB in all
