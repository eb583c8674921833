"""The status page at `/`: every account's health, counts and findings, as plain HTML.

Server-rendered from the snapshots the refresh already made, with no script and no external asset.
Every string that came from the API is escaped; the page is also served with a Content-Security-
Policy that forbids scripts, so a mistake here could not run one either.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from exporter import __version__
from exporter.durations import format_duration
from exporter.findings import FINDINGS
from exporter.snapshot import AccountSnapshot

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1a1a1a; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.down { color: #b00020; font-weight: bold; }
.up { color: #1b5e20; }
code { font-size: 90%; }
"""


def render_status_page(
    snapshots: Iterable[AccountSnapshot],
    *,
    telemetry_path: str,
    now: float,
    per_client: bool,
) -> str:
    accounts = sorted(snapshots, key=lambda s: ((s.account_name or "").lower(), s.account_id))
    e = _escape
    rows = "".join(_account_row(snapshot, now) for snapshot in accounts)
    finding_headers = "".join(f"<th>{e(finding)}</th>" for finding in FINDINGS)
    clients = (
        "".join(_clients_with_findings(snapshot) for snapshot in accounts) if per_client else ""
    )
    if per_client and not clients:
        clients = "<p>No client holds a finding.</p>"
    if per_client:
        clients = f"<h2>Clients with findings</h2>\n{clients}"
    empty = "" if accounts else "<p>No account has been read yet.</p>"
    path = e(telemetry_path)
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Cloudflare OAuth exporter</title><style>{_STYLE}</style></head>
<body>
<h1>Cloudflare OAuth exporter</h1>
<p>Version {e(__version__)}. Numbers come from the background refresh, never from a scrape.
<a href="{path}">{path}</a> &middot; <a href="/healthz">/healthz</a> &middot;
<a href="/readyz">/readyz</a></p>
<h2>Accounts</h2>
{empty}<table id="accounts">
<thead><tr><th>Account</th><th>ID</th><th>Status</th><th>Last success</th><th>Last error</th>
<th>Clients</th>{finding_headers}</tr></thead>
<tbody>
{rows}</tbody>
</table>
{clients}
</body>
</html>
"""


def _account_row(snapshot: AccountSnapshot, now: float) -> str:
    e = _escape
    status = '<td class="up">up</td>' if snapshot.up else '<td class="down">down</td>'
    if snapshot.last_success is None:
        success = "never"
    elif (age := round(now - snapshot.last_success)) < 1:
        success = "just now"
    else:
        success = f"{format_duration(age)} ago"
    counts = snapshot.counts
    total = str(counts.total) if counts is not None else ""
    by_finding = dict(counts.by_finding) if counts is not None else {}
    findings = "".join(f'<td class="num">{by_finding.get(f, "")}</td>' for f in FINDINGS)
    return (
        f'<tr data-account-id="{e(snapshot.account_id)}">'
        f"<td>{e(snapshot.account_name or '')}</td><td><code>{e(snapshot.account_id)}</code></td>"
        f"{status}<td>{e(success)}</td><td>{e(snapshot.last_error or '')}</td>"
        f'<td class="num">{total}</td>{findings}</tr>\n'
    )


def _clients_with_findings(snapshot: AccountSnapshot) -> str:
    e = _escape
    risky = [client for client in snapshot.clients if client.findings]
    if not risky:
        return ""
    items = "".join(
        f"<tr><td>{e(client.client_name)}</td><td><code>{e(client.client_id)}</code></td>"
        f"<td>{e(', '.join(sorted(client.findings)))}</td></tr>\n"
        for client in risky
    )
    title = snapshot.account_name or snapshot.account_id
    return (
        f"<h3>{e(title)}</h3>\n"
        f'<table class="clients" data-account-id="{e(snapshot.account_id)}">'
        "<thead><tr><th>Client</th><th>ID</th><th>Findings</th></tr></thead>\n"
        f"<tbody>\n{items}</tbody></table>\n"
    )


def _escape(text: str) -> str:
    return html.escape(text, quote=True)
