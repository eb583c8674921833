"""A real Prometheus (Debian's binary) on loopback: started, waited for, queried."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.tools import require_tool


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def get(self, path: str, **params: str) -> dict[str, Any]:
        body = httpx.get(f"{self.url}{path}", params=params, timeout=10).json()
        assert body["status"] == "success", body
        data: dict[str, Any] = body["data"]
        return data

    def wait_for(self, predicate, what: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        pytest.fail(f"timed out waiting for {what}")


@contextmanager
def prometheus_scraping(
    workdir: Path,
    job: dict[str, Any],
    rule_files: tuple[str, ...] = (),
    alertmanagers: tuple[str, ...] = (),
) -> Iterator[Prometheus]:
    """The Debian prometheus binary on loopback, scraping `job` and evaluating every second,
    sending alerts to `alertmanagers` (host:port) when given."""
    binary = require_tool("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": list(rule_files),
                "scrape_configs": [{"job_name": "cloudflare-oauth-exporter", **job}],
                "alerting": {
                    "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
                },
            }
        )
    )
    port = free_port()
    with (workdir / "prometheus.log").open("w") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                # resend firing alerts every second, not every minute
                "--rules.alert.resend-delay=1s",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            prometheus = Prometheus(f"http://127.0.0.1:{port}")
            prometheus.wait_for(lambda: ready(prometheus.url), "Prometheus to start", timeout=60)
            yield prometheus
        finally:
            process.terminate()
            process.wait(timeout=30)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
