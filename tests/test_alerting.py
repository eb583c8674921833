"""Alerts delivered end to end: exporter -> Prometheus -> Alertmanager -> a webhook of our own.

The route is the README's own; Alertmanager is Debian's prometheus-alertmanager. The simulator
starts with a failing account, a risky client appears in another, then the fault is cleared.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.simulator import Fault, SimAccount, Simulator, make_account
from tests.support.process import ExporterProcess
from tests.support.prometheus import free_port, prometheus_scraping, served
from tests.support.simulator import TOKEN, SimulatorThread
from tests.support.tools import ALERTS, ROOT, bundled_alert, require_tool

pytestmark = pytest.mark.slow  # every test here starts processes

README = ROOT / "README.md"


def readme_route() -> dict[str, Any]:
    """The Alertmanager configuration the README shows, as written there."""
    text = README.read_text()
    section = text[text.index("A minimal Alertmanager route") :]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)[:1]
    config: dict[str, Any] = yaml.safe_load(block)
    return config


def amtool_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("amtool"), "check-config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


class Webhook:
    """An HTTP receiver on loopback that keeps every notification Alertmanager posts."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with received._lock:
                    received.notifications.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def alerts(self, status: str, alertname: str) -> list[dict[str, Any]]:
        """Alerts named `alertname` that arrived with `status` (firing or resolved)."""
        with self._lock:
            return [
                alert
                for notification in self.notifications
                for alert in notification["alerts"]
                if alert["status"] == status and alert["labels"]["alertname"] == alertname
            ]

    def wait_for(self, status: str, alertname: str, timeout: float = 90) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := self.alerts(status, alertname):
                return found
            time.sleep(0.2)
        pytest.fail(f"no {status} {alertname} notification within {timeout:.0f}s")

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def alertmanager(workdir: Path, config: Path) -> Iterator[str]:
    """Debian's prometheus-alertmanager on loopback, alone (no cluster); yields host:port."""
    port = free_port()
    command = [
        require_tool("prometheus-alertmanager"),
        f"--config.file={config}",
        f"--storage.path={workdir / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with served("Alertmanager", command, workdir / "alertmanager.log", f"http://127.0.0.1:{port}"):
        yield f"127.0.0.1:{port}"


def rules_for_the_test() -> dict[str, Any]:
    """The project's rules with `for:` compressed to 2s, so alerts fire within seconds of a fresh
    Prometheus."""
    rules: dict[str, Any] = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    return rules


@dataclass
class Delivery:
    webhook: Webhook
    failing: SimAccount
    risky: SimAccount
    config: Path


@pytest.fixture(scope="module")
def delivery(tmp_path_factory, simulator_thread: SimulatorThread) -> Iterator[Delivery]:
    rng = random.Random(14)
    risky = make_account(rng, "Risky Corp", 6)  # https redirects only, to begin with
    failing = make_account(rng, "Failing Corp", 3)
    failing.fault = Fault.api_error(403, 10000, "Authentication error")
    simulator_thread.simulator = Simulator([risky, failing])

    workdir = tmp_path_factory.mktemp("alerting")
    (workdir / "alerts.yml").write_text(yaml.safe_dump(rules_for_the_test()))
    with Webhook() as webhook:
        route = readme_route()
        receiver = next(r for r in route["receivers"] if r.get("webhook_configs"))
        receiver["webhook_configs"][0]["url"] = webhook.url
        # Alertmanager's waits, shortened as the rules' are: notify within a second.
        route["route"]["routes"][0].update(group_wait="1s", group_interval="1s")
        config = workdir / "alertmanager.yml"
        config.write_text(yaml.safe_dump(route))
        with (
            ExporterProcess("--cloudflare.api-url", simulator_thread.url,
                            "--refresh.interval", "1s", CLOUDFLARE_API_TOKEN=TOKEN) as exporter,
            alertmanager(workdir, config) as manager,
        ):  # fmt: skip
            exporter.wait_ready()
            job = {"static_configs": [{"targets": [exporter.url.removeprefix("http://")]}]}
            with prometheus_scraping(
                workdir, job, (str(workdir / "alerts.yml"),), alertmanagers=(manager,)
            ) as prometheus:
                webhook.wait_for("firing", "CloudflareOAuthAccountRefreshFailing")
                # The finding counters scraped at 0 first (increase() needs a before), then a
                # client turns risky.
                before = (
                    f'cloudflare_oauth_clients_with_finding{{account_id="{risky.id}",'
                    'finding="http_redirect_uri"} offset 10s'
                )
                prometheus.wait_for(lambda: prometheus.query(before), "ten seconds of findings")
                risky.clients[0]["redirect_uris"] = ["http://app.example.com/callback"]
                webhook.wait_for("firing", "CloudflareOAuthClientGainedRiskyFinding")
                failing.fault = None
                webhook.wait_for("resolved", "CloudflareOAuthAccountRefreshFailing")
                yield Delivery(webhook, failing, risky, config)


def test_amtool_accepts_the_readme_route_and_the_tests_config(tmp_path, delivery):
    as_written = tmp_path / "readme.yml"
    as_written.write_text(yaml.safe_dump(readme_route()))
    for config in (as_written, delivery.config):
        result = amtool_check(config)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


def test_a_failing_account_arrives_named_with_its_labels_and_annotations(delivery):
    (alert, *_) = delivery.webhook.alerts("firing", "CloudflareOAuthAccountRefreshFailing")
    failing = delivery.failing
    rule = bundled_alert("CloudflareOAuthAccountRefreshFailing")
    assert alert["labels"]["severity"] == rule["labels"]["severity"] == "warning"
    assert alert["labels"]["account_id"] == failing.id
    assert alert["labels"]["account_name"] == "Failing Corp"
    annotations = alert["annotations"]
    assert (
        annotations["summary"] == f"Cloudflare account Failing Corp ({failing.id}) cannot be read"
    )
    assert annotations["description"].startswith(
        f"Every refresh of account {failing.id} has failed"
    )
    assert annotations["runbook_url"] == rule["annotations"]["runbook_url"]
    assert httpx.URL(annotations["runbook_url"]).fragment == "cloudflareoauthaccountrefreshfailing"


def test_a_client_turned_risky_arrives_with_its_finding(delivery):
    alerts = delivery.webhook.alerts("firing", "CloudflareOAuthClientGainedRiskyFinding")
    (alert,) = {a["fingerprint"]: a for a in alerts}.values()  # repeats of one alert
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["account_id"] == delivery.risky.id
    assert alert["labels"]["finding"] == "http_redirect_uri"
    assert alert["annotations"]["summary"] == (
        f"An OAuth client of account Risky Corp ({delivery.risky.id}) gained the finding "
        "http_redirect_uri"
    )
    assert alert["annotations"]["description"].startswith(
        f"In the last hour an OAuth client of account {delivery.risky.id} was created"
    )
    assert alert["annotations"]["runbook_url"].endswith("#cloudflareoauthclientgainedriskyfinding")


def test_the_resolved_notification_follows_when_the_fault_is_cleared(delivery):
    (resolved, *_) = delivery.webhook.alerts("resolved", "CloudflareOAuthAccountRefreshFailing")
    assert resolved["labels"]["account_id"] == delivery.failing.id
    assert resolved["endsAt"] >= resolved["startsAt"]
    notification = next(n for n in delivery.webhook.notifications if resolved in n["alerts"])
    assert notification["status"] == "resolved"
    assert notification["receiver"] == "cloudflare-oauth"
