"""The repository's paths, external tools, and the environment a child process gets."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
DASHBOARD = ROOT / "helm" / "cloudflare-oauth-exporter" / "files" / "dashboard.json"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """The path of an external tool; in CI (CI=true) a missing tool fails the test, never skips."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed; the README's test command installs it"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


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


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query in the committed Grafana dashboard."""
    board = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]
