"""The status page: right numbers, escaped names, checked in a real headless browser."""

from __future__ import annotations

import subprocess
import tempfile
from html.parser import HTMLParser

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.aggregation import count_clients
from exporter.model import OAuthClient
from exporter.selection import ClientRecord
from exporter.snapshot import AccountSnapshot
from exporter.status_page import render_status_page
from tests.support.process import ExporterProcess
from tests.support.tools import require_tool

A, B = "a" * 32, "b" * 32
EVIL = '<script>alert(1)</script> & "Co"'


class Dom(HTMLParser):
    """Tags seen, the text of each table cell by row, and attributes of interest."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.rows: dict[str, list[str]] = {}
        self.title = ""
        self.body_attrs: dict[str, str | None] = {}
        self._row: str | None = None
        self._cell: list[str] | None = None
        self._in_title = False
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attributes = dict(attrs)
        if tag == "tr" and "data-account-id" in attributes:
            self._row = attributes["data-account-id"]
            self.rows[self._row] = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "title":
            self._in_title = True
        elif tag == "body":
            self.body_attrs = attributes

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None and self._row is not None:
            self.rows[self._row].append("".join(self._cell))
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._in_title:
            self.title += data


def parse(page: str) -> Dom:
    dom = Dom()
    dom.feed(page)
    return dom


def test_the_page_escapes_every_api_string_and_shows_the_numbers():
    risky = OAuthClient("c1", "public", response_types=frozenset({"token"}))
    counts = count_clients([risky, OAuthClient("c2", "private")])
    record = ClientRecord("c1", EVIL, "public", "none", "none", False, None, None, None,
                          frozenset({"implicit_grant", "public_unverified"}))  # fmt: skip
    good = AccountSnapshot(A, EVIL, True, counts, 1000.0, 0.5, clients=(record,))
    down = AccountSnapshot(B, None, False, None, None, 0.1, last_error='HTTP 403: <b>"no"</b>')
    page = render_status_page([good, down], telemetry_path="/m<x>", now=1090.0, per_client=True)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Co&quot;" in page
    assert 'href="/m&lt;x&gt;"' in page
    dom = parse(page)
    assert "script" not in dom.tags
    assert dom.rows[A][:6] == [EVIL, A, "up", "1m30s ago", "", "2"]
    assert dom.rows[A][6:] == ["0", "0", "0", "1", "1", "0"]  # the findings, in README order
    assert dom.rows[B][:6] == ["", B, "down", "never", 'HTTP 403: <b>"no"</b>', ""]
    assert "c1" in "".join(dom.text)
    assert "implicit_grant, public_unverified" in "".join(dom.text)


def test_without_per_client_no_client_is_listed():
    counts = count_clients([OAuthClient("c1", "public")])
    snapshot = AccountSnapshot(A, "Acme", True, counts, 1.0, 0.1)
    page = render_status_page([snapshot], telemetry_path="/metrics", now=2.0, per_client=False)
    assert "Clients with findings" not in page
    assert parse(page).rows[A][3] == "1s ago"


def browser_dom(url: str) -> str:
    chromium = require_tool("chromium")
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=2000",
             "--dump-dom", url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_a_real_browser_shows_the_demo_numbers_and_runs_no_injected_script():
    with ExporterProcess("--demo", "--metrics.per-client") as exporter:
        exporter.wait_ready()
        metrics = {
            family.name: family.samples
            for family in text_string_to_metric_families(exporter.get("/metrics").text)
        }
        page = exporter.get("/")
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        dom = parse(browser_dom(f"{exporter.url}/"))
    assert dom.title == "Cloudflare OAuth exporter"  # an injected script would rename it
    assert "pwned" not in str(dom.body_attrs)
    assert "script" not in dom.tags
    assert "img" not in dom.tags
    text = "".join(dom.text)
    assert "<script>document.title='pwned'</script> Labs" in text  # shown, as text
    assert '<img src=x onerror="document.body.dataset.pwned=1">' in text
    clients = {s.labels["account_id"]: s.value for s in metrics["cloudflare_oauth_clients"]}
    up = {s.labels["account_id"]: s.value for s in metrics["cloudflare_oauth_account_up"]}
    assert set(dom.rows) == set(up)
    for account, cells in dom.rows.items():
        assert cells[2] == ("up" if up[account] else "down")
        assert cells[5] == (f"{clients[account]:.0f}" if account in clients else "")
    findings = {
        (s.labels["account_id"], s.labels["finding"]): s.value
        for s in metrics["cloudflare_oauth_clients_with_finding"]
    }
    order = ["http_redirect_uri", "wildcard_redirect_uri", "wildcard_cors_origin",
             "implicit_grant", "public_unverified", "invalid_uri"]  # fmt: skip
    for account, cells in dom.rows.items():
        if account in clients:
            assert cells[6:] == [f"{findings[(account, f)]:.0f}" for f in order]
    assert "HTTP 403 code 10000: Authentication error" in text
