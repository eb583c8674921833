"""Shared fixtures: the project's API simulator on loopback, and real external tools."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.simulator import DEFAULT_TOKEN, Simulator, SimulatorThread

ROOT = Path(__file__).resolve().parent.parent
TOKEN = DEFAULT_TOKEN


def require_tool(name: str) -> str:
    """The path of an external tool; in CI (CI=true) a missing tool fails the test, never skips."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed; the README's test command installs it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def promtool() -> Callable[[bytes], subprocess.CompletedProcess[bytes]]:
    path = require_tool("promtool")

    def check(exposition: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [path, "check", "metrics"], input=exposition, capture_output=True, timeout=60
        )

    return check


@pytest.fixture(scope="session")
def simulator_thread() -> Iterator[SimulatorThread]:
    with SimulatorThread(Simulator()) as thread:
        yield thread


@pytest.fixture
def serve_simulator(simulator_thread: SimulatorThread) -> Callable[[Simulator], str]:
    """Serve a Simulator on loopback (one uvicorn thread per session); returns its base URL."""

    def start(simulator: Simulator) -> str:
        simulator_thread.simulator = simulator
        return simulator_thread.url

    return start


DASHBOARD = ROOT / "helm" / "cloudflare-oauth-exporter" / "files" / "dashboard.json"


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query in the committed Grafana dashboard."""
    board = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def exporter_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "exporter", *args]


def clean_environ(**extra: str) -> dict[str, str]:
    """The test process's environment without any Cloudflare or exporter settings."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLOUDFLARE_", "EXPORTER_"))
    }
    environ.update(extra)
    return environ
