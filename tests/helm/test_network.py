"""NetworkPolicy and PodDisruptionBudget."""

from __future__ import annotations

import pytest
from kubernetes_validate.utils import validate as validate_kubernetes

from tests.support.helm import (
    KUBE_VERSIONS,
    WITH_TOKEN,
    merged,
    scenario_values,
)


def test_network_policy_allows_only_dns_and_https_out_and_metrics_in(render):
    values = scenario_values("all-enabled-values.yaml")
    release = render(values)
    policy = release.one("NetworkPolicy")["spec"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]

    # A rule without ports would allow every port.
    assert all(rule.get("ports") for rule in policy["egress"])
    egress = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert egress == {(53, "UDP"), (53, "TCP"), (443, "TCP")}

    (ingress,) = policy["ingress"]
    metrics_port = release.container["ports"][0]
    assert [(p["port"], p["protocol"]) for p in ingress["ports"]] == [
        (metrics_port["name"], metrics_port["protocol"])
    ]
    assert ingress["from"] == values["networkPolicy"]["ingressFrom"]


def test_network_policy_without_peers_admits_any_scraper(render):
    policy = render(merged(WITH_TOKEN, {"networkPolicy": {"enabled": True}})).one("NetworkPolicy")
    (ingress,) = policy["spec"]["ingress"]
    assert "from" not in ingress


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        ({}, {"maxUnavailable": 1}),
        ({"minAvailable": 1}, {"minAvailable": 1}),
        ({"minAvailable": "50%"}, {"minAvailable": "50%"}),
    ],
    ids=["default", "min-available", "min-available-percent"],
)
def test_pod_disruption_budget_selects_the_pods(render, budget, expected):
    release = render(merged(WITH_TOKEN, {"podDisruptionBudget": {"enabled": True, **budget}}))
    pdb = release.one("PodDisruptionBudget")
    validate_kubernetes(pdb, KUBE_VERSIONS[0], strict=True)
    spec = dict(pdb["spec"])
    selector = spec.pop("selector")
    assert spec == expected
    pod_labels = release.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector["matchLabels"]
    assert selector["matchLabels"].items() <= pod_labels.items()
