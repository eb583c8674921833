"""The alert rules, checked and unit-tested by the real promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from exporter.findings import FINDINGS, PUBLIC_UNVERIFIED
from tests.support.tools import ALERTS, ROOT, bundled_rules, require_tool

RULE_TESTS = ROOT / "tests" / "rules" / "alerts.test.yml"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *map(str, args)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_rules_pass_promtool_check():
    result = promtool("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(bundled_rules())} rules found" in result.stdout


@pytest.mark.slow
def test_rule_unit_tests_pass():
    result = promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing():
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in bundled_rules()}
    assert names - firing == set()
    assert names - quiet == set()


def test_every_alert_says_what_to_do_and_how_bad_it_is():
    for rule in bundled_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert len(rule["annotations"]["description"]) > 80, rule["alert"]


def _findings_selected(expr: str) -> list[str]:
    (selector,) = re.findall(r'finding=~?"([^"]+)"', expr)
    return str(selector).split("|")


def test_the_finding_alerts_cover_every_finding_the_exporter_knows_once():
    by_name = {rule["alert"]: rule for rule in bundled_rules()}
    risky = _findings_selected(by_name["CloudflareOAuthClientGainedRiskyFinding"]["expr"])
    public = by_name["CloudflareOAuthUnverifiedPublicClientAppeared"]
    unverified = _findings_selected(public["expr"])
    assert unverified == [PUBLIC_UNVERIFIED]
    assert sorted(risky + unverified) == sorted(FINDINGS)


RUNBOOK = ROOT / "docs" / "runbook.md"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    """{heading anchor: section text} of every `## ` section of the runbook."""
    parts = re.split(r"^## (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {
        github_anchor(heading): body for heading, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def test_every_alert_links_its_own_runbook_section():
    home = yaml.safe_load((ROOT / "helm/cloudflare-oauth-exporter/Chart.yaml").read_text())["home"]
    sections = runbook_sections()
    for rule in bundled_rules():
        url = rule["annotations"]["runbook_url"]
        assert url == f"{home}/blob/main/docs/runbook.md#{github_anchor(rule['alert'])}"
        section = sections[url.partition("#")[2]]
        for part in ("**What it means.**", "**How to confirm.**", "**What to do.**"):
            assert part in section, (rule["alert"], part)
    # ...and the runbook has no section for an alert that no longer exists.
    assert set(sections) == {github_anchor(rule["alert"]) for rule in bundled_rules()}


def test_the_runbooks_own_links_lead_somewhere():
    links = re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text())
    assert links
    assert set(links) <= set(runbook_sections())
    for path in re.findall(r"\]\((\.\./[^)#]+)\)", RUNBOOK.read_text()):
        assert (RUNBOOK.parent / path).exists(), path


PER_ACCOUNT_ALERTS = [
    "CloudflareOAuthAccountRefreshFailing", "CloudflareOAuthDataStale",
    "CloudflareOAuthClientVerificationFailed", "CloudflareOAuthRotatedSecretPending",
    "CloudflareOAuthClientGainedRiskyFinding", "CloudflareOAuthUnverifiedPublicClientAppeared",
    "CloudflareOAuthClientMadePublic", "CloudflareOAuthClientCreated",
    "CloudflareOAuthClientRedirectURIsChanged",
]  # fmt: skip


@pytest.mark.parametrize("name", PER_ACCOUNT_ALERTS)
def test_per_account_alerts_name_the_account_when_the_exporter_knows_it(name):
    rule = next(rule for rule in bundled_rules() if rule["alert"] == name)
    # joined with cloudflare_oauth_account_info, or with a nameless stand-in when there is none
    assert "group_left (account_name)" in rule["expr"]
    assert "cloudflare_oauth_account_info or on (job, instance, account_id)" in rule["expr"]
    assert "{{ with $labels.account_name }}" in rule["annotations"]["summary"]


def readme_queries() -> list[str]:
    """Each query in the README's PromQL blocks; an indented line goes on with the one before."""
    queries: list[str] = []
    for block in re.findall(r"```promql\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        for line in block.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0].isspace() and queries:
                queries[-1] += " " + line.strip()
            else:
                queries.append(line.strip())
    return queries


@pytest.mark.slow
def test_the_readme_queries_are_promql_prometheus_accepts(tmp_path):
    queries = readme_queries()
    assert len(queries) >= 6
    rules = [{"record": f"readme:query_{n}", "expr": query} for n, query in enumerate(queries)]
    path = tmp_path / "readme-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "readme", "rules": rules}]}))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
