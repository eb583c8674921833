"""The exporter's pod: its command line, image, hardening, probes, labels and names."""

from __future__ import annotations

import re

import helm_python
import pytest

from tests.support.helm import (
    ACCOUNT_A,
    ACCOUNT_B,
    SCENARIOS,
    WITH_TOKEN,
    merged,
    scenario_values,
)


def test_default_flags_are_the_exporters_defaults(render):
    assert render(WITH_TOKEN).container["args"] == [
        "--refresh.interval=5m",
        "--cloudflare.concurrency=4",
        "--cloudflare.rate-limit=1000",
        "--cloudflare.timeout=10s",
        "--cloudflare.page-size=50",
        "--web.telemetry-path=/metrics",
        "--log.level=info",
        "--log.format=logfmt",
    ]


def test_values_become_flags_in_order_with_extra_args_last(render):
    release = render(
        merged(
            WITH_TOKEN,
            {
                "cloudflare": {
                    "accountIds": [ACCOUNT_B, ACCOUNT_A],
                    "apiUrl": "http://cloudflare-api.test:8080/client/v4",
                    "concurrency": 16,
                    "rateLimit": 1000000,
                    "timeout": "1m30s",
                    "pageSize": 1000,
                },
                "refreshInterval": "1h",
                "logLevel": "warn",
                "logFormat": "json",
                # a value that would break an unquoted YAML list item
                "extraArgs": ["--web.telemetry-path=/metrics", "--note=a: b # c"],
            },
        )
    )
    assert release.container["args"] == [
        f"--cloudflare.account-id={ACCOUNT_B}",
        f"--cloudflare.account-id={ACCOUNT_A}",
        "--cloudflare.api-url=http://cloudflare-api.test:8080/client/v4",
        "--refresh.interval=1h",
        "--cloudflare.concurrency=16",
        "--cloudflare.rate-limit=1000000",
        "--cloudflare.timeout=1m30s",
        "--cloudflare.page-size=1000",
        "--web.telemetry-path=/metrics",
        "--log.level=warn",
        "--log.format=json",
        "--web.telemetry-path=/metrics",
        "--note=a: b # c",
    ]


def test_extra_env_is_appended_after_the_charts_own(render):
    extra = [
        {"name": "TZ", "value": "UTC"},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    env = render(merged(WITH_TOKEN, {"extraEnv": extra})).container["env"]
    assert env[0]["name"] == "CLOUDFLARE_API_TOKEN_FILE"
    assert env[1:] == extra


def test_image_defaults_to_the_charts_app_version(chart, render):
    assert render(WITH_TOKEN).container["image"] == (
        f"cloudflare-oauth-exporter/cloudflare-oauth-exporter:{chart.metadata['appVersion']}"
    )
    registry = render(merged(WITH_TOKEN, {"image": {"registry": "registry.example.com/"}}))
    assert registry.container["image"].startswith(
        "registry.example.com/cloudflare-oauth-exporter/cloudflare-oauth-exporter:"
    )
    digest = "sha256:" + "ab" * 32
    pinned = render(merged(WITH_TOKEN, {"image": {"tag": "9.9.9", "digest": digest}}))
    assert pinned.container["image"].endswith(f"@{digest}")


def test_pod_is_hardened_by_default(render):
    release = render(WITH_TOKEN)
    assert release.pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert release.container["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert release.pod["automountServiceAccountToken"] is False
    assert release.one("ServiceAccount")["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m for m in release.container["volumeMounts"]}
    scratch = mounts.pop("/tmp")  # noqa: S108 - the container's own scratch space
    volume = next(v for v in release.pod["volumes"] if v["name"] == scratch["name"])
    assert volume["emptyDir"] == {}
    # Every other mount is read-only: /tmp is the only writable path.
    assert mounts
    assert all(m.get("readOnly") for m in mounts.values())


def test_resources_are_empty_and_replicas_one_by_default(render):
    release = render(WITH_TOKEN)
    assert release.container.get("resources", {}) == {}
    assert release.one("Deployment")["spec"]["replicas"] == 1


def test_default_rollout_never_runs_two_pollers_on_one_token(render):
    assert render(WITH_TOKEN).one("Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_probes_use_healthz_and_readyz_on_the_http_port(render):
    container = render(WITH_TOKEN).container
    assert container["ports"] == [{"name": "http", "containerPort": 9878, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    readiness = container["readinessProbe"]
    # Unready is only out of the Service; a first refresh of a big tenant may take minutes.
    assert readiness["periodSeconds"] * readiness["failureThreshold"] >= 60


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_selectors_are_stable_and_select_the_pods(render, scenario):
    release = render(scenario_values(scenario))
    deployment = release.workload
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "cloudflare-oauth-exporter",
        "app.kubernetes.io/instance": "demo",
    }
    assert not any("version" in key or key == "helm.sh/chart" for key in selector)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    for service in release.all("Service"):
        assert service["spec"]["selector"] == selector
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for obj in release.all(kind):
            key = "podSelector" if kind == "NetworkPolicy" else "selector"
            assert obj["spec"][key]["matchLabels"] == selector
    for obj in release.objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_names_fit_in_63_characters_for_the_longest_release_name(render):
    name = "a-release-name-as-long-as-helm-allows-it-53-chars-xyz"
    assert len(name) == 53
    helm_python.validate_release_name(name)
    release = render(
        merged(scenario_values("all-enabled-values.yaml"), {"fullnameOverride": ""}), name=name
    )
    dns_label = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    for obj in release.objects:
        assert len(obj["metadata"]["name"]) <= 63
        assert dns_label.match(obj["metadata"]["name"]), obj["metadata"]["name"]
        for value in obj["metadata"]["labels"].values():
            assert len(value) <= 63
    assert release.one("Deployment")["metadata"]["name"].startswith(name)
