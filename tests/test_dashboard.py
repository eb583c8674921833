"""The committed Grafana dashboard: the generator's output, sound queries, Grafana's own schema."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from typing import Any

import pytest

from exporter.families import ACCOUNT_FAMILIES
from exporter.findings import FINDINGS, PUBLIC_UNVERIFIED, RISKY_FINDINGS
from tests.support.tools import (
    DASHBOARD,
    ROOT,
    bundled_alert,
    dashboard_queries,
    require_node_modules,
    require_tool,
)


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
        "Client changes per account", "Changed fields",
    ):  # fmt: skip
        assert title in titles


def test_the_changes_panel_shows_each_account_and_kind():
    queries = dict(dashboard_queries())
    assert "sum by (account_id, change)" in queries["Client changes per account"]
    assert "cloudflare_oauth_client_changes_total" in queries["Client changes per account"]


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
    alert = bundled_alert("CloudflareOAuthClientGainedRiskyFinding")
    assert f'finding=~"{selected}"' in alert["expr"]
    assert set(selected.split("|")) == set(RISKY_FINDINGS) == set(FINDINGS) - {PUBLIC_UNVERIFIED}


# --- Grafana's own schema: npm @grafana/schema, checked by the TypeScript compiler ---------------

TYPE_CHECK = """import type {{ Dashboard }} from "@grafana/schema";

// An object literal checked with `satisfies`: every key must be one the type declares.
const dashboard = {board} satisfies Dashboard;
export default dashboard;
"""
TSCONFIG = {
    "compilerOptions": {
        "strict": True, "noEmit": True, "target": "es2022", "module": "esnext",
        "moduleResolution": "bundler", "skipLibCheck": True,
    },
    "files": ["dashboard.ts"],
}  # fmt: skip


def type_check(directory, board) -> subprocess.CompletedProcess[str]:
    """`tsc --strict` on the dashboard as a TypeScript literal that must satisfy `Dashboard`."""
    modules = require_node_modules()
    (directory / "node_modules").symlink_to(modules)
    (directory / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    (directory / "dashboard.ts").write_text(TYPE_CHECK.format(board=json.dumps(board, indent=2)))
    return subprocess.run(
        [require_tool("node"), str(modules / "typescript" / "bin" / "tsc"), "-p", str(directory)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_dashboard_satisfies_grafanas_own_dashboard_type(tmp_path):
    result = type_check(tmp_path, json.loads(DASHBOARD.read_text()))
    assert result.returncode == 0, result.stdout + result.stderr


def _with_unknown_key(where: str) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    if where == "dashboard":
        board["style"] = "dark"
    elif where == "variable":
        board["templating"]["list"][1]["auto_count"] = 30
    else:
        next(p for p in board["panels"] if p["type"] == "timeseries")["fieldConfig"]["defaults"][
            "colour"
        ] = {}
    return board


@pytest.mark.slow
@pytest.mark.parametrize(
    ("where", "key"),
    [("dashboard", "style"), ("variable", "auto_count"), ("field-config", "colour")],
)
def test_the_type_check_refuses_keys_grafana_does_not_know(tmp_path, where, key):
    # The check above could pass by checking nothing; here it must catch what it exists for.
    result = type_check(tmp_path, _with_unknown_key(where))
    assert result.returncode != 0
    assert f"known properties, and '\"{key}\"' does not exist in type" in result.stdout, (
        result.stdout
    )


@pytest.mark.slow
def test_schema_version_is_the_newest_grafanas_package_describes():
    modules = require_node_modules()
    newest = subprocess.run(
        [require_tool("node"), "-e",
         "process.stdout.write(String(require('@grafana/schema').defaultDashboard.schemaVersion))"],
        cwd=modules.parent, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert json.loads(DASHBOARD.read_text())["schemaVersion"] == int(newest)
