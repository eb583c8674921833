"""The chart as Helm's strict linter and Kubernetes' own schemas see it, scenario by scenario."""

from __future__ import annotations

import re
from xml.etree import ElementTree

import helm_python
import pytest
import yaml
from kubernetes_validate.utils import validate as validate_kubernetes

from tests.support.helm import (
    KUBE_VERSIONS,
    PROMETHEUS_OPERATOR,
    SCENARIOS,
    WITH_TOKEN,
    merged,
    scenario_values,
)
from tests.support.tools import CHART, ROOT


def test_ci_scenarios_cover_the_documented_setups():
    assert {
        "default-values.yaml",
        "existing-secret-values.yaml",
        "all-enabled-values.yaml",
        "email-key-values.yaml",
    } <= set(SCENARIOS)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_chart_lints_strictly(scenario, kube_version):
    report = helm_python.lint(
        CHART, scenario_values(scenario), strict=True, kube_version=f"v{kube_version}"
    )
    assert report["errors"] == []
    assert report["messages"] == []  # not even an info ("icon is recommended")


def test_lint_reports_values_the_schema_rejects():
    report = helm_python.lint(CHART, merged(WITH_TOKEN, {"logFormat": "xml"}), strict=True)
    assert any("logFormat" in m["error"] for m in report["messages"] if m["severity"] >= 2)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_manifest_is_valid_kubernetes(render, scenario, kube_version):
    release = render(scenario_values(scenario))
    validated = []
    for obj in release.objects:
        if obj["apiVersion"] == PROMETHEUS_OPERATOR:
            continue  # a CRD kind: checked against the test's own schema below
        validate_kubernetes(obj, kube_version, strict=True)
        validated.append(obj["kind"])
    assert "Service" in validated
    assert release.workload["kind"] in validated


def test_all_enabled_scenario_renders_every_kind(render):
    release = render(scenario_values("all-enabled-values.yaml"))
    kinds = sorted(obj["kind"] for obj in release.objects)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]


def test_optional_objects_are_off_by_default(render):
    kinds = sorted(obj["kind"] for obj in render(WITH_TOKEN).objects)
    assert kinds == ["Deployment", "Secret", "Service", "ServiceAccount"]


def test_the_oldest_kubernetes_checked_is_the_oldest_the_chart_accepts():
    declared = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    assert declared == f">={KUBE_VERSIONS[0]}-0"


# GitHub's rule for a user or organization name.
GITHUB_ACCOUNT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")


def test_maintainers_are_accounts_chart_testing_can_find():
    # chart-testing's maintainer check asks the git host for https://<host>/<name>; offline, the
    # next best thing: a well-formed account name, the project's owner among them.
    metadata = yaml.safe_load((CHART / "Chart.yaml").read_text())
    owner = re.fullmatch(r"https://github\.com/([^/]+)/[^/]+", metadata["home"])
    assert owner is not None
    names = [maintainer["name"] for maintainer in metadata["maintainers"]]
    assert all(GITHUB_ACCOUNT.fullmatch(name) for name in names), names
    assert owner.group(1) in names
    assert metadata["sources"] == [metadata["home"]]


def test_the_icon_is_an_svg_of_this_repository():
    metadata = yaml.safe_load((CHART / "Chart.yaml").read_text())
    repository = metadata["home"].removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{repository}/main/"
    assert metadata["icon"].startswith(prefix)
    icon = ROOT / metadata["icon"].removeprefix(prefix)
    root = ElementTree.parse(icon).getroot()  # noqa: S314 - our own file
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
