"""The repository's paths, external tools, and the environment a child process gets."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
CHART = ROOT / "helm" / "cloudflare-oauth-exporter"
DASHBOARD = CHART / "files" / "dashboard.json"
ALERTS = CHART / "files" / "alerts.yml"  # the plain Prometheus rule file the chart ships
# What is too big or slow to make on every run and does not belong in the repository: tools in
# their own environments, Debian roots, container images. scripts/test uses the same place.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / (
    "cloudflare-oauth-exporter-tests"
)
DASHBOARD_PACKAGES = ROOT / "tests" / "dashboard" / "package.json"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(message: str) -> NoReturn:
    """Something a test needs is not there: in CI (CI=true) the test fails, elsewhere it skips."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str, *other_names: str) -> str:
    """The path of an external tool, on PATH or among the tools scripts/test keeps in CACHE; with
    other names (one tool that distributions name differently), of the first name found."""
    for each in (name, *other_names):
        path = shutil.which(each) or shutil.which(each, path=str(CACHE / "bin"))
        if path is not None:
            return path
    names = " or ".join((name, *other_names))
    missing(f"{names} is not installed; the README's test command installs it")


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        missing(f"{what} needs root (podman and debootstrap as Debian packages them)")


def require_node_modules() -> Path:
    """tests/dashboard/package.json's packages, which scripts/test installs into CACHE under a
    name made from that file's content, so a changed pin never finds stale packages."""
    key = hashlib.sha256(DASHBOARD_PACKAGES.read_bytes()).hexdigest()[:16]
    path = CACHE / f"npm-{key}" / "node_modules"
    if not path.is_dir():
        missing(f"{path} is missing; the README's test command installs it")
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


def bundled_rules() -> list[dict[str, Any]]:
    """Every rule of the plain Prometheus rule file the chart ships."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def bundled_alert(name: str) -> dict[str, Any]:
    return next(rule for rule in bundled_rules() if rule.get("alert") == name)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query in the committed Grafana dashboard."""
    board = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]
