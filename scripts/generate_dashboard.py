"""Generate the Grafana dashboard with grafana-foundation-sdk.

    .venv/bin/python scripts/generate_dashboard.py   # rewrites the committed JSON

The JSON is committed (the chart ships it, Grafana users import it); a test fails when it drifts
from this script. Every panel query uses only `$account` and `$__rate_interval`, which the
end-to-end test substitutes before running each query against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from exporter.findings import RISKY_FINDINGS

OUTPUT = (
    Path(__file__).resolve().parent.parent
    / "helm"
    / "cloudflare-oauth-exporter"
    / "files"
    / "dashboard.json"
)
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
ACCOUNT = 'account_id=~"$account"'
# The findings that make a client risky, as the alert CloudflareOAuthClientGainedRiskyFinding
# selects them: every finding but public_unverified, which has its own, milder alert.
RISKY = "|".join(RISKY_FINDINGS)


def query(expr: str, legend: str = "") -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(expr).datasource(DATASOURCE).ref_id("A")
    return target.legend_format(legend) if legend else target


def legend() -> common.VizLegendOptions:
    return (
        common.VizLegendOptions()
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.RIGHT)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )


def series(title: str, description: str, expr: str, legend_format: str, unit: str = "short",
           *, stacked: bool = False, width: int = 12) -> timeseries.Panel:  # fmt: skip
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr, legend_format))
        .unit(unit)
        .min(0)
        .legend(legend())
        .height(8)
        .span(width)
    )
    if stacked:
        panel = panel.stacking(common.StackingConfig().mode(StackingMode.NORMAL)).fill_opacity(30)
    return panel


def single(title: str, description: str, expr: str, width: int = 6) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr))
        .graph_mode(BigValueGraphMode.AREA)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .height(4)
        .span(width)
    )


def build() -> dashboard.Dashboard:
    return (
        dashboard.Dashboard("Cloudflare OAuth clients")
        .uid("cloudflare-oauth-exporter")
        .description(
            "OAuth clients of Cloudflare accounts, from cloudflare-oauth-exporter: counts by "
            "visibility, auth method and verification status, rotated secrets pending deletion, "
            "and the exporter's health."
        )
        .tags(["cloudflare", "oauth", "security"])
        .time("now-7d", "now")
        .refresh("1m")
        .with_variable(
            dashboard.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
        )
        .with_variable(
            dashboard.QueryVariable("account")
            .label("Account")
            .datasource(DATASOURCE)
            .query("label_values(cloudflare_oauth_account_up, account_id)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(VariableOption(text="All", value="$__all", selected=True))
        )
        .with_row(dashboard.Row("Overview"))
        .with_panel(single(
            "OAuth clients", "All OAuth clients of the selected accounts.",
            f"sum(cloudflare_oauth_clients{{{ACCOUNT}}})",
        ))
        .with_panel(single(
            "Accounts failing", "Selected accounts whose last refresh failed (counts are stale).",
            f"count(cloudflare_oauth_account_up{{{ACCOUNT}}} == 0) or vector(0)",
        ))
        .with_panel(single(
            "Rotated secrets pending", "Clients whose rotated secret has not been deleted yet.",
            f"sum(cloudflare_oauth_clients_rotated_secret_pending{{{ACCOUNT}}})",
        ))
        .with_panel(single(
            "Verification failed", "Clients whose client URI verification failed.",
            f'sum(cloudflare_oauth_clients_by_verification_status{{{ACCOUNT},status="failed"}})',
        ))
        .with_row(dashboard.Row("Clients"))
        .with_panel(series(
            "Clients per account", "Number of OAuth clients in each account.",
            f"cloudflare_oauth_clients{{{ACCOUNT}}}", "{{account_id}}", width=24,
        ))
        .with_panel(series(
            "By visibility", "Public clients are meant for use beyond your own account.",
            f"sum by (visibility) (cloudflare_oauth_clients_by_visibility{{{ACCOUNT}}})",
            "{{visibility}}", stacked=True,
        ))
        .with_panel(series(
            "By token endpoint auth method",
            "'none' are public clients without a secret; 'unspecified' set no method.",
            f"sum by (auth_method) (cloudflare_oauth_clients_by_auth_method{{{ACCOUNT}}})",
            "{{auth_method}}", stacked=True,
        ))
        .with_panel(series(
            "By client URI verification status",
            "'none' have no verification; 'failed' could not prove control of the domain.",
            f"sum by (status) (cloudflare_oauth_clients_by_verification_status{{{ACCOUNT}}})",
            "{{status}}", stacked=True,
        ))
        .with_panel(series(
            "Rotated secrets pending deletion",
            "Clients whose old secret still works because it was rotated but not deleted.",
            f"cloudflare_oauth_clients_rotated_secret_pending{{{ACCOUNT}}}", "{{account_id}}",
        ))
        .with_panel(series(
            "By grant type", "Clients allowing each OAuth grant type.",
            f"sum by (grant_type) (cloudflare_oauth_clients_by_grant_type{{{ACCOUNT}}})",
            "{{grant_type}}",
        ))
        .with_panel(series(
            "By response type",
            "Clients allowing each response type ('token' is the implicit flow).",
            f"sum by (response_type) (cloudflare_oauth_clients_by_response_type{{{ACCOUNT}}})",
            "{{response_type}}",
        ))
        .with_row(dashboard.Row("Security findings"))
        .with_panel(series(
            "Clients with findings",
            "Clients holding each finding (README: http or wildcard redirect URIs, wildcard CORS, "
            "implicit grant, public and unverified, invalid URIs).",
            f"sum by (finding) (cloudflare_oauth_clients_with_finding{{{ACCOUNT}}})",
            "{{finding}}", width=12,
        ))
        .with_panel(series(
            "Accounts with risky clients",
            "Per account, clients with an http or wildcard redirect URI, a wildcard CORS origin, "
            "the implicit grant or an invalid URI.",
            "sum by (account_id) "
            f'(cloudflare_oauth_clients_with_finding{{{ACCOUNT},finding=~"{RISKY}"}})',
            "{{account_id}}", width=12,
        ))
        .with_row(dashboard.Row("Changes"))
        .with_panel(series(
            "Client changes per account",
            "OAuth clients created, deleted or changed between two refreshes, per account and "
            "kind; the exporter's audit log (logger exporter.audit) names each client.",
            "sum by (account_id, change) "
            f"(increase(cloudflare_oauth_client_changes_total{{{ACCOUNT}}}[$__rate_interval]))",
            "{{account_id}} {{change}}", stacked=True, width=12,
        ))
        .with_panel(series(
            "Changed fields",
            "Changed clients per field that changed; findings: the set of findings a client "
            "holds. Made public and risky findings gained have alerts of their own.",
            "sum by (field) "
            f"(increase(cloudflare_oauth_client_field_changes_total{{{ACCOUNT}}}[$__rate_interval]))",
            "{{field}}", stacked=True, width=12,
        ))
        .with_row(dashboard.Row("Exporter health"))
        .with_panel(series(
            "Account up", "1 if the last refresh of the account succeeded.",
            f"cloudflare_oauth_account_up{{{ACCOUNT}}}", "{{account_id}}",
        ).max(1))
        .with_panel(series(
            "Age of last successful refresh",
            "Alerts fire when this exceeds three refresh intervals.",
            f"time() - cloudflare_oauth_account_last_success_timestamp_seconds{{{ACCOUNT}}}",
            "{{account_id}}", "s",
        ))
        .with_panel(series(
            "Refresh duration", "How long the last refresh of each account took.",
            f"cloudflare_oauth_account_refresh_duration_seconds{{{ACCOUNT}}}", "{{account_id}}",
            "s",
        ))
        .with_panel(series(
            "API requests by code",
            "Cloudflare API requests per second by HTTP status; 429 means the token is throttled.",
            "sum by (code) (rate(cloudflare_oauth_api_requests_total[$__rate_interval]))",
            "{{code}}", "reqps", stacked=True,
        ))
    )  # fmt: skip


# The newest dashboard schema that npm @grafana/schema (tests/dashboard/package.json) describes;
# a test holds the two together. The SDK release pinned in pyproject.toml writes 36, but the
# migrations from 37 to 42 only rewrite what this dashboard does not have (hidden legends, table
# cell display modes, the timeSeriesTable transformation, an unset refresh, timepicker
# time_options, hideFrom overrides), so Grafana loads it unchanged as 42.
SCHEMA_VERSION = 42
# Keys the pinned SDK still writes that the schema no longer knows: a variable's interval-only
# `auto*` settings and `id`, and the dashboard's `style`, which Grafana has ignored since 8.
UNKNOWN_VARIABLE_KEYS = ("auto", "auto_count", "auto_min", "id")
UNKNOWN_DASHBOARD_KEYS = ("style",)


def to_schema(board: dict[str, Any]) -> dict[str, Any]:
    """The SDK's output as the current schema has it (see SCHEMA_VERSION), panel ids unique."""
    board = {k: v for k, v in board.items() if k not in UNKNOWN_DASHBOARD_KEYS}
    board["schemaVersion"] = SCHEMA_VERSION
    board["templating"] = {
        "list": [
            {k: v for k, v in variable.items() if k not in UNKNOWN_VARIABLE_KEYS}
            for variable in board["templating"]["list"]
        ]
    }
    # The SDK leaves panels without ids and gives every row 0; links to a panel need its own.
    board["panels"] = [{**panel, "id": n} for n, panel in enumerate(board["panels"], start=1)]
    return board


def render() -> str:
    built = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    return json.dumps(to_schema(built), indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
