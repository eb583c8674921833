"""checkov, the scanner prometheus-community's chart CI runs, on every ci/ scenario's manifests.

The checks the chart leaves to the user on purpose are skipped in one place, the chart's
.checkov.yaml, each with its reason; every other check must pass.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.helm import SCENARIOS, scenario_values
from tests.support.tools import CHART, require_tool

CONFIG = CHART / ".checkov.yaml"


def write_manifests(render, directory: Path) -> int:
    """Every scenario's rendered manifests, one folder each; returns how many resources checkov
    should see: every object, and every workload's container once more."""
    objects = 0
    for scenario in SCENARIOS:
        release = render(scenario_values(scenario))
        folder = directory / scenario.removesuffix("-values.yaml")
        folder.mkdir()
        for path, text in release.manifests.items():
            if path.endswith(".yaml") and text.strip():
                (folder / Path(path).name).write_text(text)
        objects += len(release.objects) + len(release.pod["containers"])
    return objects


def checkov(directory: Path, *options: str) -> dict[str, Any]:
    # --skip-download: no call home for guidelines; the checks themselves ship with checkov.
    result = subprocess.run(
        [require_tool("checkov"), "--directory", str(directory), "--framework", "kubernetes",
         "--skip-download", "--quiet", "--compact", "--output", "json", *options],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def failed(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(check["check_id"], check["file_path"]) for check in report["results"]["failed_checks"]}


@pytest.fixture(scope="module")
def manifests(render, tmp_path_factory) -> tuple[Path, int]:
    directory = tmp_path_factory.mktemp("manifests")
    return directory, write_manifests(render, directory)


def skipped_checks() -> list[str]:
    return list(yaml.safe_load(CONFIG.read_text())["skip-check"])


@pytest.mark.slow
def test_every_scenario_passes_every_check_not_skipped_on_purpose(manifests):
    directory, objects = manifests
    report = checkov(directory, "--config-file", str(CONFIG))
    assert failed(report) == set()
    assert report["summary"]["parsing_errors"] == 0
    # Every object scanned, the prometheus-operator kinds too.
    assert report["summary"]["resource_count"] == objects
    assert report["summary"]["passed"] > 20 * len(SCENARIOS)


@pytest.mark.slow
def test_each_skipped_check_is_one_the_chart_fails_on_purpose(manifests):
    # A skip that hides nothing would let a later failure of that check through unnoticed.
    directory, _ = manifests
    without_skips = {check for check, _ in failed(checkov(directory))}
    assert without_skips == set(skipped_checks())


def test_every_skip_says_why():
    lines = CONFIG.read_text().splitlines()
    for check in skipped_checks():
        (line,) = [n for n, text in enumerate(lines) if re.match(rf"\s*- {check}\b", text)]
        # the check's title beside it, and a reason on a comment line above its group
        assert re.search(rf"- {check}\s+# \S", lines[line]), lines[line]
        above = lines[:line]
        assert any(text.strip().startswith("# ") for text in above[-6:]), check
