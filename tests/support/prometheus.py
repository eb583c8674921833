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
    command = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--rules.alert.resend-delay=1s",  # resend firing alerts every second, not every minute
    ]
    url = f"http://127.0.0.1:{port}"
    with served("Prometheus", command, workdir / "prometheus.log", url):
        yield Prometheus(url)


@contextmanager
def served(name: str, command: list[str], log_path: Path, url: str) -> Iterator[None]:
    """`command` running, its output in `log_path`, until `url` answers /-/ready (as Prometheus
    and Alertmanager do); a process that exits or never gets ready fails the test with its log.
    Stopped at the end, killed if it does not stop."""
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not ready(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{name} did not start:\n" + log_path.read_text()[-4000:])
                time.sleep(0.2)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
