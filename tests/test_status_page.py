"""The status page: a failing discovery impossible to miss, a summary, failing accounts first,
findings that stand out, escaped API strings, a bounded size, rendered once per refresh — and,
in a real headless browser at 1280 px, nothing scrolling sideways."""

from __future__ import annotations

import gzip
import struct
from html.parser import HTMLParser

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.aggregation import count_clients
from exporter.exposition import ExpositionStore
from exporter.model import OAuthClient
from exporter.refresh_status import ApiFailure, RefreshStatus
from exporter.selection import ClientRecord
from exporter.simulator import Fault, Simulator, demo_accounts
from exporter.snapshot import AccountSnapshot
from exporter.status_page import MAX_ACCOUNTS, SEVERITY, StatusPage, render_status_page
from tests.support.browser import render_page, save_screenshot
from tests.support.process import ExporterProcess
from tests.support.simulator import TOKEN, SimulatorThread
from tests.support.tools import ROOT

A, B, C = "a" * 32, "b" * 32, "c" * 32
EVIL = '<script>alert(1)</script> & "Co"'
NOW = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
DONE = RefreshStatus(finished_at=NOW, next_at=NOW + 300, duration=2.5, discovering=True)


class Dom(HTMLParser):
    """Tags, text, the cells of each account row by class, badges, banners and summary items."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.title = ""
        self.body_attrs: dict[str, str | None] = {}
        self.rows: dict[str, dict[str, str]] = {}  # account id -> cell class -> text
        self.row_order: list[str] = []
        self.badges: dict[str, dict[str, int]] = {}  # account id -> finding -> count
        self.ids: list[str] = []  # elements with an id, in document order
        self.summary: dict[str, str] = {}
        self.groups: list[tuple[str, list[str]]] = []  # per-client: finding, client ids
        self._row: str | None = None
        self._cell: str | None = None
        self._stack: list[str] = []
        self._dt: str | None = None
        self._capture: str | None = None
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.append(attributes["id"])
        if tag == "tr" and "data-account-id" in attributes:
            self._row = attributes["data-account-id"] or ""
            self.rows[self._row] = {}
            self.row_order.append(self._row)
        elif tag == "td" and self._row is not None:
            self._cell = attributes.get("class") or ""
            self.rows[self._row][self._cell] = ""
        elif tag == "span" and attributes.get("data-finding") and self._row is not None:
            self.badges.setdefault(self._row, {})[attributes["data-finding"] or ""] = int(
                attributes["data-count"] or 0
            )
        elif tag == "section" and attributes.get("data-finding"):
            self.groups.append((attributes["data-finding"] or "", []))
        elif tag == "tr" and attributes.get("data-client-id") and self.groups:
            self.groups[-1][1].append(attributes["data-client-id"] or "")
        elif tag in ("dt", "dd"):
            self._capture = tag
            if tag == "dt":
                self._dt = ""
            elif self._dt is not None:
                self.summary[self._dt] = ""
        elif tag == "title":
            self._in_title = True
        elif tag == "body":
            self.body_attrs = attributes

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag in ("dt", "dd"):
            self._capture = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None and self._cell is not None:
            self.rows[self._row][self._cell] += data
        if self._capture == "dt" and self._dt is not None:
            self._dt += data
        elif self._capture == "dd" and self._dt is not None:
            self.summary[self._dt] += data
        if self._in_title:
            self.title += data


def parse(page: str) -> Dom:
    dom = Dom()
    dom.feed(page)
    return dom


def record(client_id: str, name: str, *findings: str) -> ClientRecord:
    return ClientRecord(client_id, name, "public", "none", "none", False, None, None, None,
                        frozenset(findings))  # fmt: skip


RISKY = OAuthClient("c1", "public", response_types=frozenset({"token"}))
COUNTS = count_clients([RISKY, OAuthClient("c2", "private", verification_status="verified")])


def test_every_api_string_is_escaped_and_failing_accounts_come_first():
    good = AccountSnapshot(
        A,
        EVIL,
        True,
        COUNTS,
        NOW - 90,
        0.5,
        clients=(record("c1", EVIL, "implicit_grant", "public_unverified"),),
    )
    down = AccountSnapshot(B, "zed", False, None, None, 0.1,
                           last_error=ApiFailure(403, 10000, '<b>"no"</b>'))  # fmt: skip
    page = render_status_page([good, down], DONE, telemetry_path="/m<x>", per_client=True)
    assert "<script>" not in page
    assert '<b>"no"</b>' not in page
    assert "&lt;b&gt;&quot;no&quot;&lt;/b&gt;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Co&quot;" in page
    assert 'href="/m&lt;x&gt;"' in page
    dom = parse(page)
    assert "script" not in dom.tags
    assert dom.row_order == [B, A]  # down first, although "zed" sorts after EVIL's "<"
    assert dom.rows[B]["status"].startswith('downHTTP 403 code 10000: <b>"no"</b>')
    assert "lack a permission" in dom.rows[B]["status"]  # what code 10000 usually means
    assert dom.rows[B]["success"] == "never"
    assert dom.rows[A]["account"] == EVIL + A
    assert dom.rows[A]["status"] == "up"
    assert dom.rows[A]["success"] == "2025-12-31 23:58:30 UTC"
    assert dom.rows[A]["clients"] == "2"


def test_a_hint_comes_from_the_api_code_never_from_the_words_of_a_message():
    said = ApiFailure(502, None, "the upstream answered code 9109: invalid token")
    down = AccountSnapshot(B, "Down", False, None, None, 0.1, last_error=said)
    dom = parse(render_status_page([down], DONE, telemetry_path="/metrics", per_client=False))
    assert dom.rows[B]["status"] == "downHTTP 502: the upstream answered code 9109: invalid token"


def test_only_the_findings_clients_hold_are_listed_most_severe_first():
    clients = [
        OAuthClient("c1", "public", response_types=frozenset({"token"})),
        OAuthClient("c2", "private", redirect_uris=("https://*.example.com/cb",)),
        OAuthClient("c3", "private", redirect_uris=("http://example.com/cb",)),
        OAuthClient("c4", "private", redirect_uris=("http://example.com/cb",)),
    ]
    risky = AccountSnapshot(A, "Risky", True, count_clients(clients), NOW, 0.1)
    clean = AccountSnapshot(B, "Clean", True, count_clients([OAuthClient("c", "private")]),
                            NOW, 0.1)  # fmt: skip
    dom = parse(render_status_page([risky, clean], DONE, telemetry_path="/metrics",
                                   per_client=False))  # fmt: skip
    assert list(dom.badges[A].items()) == [
        ("wildcard_redirect_uri", 1), ("http_redirect_uri", 2), ("implicit_grant", 1),
        ("public_unverified", 1),
    ]  # fmt: skip
    assert B not in dom.badges
    assert dom.rows[B]["findings"] == "none"


def test_a_failed_discovery_is_a_banner_above_everything_with_what_it_usually_means():
    failed = RefreshStatus(NOW, NOW + 300, 0.2, True, ApiFailure(403, 9109, "Invalid <token>"))
    dom = parse(render_status_page([], failed, telemetry_path="/metrics", per_client=False))
    assert dom.ids[0] == "discovery-failed"  # the first thing on the page after the title
    text = "".join(dom.text)
    assert "Account discovery failed: HTTP 403 code 9109: Invalid <token>." in text
    assert "No account is known, so nothing is exported." in text
    assert "Usually: the API token is invalid, expired or revoked" in text
    assert dom.summary["Discovery"] == "failed (code 9109)"
    assert dom.summary["Accounts up"] == "0 of 0"


def test_the_summary_says_what_an_sre_looks_for_first():
    holding = (record("c1", "One", "implicit_grant", "public_unverified"), record("c2", "Two"))
    good = AccountSnapshot(A, "Good", True, COUNTS, NOW, 0.1, clients=holding)
    down = AccountSnapshot(B, "Down", False, COUNTS, NOW - 600, 0.1,
                           last_error=ApiFailure(500, None, "Internal Server Error"))  # fmt: skip
    page = render_status_page([good, down], DONE, telemetry_path="/metrics", per_client=True)
    assert parse(page).summary == {
        "Accounts up": "1 of 2",
        "Clients": "4",
        "Clients holding findings": "2",  # from the counts, the failing account's last good ones
        "Findings": "4 in 2 accounts",
        "Discovery": "ok",
        "Last refresh": "2026-01-01 00:00:00 UTC, took 2.5s",
        "Next refresh": "2026-01-01 00:05:00 UTC",
    }
    explicit = RefreshStatus(NOW, None, 1.0, discovering=False)
    summary = parse(render_status_page([good], explicit, telemetry_path="/m", per_client=False))
    assert summary.summary["Discovery"] == "off (--cloudflare.account-id)"
    assert "Next refresh" not in summary.summary  # --once: there is none
    assert summary.summary["Clients holding findings"] == "1"  # counted with or without per-client


def test_before_the_first_refresh_ends_the_page_says_so():
    dom = parse(render_status_page([], None, telemetry_path="/metrics", per_client=False))
    assert "The first refresh is running." in "".join(dom.text)
    assert dom.summary["Discovery"] == "not yet"


def test_the_page_is_bounded_failing_accounts_first_with_a_line_for_the_rest():
    many = [
        AccountSnapshot(f"{n:032x}", f"Account {n:05}", n % 500 != 7, COUNTS, NOW, 0.1,
                        last_error=None if n % 500 != 7 else ApiFailure(503, None, "x"))
        for n in range(MAX_ACCOUNTS + 500)
    ]  # fmt: skip
    page = render_status_page(many, DONE, telemetry_path="/metrics", per_client=False)
    dom = parse(page)
    assert len(dom.rows) == MAX_ACCOUNTS
    failing = [a.account_id for a in many if not a.up]
    assert dom.row_order[: len(failing)] == failing  # every failing one is shown, first
    assert "500 more accounts left out: the page lists the first 1,000" in "".join(dom.text)
    assert len(page.encode()) < 1_500_000  # what a 1,000-row page weighs, at most


def test_with_per_client_the_clients_holding_findings_are_grouped_most_severe_first():
    clients = (
        record("c1", "Public app", "public_unverified"),
        record("c2", "Wild", "wildcard_redirect_uri", "implicit_grant"),
        record("c3", "<img>", "implicit_grant"),
        record("c4", "Clean"),
    )
    snapshot = AccountSnapshot(A, "Acme", True, COUNTS, NOW, 0.1, clients=clients)
    page = render_status_page([snapshot], DONE, telemetry_path="/metrics", per_client=True)
    dom = parse(page)
    assert dom.groups == [
        ("wildcard_redirect_uri", ["c2"]),
        ("implicit_grant", ["c3", "c2"]),  # by client name: "<img>" before "Wild"
        ("public_unverified", ["c1"]),
    ]
    assert [finding for finding, _ in dom.groups] == [
        f for f in SEVERITY if f in {g for g, _ in dom.groups}
    ]
    assert "&lt;img&gt;" in page
    none = render_status_page([], DONE, telemetry_path="/metrics", per_client=False)
    assert "<h2>Clients holding findings</h2>" not in none  # the section, not the summary


def test_a_finding_group_is_capped_with_a_pointer_to_the_metrics():
    clients = tuple(record(f"c{n:04}", f"App {n:04}", "implicit_grant") for n in range(130))
    snapshot = AccountSnapshot(A, "Acme", True, COUNTS, NOW, 0.1, clients=clients)
    dom = parse(render_status_page([snapshot], DONE, telemetry_path="/metrics", per_client=True))
    assert dom.groups == [("implicit_grant", [f"c{n:04}" for n in range(100)])]
    assert "30 more; cloudflare_oauth_client_finding" in "".join(dom.text)


def test_a_finding_group_counts_every_client_holding_it_as_the_metrics_do():
    # Per-client records are capped (--metrics.per-client-limit) and only the first 1,000
    # accounts are listed, but the count is the one cloudflare_oauth_clients_with_finding has.
    holders = [OAuthClient(f"c{n:04}", "private", response_types=frozenset({"token"}))
               for n in range(40)]  # fmt: skip
    counts = count_clients(holders)
    kept = tuple(record(f"c{n:04}", f"App {n:04}", "implicit_grant") for n in range(3))
    many = [AccountSnapshot(f"{n:032x}", f"Account {n:05}", True, counts, NOW, 0.1, clients=kept)
            for n in range(MAX_ACCOUNTS + 2)]  # fmt: skip
    page = render_status_page(many, DONE, telemetry_path="/metrics", per_client=True)
    total = sum(dict(a.counts.by_finding)["implicit_grant"] for a in many if a.counts)
    assert total == 40 * (MAX_ACCOUNTS + 2)
    assert f"implicit_grant &middot; {total:,} clients" in page
    assert f"{total - 100:,} more; <code>cloudflare_oauth_client_finding" in page


class Counted(tuple[ClientRecord, ...]):
    """Per-client records that count how many of them are read."""

    read = 0

    def __iter__(self):
        for item in super().__iter__():
            Counted.read += 1
            yield item


def test_listing_the_clients_holding_findings_reads_only_those_clients():
    holding = [record(f"h{n:04}", f"Risky {n:04}", "implicit_grant") for n in range(150)]
    clean = [record(f"c{n:05}", f"Clean {n:05}") for n in range(20_000)]
    snapshot = AccountSnapshot(A, "Acme", True, COUNTS, NOW, 0.1,
                               clients=Counted(holding + clean))  # fmt: skip
    Counted.read = 0
    dom = parse(render_status_page([snapshot], DONE, telemetry_path="/metrics", per_client=True))
    assert dom.groups == [("implicit_grant", [f"h{n:04}" for n in range(100)])]
    assert Counted.read <= 151  # records hold the clients with findings first: no more is read


def test_the_page_is_rendered_once_per_refresh_and_gzipped_once():
    store = ExpositionStore(discovering=True, refresh_interval=300, process_metrics=False)
    page = StatusPage(store, telemetry_path="/metrics", per_client=False)
    (first,) = page.plain()
    assert b"The first refresh is running." in first
    store.put(AccountSnapshot(A, "Acme", True, COUNTS, NOW, 0.1))
    assert all(page.plain()[0] is first for _ in range(100))  # the same bytes
    store.publish_refresh(DONE)
    (second,) = page.plain()
    assert second is not first
    assert b"Acme" in second
    zipped = page.gzipped()
    assert page.gzipped() is zipped
    assert gzip.decompress(zipped) == second
    assert len(zipped) < len(second)


def png_width(data: bytes) -> int:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width: int = struct.unpack(">I", data[16:20])[0]
    return width


@pytest.mark.slow
def test_a_real_browser_at_1280_px_shows_the_demo_without_scrolling_sideways():
    with ExporterProcess("--demo", "--metrics.per-client") as exporter:
        exporter.wait_ready()
        metrics = {
            family.name: family.samples
            for family in text_string_to_metric_families(exporter.get("/metrics").text)
        }
        page = exporter.get("/")
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        rendered = render_page(f"{exporter.url}/", width=1280)
    shot = save_screenshot(rendered, ROOT / "build" / "screenshots" / "status-page-1280.png")
    assert png_width(shot.read_bytes()) == 1280
    assert rendered.window_width == 1280
    assert rendered.scroll_width <= rendered.window_width  # nothing scrolls sideways
    dom = parse(rendered.html)
    assert rendered.title == dom.title == "Cloudflare OAuth exporter"  # no injected script ran
    assert "pwned" not in str(dom.body_attrs)
    assert "script" not in dom.tags
    assert "img" not in dom.tags
    text = "".join(dom.text)
    assert "<script>document.title='pwned'</script> Labs" in text  # shown, as text
    assert '<img src=x onerror="document.body.dataset.pwned=1">' in text
    up = {s.labels["account_id"]: s.value for s in metrics["cloudflare_oauth_account_up"]}
    clients = {s.labels["account_id"]: s.value for s in metrics["cloudflare_oauth_clients"]}
    findings = {
        (s.labels["account_id"], s.labels["finding"]): s.value
        for s in metrics["cloudflare_oauth_clients_with_finding"]
    }
    assert set(dom.rows) == set(up)
    assert [up[account] for account in dom.row_order] == sorted(up.values())  # failing first
    for account, cells in dom.rows.items():
        assert cells["status"].startswith("up" if up[account] else "down")
        assert cells["clients"] == (f"{clients[account]:,.0f}" if account in clients else "")
        held = {f: int(v) for (a, f), v in findings.items() if a == account and v}
        assert dom.badges.get(account, {}) == held
    assert "HTTP 403 code 10000: Authentication error" in text
    assert dom.summary["Accounts up"] == "4 of 5"
    assert dom.summary["Discovery"] == "ok"
    assert [g for g, _ in dom.groups] == [f for f in SEVERITY if f in {g for g, _ in dom.groups}]


@pytest.mark.slow
def test_a_real_browser_shows_a_token_that_cannot_list_accounts_at_first_glance():
    simulator = Simulator(demo_accounts())
    simulator.accounts_fault = Fault.api_error(403, 9109, "Invalid access token")
    with (
        SimulatorThread(simulator) as api,
        ExporterProcess("--cloudflare.api-url", api.url, CLOUDFLARE_API_TOKEN=TOKEN) as exporter,
    ):
        exporter.wait_ready()  # /readyz keeps its meaning: every known account was tried
        rendered = render_page(f"{exporter.url}/", width=1280, full_page=False)
    save_screenshot(rendered, ROOT / "build" / "screenshots" / "status-page-discovery-failed.png")
    dom = parse(rendered.html)
    assert dom.ids[0] == "discovery-failed"
    text = "".join(dom.text)
    assert "Account discovery failed: HTTP 403 code 9109: Invalid access token." in text
    assert "the API token is invalid, expired or revoked" in text
    assert rendered.scroll_width <= rendered.window_width


def test_recent_changes_are_listed_newest_first_and_escaped():
    from exporter.changes import ClientChange

    made = ClientChange("created", "c9", "<b>New</b>", (), (("visibility", "public"),))
    edited = ClientChange(
        "updated", "c1", "Old", ("visibility", "redirect_uris"),
        (("visibility", "private -> public"), ("redirect_uris_added", "http://x/" + "y" * 900)),
    )  # fmt: skip
    changes = [(NOW, A, "Acme <Prod>", edited), (NOW - 60, B, None, made)]
    page = render_status_page([], DONE, telemetry_path="/metrics", per_client=False,
                              changes=changes)  # fmt: skip
    section = page[page.index("<h2>Recent changes</h2>") :]
    assert section.index('data-account-id="' + A) < section.index('data-account-id="' + B)
    assert "Acme &lt;Prod&gt;" in section
    assert "&lt;b&gt;New&lt;/b&gt;" in section
    assert "<b>New</b>" not in section
    assert "visibility: private -&gt; public" in section
    assert "y" * 300 not in section  # long values are cut
    empty = render_status_page([], DONE, telemetry_path="/metrics", per_client=False)
    assert "None seen yet" in empty
