"""The committed Grafana dashboard is what the generator makes, and its queries are well formed."""

from __future__ import annotations

import importlib.util
import json
import re

import yaml

from exporter.findings import FINDINGS, PUBLIC_UNVERIFIED
from exporter.metrics import ACCOUNT_FAMILIES
from tests.support.tools import DASHBOARD, ROOT, dashboard_queries


def load_generator():
    spec = importlib.util.spec_from_file_location(
        "generate_dashboard", ROOT / "scripts" / "generate_dashboard.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_json_matches_the_generator():
    assert DASHBOARD.read_text() == load_generator().render(), (
        "run: .venv/bin/python scripts/generate_dashboard.py"
    )


def test_every_required_panel_is_there():
    titles = {title for title, _ in dashboard_queries()}
    for title in (
        "Clients per account", "By visibility", "By token endpoint auth method",
        "By client URI verification status", "Rotated secrets pending deletion", "Account up",
        "Age of last successful refresh", "Refresh duration", "API requests by code",
    ):  # fmt: skip
        assert title in titles


def test_queries_only_use_exported_metrics_and_known_variables():
    exported = {family.name for family in ACCOUNT_FAMILIES} | {
        "cloudflare_oauth_api_requests_total",
        "cloudflare_oauth_discovery_up",
        "cloudflare_oauth_exporter_build_info",
        "cloudflare_oauth_exporter_refresh_interval_seconds",
    }
    for title, expr in dashboard_queries():
        names = set(re.findall(r"\bcloudflare_oauth_[a-z_]+", expr))
        assert names, title
        assert names <= exported, title
        assert set(re.findall(r"\$\w+", expr)) <= {"$account", "$__rate_interval"}, title


def test_account_variable_feeds_every_per_account_panel():
    board = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["account"]["includeAll"] is True
    for title, expr in dashboard_queries():
        if "cloudflare_oauth_api_requests_total" not in expr:
            assert 'account_id=~"$account"' in expr, title


def test_the_risky_clients_panel_selects_the_findings_the_alert_does():
    queries = dict(dashboard_queries())
    risky = queries["Accounts with risky clients"]
    (selected,) = re.findall(r'finding=~"([^"]+)"', risky)
    rules = yaml.safe_load((ROOT / "helm/cloudflare-oauth-exporter/files/alerts.yml").read_text())
    alert = next(
        rule for group in rules["groups"] for rule in group["rules"]
        if rule.get("alert") == "CloudflareOAuthRiskyClientAppeared"
    )  # fmt: skip
    assert f'finding=~"{selected}"' in alert["expr"]
    assert set(selected.split("|")) == set(FINDINGS) - {PUBLIC_UNVERIFIED}
