"""The status page at `/`: a summary, every account's health, counts and findings, as plain HTML.

Server-rendered once per refresh from what the refresh published (`StatusPage` keeps the bytes
and their gzip), so any number of visitors cost what sending the bytes costs. No script and no
external asset; every string that came from the API is escaped, and the page is served with a
Content-Security-Policy that forbids scripts, so a mistake here could not run one either.

The page is a list of sections, each a small function from the same `PageData` to HTML: add one
by writing the function and listing it in `SECTIONS`.
"""

from __future__ import annotations

import gzip
import heapq
import html
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from exporter import __version__
from exporter.changes import NotListed, RecentChange
from exporter.durations import format_duration
from exporter.exposition import ExpositionStore
from exporter.findings import (
    FINDINGS,
    HTTP_REDIRECT_URI,
    IMPLICIT_GRANT,
    INVALID_URI,
    PUBLIC_UNVERIFIED,
    RISKY_FINDINGS,
    WILDCARD_CORS_ORIGIN,
    WILDCARD_REDIRECT_URI,
)
from exporter.refresh_status import RefreshStatus
from exporter.selection import ClientRecord
from exporter.snapshot import AccountSnapshot

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
MAX_ACCOUNTS = 1000  # rows; the rest are counted, and /metrics has them all
MAX_CLIENTS_PER_FINDING = 100
MAX_NAME = 128  # characters of an account or client name shown
MAX_ERROR = 300
MAX_DETAIL = 300  # characters of one changed value shown (URIs can be long)

# Most severe first: a redirect an attacker can choose, then codes or tokens exposed on the way,
# then what widens who may call the client, then what is merely unproven. All but the last
# are warnings in the bundled alerts.
SEVERITY = (
    WILDCARD_REDIRECT_URI,
    HTTP_REDIRECT_URI,
    IMPLICIT_GRANT,
    WILDCARD_CORS_ORIGIN,
    INVALID_URI,
    PUBLIC_UNVERIFIED,
)
_WHY = {
    WILDCARD_REDIRECT_URI: "a pattern lets an attacker choose where the code is sent",
    HTTP_REDIRECT_URI: "codes and tokens travel in clear text to this redirect",
    IMPLICIT_GRANT: "access tokens come back in the redirect URL, where they leak",
    WILDCARD_CORS_ORIGIN: "any web page may call the client's endpoints from a user's browser",
    INVALID_URI: "a URI the authorization server and the client may read differently",
    PUBLIC_UNVERIFIED: "a public client whose domain ownership is unproven",
}
_INFO = frozenset(FINDINGS) - frozenset(RISKY_FINDINGS)  # shown in yellow, not red

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; padding: 1.2em 1.5em;
  max-width: 1400px; color: #1a1a1a; }
h1 { font-size: 1.45em; margin: 0 0 .2em; }
h2 { font-size: 1.15em; margin: 1.4em 0 .4em; }
h3 { font-size: 1em; margin: 1.1em 0 .3em; }
p.meta { color: #555; margin: 0 0 1em; }
.banner { border: 2px solid #b00020; background: #fdecee; padding: .7em 1em; margin: 0 0 1em;
  border-radius: 4px; overflow-wrap: anywhere; }
.banner.wait { border-color: #8a6d00; background: #fff8e1; }
.banner .hint { display: block; margin-top: .3em; }
dl.summary { display: flex; flex-wrap: wrap; gap: .4em 1.8em; margin: 0 0 1em;
  padding: .7em 1em; background: #f5f5f5; border-radius: 4px; }
dl.summary div { min-width: 0; }
dl.summary dt { color: #555; font-size: .85em; }
dl.summary dd { margin: 0; font-size: 1.15em; font-weight: 600; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
th, td { border: 1px solid #d5d5d5; padding: .35em .55em; text-align: left; vertical-align: top;
  overflow-wrap: anywhere; }
th { background: #f0f0f0; }
td.clients { text-align: right; font-variant-numeric: tabular-nums; }
tr.down td { background: #fff5f5; }
.down .state { color: #b00020; font-weight: 700; }
.up .state { color: #1b5e20; }
.bad { color: #b00020; }
.muted { color: #767676; }
.error { display: block; margin-top: .2em; }
.hint { color: #555; font-size: .9em; }
code { font-size: .88em; }
.finding { display: inline-block; margin: 0 .3em .25em 0; padding: 0 .45em; border-radius: 3px;
  background: #fbe0e0; border: 1px solid #e8a9a9; white-space: nowrap; }
.finding.info { background: #fff3cd; border-color: #e6cf7f; }
.finding b { margin-left: .25em; }
"""


@dataclass(frozen=True)
class PageData:
    """What every section reads: the accounts in page order, and the last refresh."""

    accounts: Sequence[AccountSnapshot]  # failing first, then by name
    status: RefreshStatus | None  # None until the first refresh has ended
    telemetry_path: str
    per_client: bool
    changes: Sequence[RecentChange] = ()  # newest first
    version: str = __version__

    @property
    def shown(self) -> Sequence[AccountSnapshot]:
        return self.accounts[:MAX_ACCOUNTS]


Section = Callable[[PageData], str]


def render_status_page(
    snapshots: Iterable[AccountSnapshot],
    status: RefreshStatus | None,
    *,
    telemetry_path: str,
    per_client: bool,
    changes: Sequence[RecentChange] = (),
) -> str:
    data = PageData(_page_order(snapshots), status, telemetry_path, per_client, changes)
    body = "".join(section(data) for section in SECTIONS)
    return (
        '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Cloudflare OAuth exporter</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )


class StatusPage:
    """The page as bytes and as gzip, made again only when a refresh has ended since."""

    def __init__(self, store: ExpositionStore, *, telemetry_path: str, per_client: bool) -> None:
        self._store = store
        self._telemetry_path = telemetry_path
        self._per_client = per_client
        self._rendered_for = -1
        self._plain = b""
        self._gzipped = b""

    def plain(self) -> tuple[bytes]:
        self._render()
        return (self._plain,)

    def gzipped(self) -> bytes:
        self._render()
        return self._gzipped

    def _render(self) -> None:
        if self._rendered_for != self._store.refreshes:
            refreshes = self._store.refreshes
            page = render_status_page(
                self._store.snapshots(),
                self._store.refresh_status,
                telemetry_path=self._telemetry_path,
                per_client=self._per_client,
                changes=self._store.recent_changes(),
            )
            self._plain = page.encode("utf-8", "replace")  # never a 500 for one odd char
            self._gzipped = gzip.compress(self._plain, compresslevel=6, mtime=0)
            self._rendered_for = refreshes


# --- sections, top to bottom ---------------------------------------------------------------


def header(data: PageData) -> str:
    path = _escape(data.telemetry_path)
    return (
        "<h1>Cloudflare OAuth exporter</h1>\n"
        f'<p class="meta">Version {_escape(data.version)} &middot; '
        f'<a href="{path}">{path}</a> &middot; <a href="/healthz">/healthz</a> &middot; '
        '<a href="/readyz">/readyz</a> &middot; numbers from the background refresh, never '
        "from a scrape; this page is rendered once per refresh.</p>\n"
    )


def banners(data: PageData) -> str:
    """What must not be missed: a failed discovery, every account failing, no refresh yet."""
    status = data.status
    if status is None:
        return (
            '<div class="banner wait" role="status"><strong>The first refresh is running.'
            "</strong> This page shows its results when it ends.</div>\n"
        )
    found: list[str] = []
    failure = status.discovery_failure
    if failure is not None:
        known = len(data.accounts)
        kept = (
            f"The {known} account{'s' if known != 1 else ''} found before keep being refreshed."
            if known
            else "No account is known, so nothing is exported."
        )
        found.append(
            '<div class="banner" role="alert" id="discovery-failed"><strong>Account discovery '
            f"failed:</strong> {_escape(_cut(str(failure), MAX_ERROR))}. {kept}"
            f"{_hint(failure.hint)}</div>\n"
        )
    down = [account for account in data.accounts if not account.up]
    if down and len(down) == len(data.accounts):
        first = down[0].last_error
        found.append(
            '<div class="banner" role="alert" id="all-failing"><strong>Every account failed its '
            f"last refresh.</strong> The first says: {_escape(_cut(str(first or ''), MAX_ERROR))}"
            f"{_hint(first.hint if first else None)}</div>\n"
        )
    return "".join(found)


def summary(data: PageData) -> str:
    accounts = data.accounts
    up = sum(account.up for account in accounts)
    counted = [account.counts for account in accounts if account.counts is not None]
    clients = sum(counts.total for counts in counted)
    findings = sum(count for counts in counted for _, count in counts.by_finding)
    with_findings = sum(1 for counts in counted if any(count for _, count in counts.by_finding))
    items = [
        ("Accounts up", f"{up} of {len(accounts)}", up < len(accounts)),
        ("Clients", f"{clients:,}", False),
    ]
    holding = sum(counts.with_findings for counts in counted)
    items.append(("Clients holding findings", f"{holding:,}", holding > 0))
    items.append(
        (
            "Findings",
            f"{findings:,} in {with_findings} account{'s' if with_findings != 1 else ''}"
            if findings
            else "none",
            findings > 0,
        )
    )
    items.append(("Discovery", *_discovery(data.status)))
    status = data.status
    if status is not None:
        took = format_duration(status.duration)
        items.append(("Last refresh", f"{_time(status.finished_at)}, took {took}", False))
        if status.next_at is not None:
            items.append(("Next refresh", _time(status.next_at), False))
    rendered = "".join(
        f"<div><dt>{label}</dt><dd{' class=bad' if bad else ''}>{value}</dd></div>"
        for label, value, bad in items
    )
    return f'<dl class="summary" id="summary">{rendered}</dl>\n'


def accounts_table(data: PageData) -> str:
    shown = data.shown
    if not shown:
        return '<h2>Accounts</h2>\n<p class="muted">No account has been read yet.</p>\n'
    left_out = len(data.accounts) - len(shown)
    rows = "".join(_account_row(account) for account in shown)
    more = (
        f'<p id="left-out">{left_out:,} more account{"s" if left_out != 1 else ""} left out: '
        f"the page lists the first {MAX_ACCOUNTS:,}, failing ones first. "
        f'<a href="{_escape(data.telemetry_path)}">{_escape(data.telemetry_path)}</a> has every '
        "one.</p>\n"
        if left_out
        else ""
    )
    return (
        "<h2>Accounts</h2>\n"
        '<table id="accounts"><colgroup><col style="width:26%"><col style="width:27%">'
        '<col style="width:12%"><col style="width:7%"><col style="width:28%"></colgroup>\n'
        "<thead><tr><th>Account</th><th>Status</th><th>Last success</th><th>Clients</th>"
        "<th>Findings</th></tr></thead>\n"
        f"<tbody>\n{rows}</tbody></table>\n{more}"
    )


def clients_by_finding(data: PageData) -> str:
    """With --metrics.per-client: the clients holding each finding, most severe first.

    Per-client records can number millions (1,000 accounts of 5,000): only the first
    MAX_CLIENTS_PER_FINDING of each finding by name are kept while they are read, and an
    account's records hold the clients with findings first, so the rest are not read at all.
    """
    if not data.per_client:
        return ""
    # Every client holding each finding, in every account (not only those listed here, nor only
    # those with records): what cloudflare_oauth_clients_with_finding says.
    totals: dict[str, int] = {}
    for account in data.accounts:
        for finding, count in account.counts.by_finding if account.counts is not None else ():
            totals[finding] = totals.get(finding, 0) + count
    firsts: dict[str, list[_Listed]] = {f: [] for f in SEVERITY}
    read: dict[str, int] = {}
    for account in data.shown:
        for client in account.clients:
            if not client.findings:
                break
            listed = _Listed((client.client_name.casefold(), client.client_id), account, client)
            for finding in client.findings:
                read[finding] = read.get(finding, 0) + 1
                heap = firsts.setdefault(finding, [])
                if len(heap) < MAX_CLIENTS_PER_FINDING:
                    heapq.heappush(heap, listed)
                elif heap[0].key > listed.key:
                    heapq.heapreplace(heap, listed)
    parts = []
    for finding, heap in firsts.items():
        if heap:  # never counting fewer than listed: records and counts are of one refresh
            count = max(totals.get(finding, 0), read[finding])
            shown = sorted(heap, key=lambda listed: listed.key)
            parts.append(_finding_group(finding, shown, count))
    title = "<h2>Clients holding findings</h2>\n"
    return title + ("".join(parts) or '<p class="muted">No client holds a finding.</p>\n')


class _Listed:
    """A client a finding group may list, ordered by name; the heap keeps the last on top."""

    __slots__ = ("account", "client", "key")

    def __init__(self, key: tuple[str, str], account: AccountSnapshot, client: ClientRecord):
        self.key = key
        self.account = account
        self.client = client

    def __lt__(self, other: _Listed) -> bool:
        return self.key > other.key  # reversed: heapq keeps the one listed last on top


def recent_changes(data: PageData) -> str:
    """The last changes to OAuth clients across accounts, newest first (the audit trail's
    tail; the exporter's log, logger exporter.audit, has every one)."""
    e = _escape
    if not data.changes:
        return (
            '<h2>Recent changes</h2>\n<p class="muted">None seen yet: the first good refresh '
            "of an account is its baseline, and changes show from the next one.</p>\n"
        )
    rows = []
    for when, account_id, account_name, change in data.changes:
        if isinstance(change, NotListed):  # a burst: only its first changes were listed
            count = f"{change.count:,}"
            rows.append(
                f'<tr class="change more" data-account-id="{e(account_id)}"><td>{_time(when)}'
                f"</td><td>{e(_cut(account_name or account_id, MAX_NAME))}</td>"
                f'<td colspan="3" class="muted">and {e(count)} more changes in that refresh, '
                "counted by cloudflare_oauth_client_changes_total but not listed one by one"
                "</td></tr>\n"
            )
            continue
        what = ", ".join(f"{e(key)}: {e(_cut(value, MAX_DETAIL))}" for key, value in change.details)
        fields = e(", ".join(change.fields))
        rows.append(
            f'<tr class="change {e(change.change)}" data-account-id="{e(account_id)}">'
            f"<td>{_time(when)}</td>"
            f"<td>{e(_cut(account_name or account_id, MAX_NAME))}</td>"
            f"<td>{e(_cut(change.client_name, MAX_NAME)) or '<span class=muted>no name</span>'}"
            f"<br><code>{e(_cut(change.client_id, MAX_NAME))}</code></td>"
            f"<td>{e(change.change)}{f'<br><span class=hint>{fields}</span>' if fields else ''}"
            f"</td><td>{what}</td></tr>\n"
        )
    return (
        "<h2>Recent changes</h2>\n"
        '<table id="changes"><colgroup><col style="width:14%"><col style="width:16%">'
        '<col style="width:22%"><col style="width:16%"><col style="width:32%"></colgroup>\n'
        "<thead><tr><th>When</th><th>Account</th><th>Client</th><th>Change</th>"
        f"<th>What changed</th></tr></thead>\n<tbody>\n{''.join(rows)}</tbody></table>\n"
    )


SECTIONS: tuple[Section, ...] = (
    header, banners, summary, accounts_table, clients_by_finding, recent_changes,
)  # fmt: skip


# --- pieces ----------------------------------------------------------------------------------


def _page_order(snapshots: Iterable[AccountSnapshot]) -> list[AccountSnapshot]:
    return sorted(
        snapshots,
        key=lambda s: (s.up, (s.account_name or "").casefold(), s.account_id),
    )


def _account_row(account: AccountSnapshot) -> str:
    e = _escape
    name = e(_cut(account.account_name or "", MAX_NAME)) or '<span class="muted">no name</span>'
    if account.up:
        status = '<span class="state">up</span>'
    else:
        error = account.last_error
        status = (
            '<span class="state">down</span>'
            f'<span class="error">{e(_cut(str(error or ""), MAX_ERROR))}</span>'
            f"{_hint(error.hint if error else None)}"
        )
    success = (
        _time(account.last_success)
        if account.last_success is not None
        else '<span class="muted">never</span>'
    )
    counts = account.counts
    clients = f"{counts.total:,}" if counts is not None else ""
    return (
        f'<tr class="{"up" if account.up else "down"}" data-account-id="{e(account.account_id)}">'
        f'<td class="account">{name}<br><code>{e(account.account_id)}</code></td>'
        f'<td class="status">{status}</td><td class="success">{success}</td>'
        f'<td class="clients">{clients}</td><td class="findings">{_findings_cell(account)}</td>'
        "</tr>\n"
    )


def _findings_cell(account: AccountSnapshot) -> str:
    """Only the findings some client holds, most severe first; zeros are left out."""
    if account.counts is None:
        return '<span class="muted">not counted yet</span>'
    held = dict(account.counts.by_finding)
    badges = "".join(
        _badge(finding, held[finding]) for finding in _by_severity(held) if held[finding]
    )
    return badges or '<span class="muted">none</span>'


def _badge(finding: str, count: int) -> str:
    kind = "finding info" if finding in _INFO else "finding"
    return (
        f'<span class="{kind}" data-finding="{_escape(finding)}" data-count="{count}">'
        f"{_escape(finding)}<b>{count:,}</b></span>"
    )


def _finding_group(finding: str, shown: list[_Listed], count: int) -> str:
    """`shown`: the clients listed, in order; `count`: how many hold the finding in all."""
    e = _escape
    rows = "".join(
        f'<tr data-client-id="{e(client.client_id)}"><td>'
        f"{e(_cut(client.client_name, MAX_NAME)) or '<span class=muted>no name</span>'}</td>"
        f"<td><code>{e(client.client_id)}</code></td>"
        f"<td>{e(_cut(account.account_name or account.account_id, MAX_NAME))}</td>"
        f"<td>{e(', '.join(f for f in _by_severity(client.findings) if f != finding))}</td></tr>\n"
        for account, client in ((listed.account, listed.client) for listed in shown)
    )
    more = count - len(shown)
    left_out = (
        f'<p class="muted">{more:,} more; <code>cloudflare_oauth_client_finding'
        f'{{finding="{e(finding)}"}}</code> lists those with per-client series.</p>\n'
        if more
        else ""
    )
    clients = f"{count:,} client{'s' if count != 1 else ''}"
    why = _WHY.get(finding, "")
    return (
        f'<section class="finding-group" data-finding="{e(finding)}">'
        f"<h3>{e(finding)} &middot; {clients}"
        f"{f' <span class=hint>&mdash; {e(why)}</span>' if why else ''}</h3>\n"
        '<table class="clients"><colgroup><col style="width:30%"><col style="width:25%">'
        '<col style="width:25%"><col style="width:20%"></colgroup>\n'
        "<thead><tr><th>Client</th><th>Client ID</th><th>Account</th><th>Also holds</th></tr>"
        f"</thead>\n<tbody>\n{rows}</tbody></table>\n{left_out}</section>\n"
    )


def _discovery(status: RefreshStatus | None) -> tuple[str, bool]:
    if status is None:
        return "not yet", False
    if not status.discovering:
        return "off (--cloudflare.account-id)", False
    failure = status.discovery_failure
    if failure is None:
        return "ok", False
    code = f" (code {failure.code})" if failure.code is not None else ""
    return f"failed{code}", True


def _hint(hint: str | None) -> str:
    return f'<span class="hint">Usually: {_escape(hint)}.</span>' if hint else ""


def _by_severity(findings: Iterable[str]) -> list[str]:
    rank = {finding: index for index, finding in enumerate(SEVERITY)}
    return sorted(findings, key=lambda f: (rank.get(f, len(rank)), f))


def _time(unix: float) -> str:
    stamp = time.gmtime(unix)
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", stamp)
    return f'<time datetime="{iso}">{time.strftime("%Y-%m-%d %H:%M:%S", stamp)} UTC</time>'


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: str) -> str:
    return html.escape(text, quote=True)
