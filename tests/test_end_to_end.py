"""A real Prometheus scrapes the exporter, evaluates the alert rules and answers every panel."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import bcrypt
import pytest
import yaml

from exporter.simulator import Fault, Simulator, make_account
from tests.support.process import ExporterProcess
from tests.support.prometheus import Prometheus, prometheus_scraping
from tests.support.simulator import TOKEN
from tests.support.tls import make_pki
from tests.support.tools import ALERTS, bundled_rules, dashboard_queries

pytestmark = pytest.mark.slow  # every test here starts a process


@pytest.fixture(scope="module")
def stack(tmp_path_factory, simulator_thread) -> Iterator[tuple[Prometheus, dict[str, str]]]:
    rng = random.Random(2024)
    good = make_account(rng, "Good", 120)
    small = make_account(rng, "Small", 4)
    failing = make_account(rng, "Failing", 9)
    failing.fault = Fault.api_error(403, 10000, "Authentication error")
    simulator_thread.simulator = Simulator([good, small, failing])

    workdir = tmp_path_factory.mktemp("prometheus")
    # A test copy of the rules with every `for:` shortened, so alerts go pending within seconds.
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    (workdir / "alerts.yml").write_text(yaml.safe_dump(rules))

    with ExporterProcess(
        "--cloudflare.api-url", simulator_thread.url, "--refresh.interval", "2s",
        CLOUDFLARE_API_TOKEN=TOKEN,
    ) as exporter:  # fmt: skip
        exporter.wait_ready()
        job = {"static_configs": [{"targets": [exporter.url.removeprefix("http://")]}]}
        with prometheus_scraping(workdir, job, (str(workdir / "alerts.yml"),)) as prometheus:
            # enough samples for rate() over the dashboard's interval
            prometheus.wait_for(
                lambda: (
                    len(prometheus.query("cloudflare_oauth_api_requests_total[20s]")) > 0
                    and all(
                        len(s["values"]) >= 5
                        for s in prometheus.query("cloudflare_oauth_account_up[20s]")
                    )
                ),
                "five scrapes",
            )
            yield prometheus, {"good": good.id, "small": small.id, "failing": failing.id}


def substitute(expr: str) -> str:
    return expr.replace("$account", ".*").replace("$__rate_interval", "15s")


def test_the_scrape_target_is_up(stack):
    prometheus, _ = stack
    (sample,) = prometheus.query('up{job="cloudflare-oauth-exporter"}')
    assert sample["value"][1] == "1"


@pytest.mark.parametrize(("title", "expr"), dashboard_queries())
def test_every_dashboard_panel_returns_series(stack, title, expr):
    prometheus, _ = stack
    result = prometheus.query(substitute(expr))
    assert result, f"panel {title!r}: {substitute(expr)} returned nothing"


def test_the_account_variable_lists_every_account(stack):
    prometheus, accounts = stack
    values = prometheus.get(
        "/api/v1/label/account_id/values", **{"match[]": "cloudflare_oauth_account_up"}
    )
    assert set(values) == set(accounts.values())


def test_numbers_arrive_exactly(stack):
    prometheus, accounts = stack
    totals = {
        s["metric"]["account_id"]: s["value"][1]
        for s in prometheus.query("cloudflare_oauth_clients")
    }
    assert totals == {accounts["good"]: "120", accounts["small"]: "4"}


def test_every_rule_loads_healthy(stack):
    prometheus, _ = stack
    groups = prometheus.get("/api/v1/rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(bundled_rules())
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))


def test_a_failing_account_drives_its_alert(stack):
    prometheus, accounts = stack

    def refresh_alerts() -> list[dict[str, Any]]:
        return [
            alert
            for alert in prometheus.get("/api/v1/alerts")["alerts"]
            if alert["labels"]["alertname"] == "CloudflareOAuthAccountRefreshFailing"
        ]

    alerts = prometheus.wait_for(refresh_alerts, "CloudflareOAuthAccountRefreshFailing")
    assert {a["labels"]["account_id"] for a in alerts} == {accounts["failing"]}
    assert alerts[0]["state"] in {"pending", "firing"}
    # discovery told the exporter the account's name, and the alert says it
    assert alerts[0]["labels"]["account_name"] == "Failing"
    assert alerts[0]["annotations"]["summary"] == (
        f"Cloudflare account Failing ({accounts['failing']}) cannot be read"
    )


def test_prometheus_scrapes_over_tls_with_basic_auth(tmp_path, serve_simulator):
    pki = make_pki(tmp_path)
    password = "scrape-secret"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    config = tmp_path / "web.yml"
    config.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
    )
    (account,) = [make_account(random.Random(8), "Over TLS", 7)]
    url = serve_simulator(Simulator([account]))
    with ExporterProcess(
        "--cloudflare.api-url", url, "--web.config.file", str(config), CLOUDFLARE_API_TOKEN=TOKEN
    ) as exporter:
        target = exporter.url.removeprefix("http://")
        job = {
            "scheme": "https",
            "tls_config": {"ca_file": str(pki.ca), "server_name": "localhost"},
            "basic_auth": {"username": "prometheus", "password": password},
            "static_configs": [{"targets": [target]}],
        }
        with prometheus_scraping(tmp_path / "prom", job) as prometheus:
            found = prometheus.wait_for(
                lambda: prometheus.query("cloudflare_oauth_clients"), "a scrape over TLS"
            )
            assert found[0]["metric"]["account_id"] == account.id
            assert found[0]["value"][1] == "7"
            (up,) = prometheus.query('up{job="cloudflare-oauth-exporter"}')
            assert up["value"][1] == "1"
