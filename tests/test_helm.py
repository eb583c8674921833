"""The Helm chart, checked by Helm's own renderer and linter, Kubernetes' schemas and promtool.

Every render goes through the Helm v4 SDK (no cluster, no helm binary), so the values schema,
`fail` messages and template functions behave exactly as on `helm install`/`helm template`.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml
from kubernetes_validate.utils import all_versions
from kubernetes_validate.utils import validate as validate_kubernetes

from tests.support.tools import ROOT, require_tool

CHART = ROOT / "helm" / "cloudflare-oauth-exporter"
ALERTS = CHART / "files" / "alerts.yml"
DASHBOARD = CHART / "files" / "dashboard.json"
SCENARIOS = sorted(path.name for path in (CHART / "ci").glob("*-values.yaml"))
# The oldest and newest Kubernetes whose schemas kubernetes-validate ships.
KUBE_VERSIONS = (all_versions()[0], all_versions()[-1])
# The chart's own kinds, which kubernetes-validate has no schema for (see ServiceMonitor below).
PROMETHEUS_OPERATOR = "monitoring.coreos.com/v1"

TOKEN = "token-value-0123456789-not-real"
GLOBAL_KEY = "global-key-value-0123456789-not-real"
ACCOUNT_A = "0123456789abcdef0123456789abcdef"
ACCOUNT_B = "fedcba9876543210fedcba9876543210"
WITH_TOKEN: dict[str, Any] = {"cloudflare": {"apiToken": TOKEN}}


def scenario_values(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "ci" / name).read_text())
    return values


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge values dicts, later layers winning, as repeated `-f` files do."""
    result: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merged(result[key], value)
            else:
                result[key] = value
    return result


@dataclass(frozen=True)
class Release:
    """One render of the chart: template path -> manifest text, and the objects in it."""

    manifests: dict[str, str]

    @cached_property
    def objects(self) -> list[dict[str, Any]]:
        return [
            document
            for path, text in self.manifests.items()
            if not path.endswith("NOTES.txt")
            for document in yaml.safe_load_all(text)
            if document
        ]

    @property
    def notes(self) -> str:
        return next(text for path, text in self.manifests.items() if path.endswith("NOTES.txt"))

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]

    @property
    def workload(self) -> dict[str, Any]:
        """The Deployment, or the StatefulSet when sharding is on; never both."""
        found = self.all("Deployment") + self.all("StatefulSet")
        assert len(found) == 1, f"expected one workload, got {[o['kind'] for o in found]}"
        return found[0]

    @property
    def service(self) -> dict[str, Any]:
        """The metrics Service (not the StatefulSet's headless one)."""
        (service,) = [s for s in self.all("Service") if s["spec"].get("clusterIP") != "None"]
        return service

    @property
    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.workload["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod["containers"]
        assert len(containers) == 1
        container: dict[str, Any] = containers[0]
        return container

    @property
    def env(self) -> dict[str, dict[str, Any]]:
        return {var["name"]: var for var in self.container.get("env", [])}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


Render = Callable[..., Release]


@pytest.fixture(scope="module")
def render(chart: helm_python.Chart) -> Render:
    """Render values (cached per module: many tests look at the same release)."""
    cache: dict[str, Release] = {}

    def render_values(
        values: dict[str, Any], *, name: str = "demo", namespace: str = "monitoring-apps"
    ) -> Release:
        key = json.dumps([values, name, namespace], sort_keys=True)
        if key not in cache:
            cache[key] = Release(chart.render(values, name=name, namespace=namespace))
        return cache[key]

    return render_values


def credential_source(release: Release, file_path: str) -> tuple[str, str]:
    """The (Secret name, Secret key) behind a file path in the exporter container."""
    for mount in release.container["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if file_path.startswith(prefix):
            volume = next(v for v in release.pod["volumes"] if v["name"] == mount["name"])
            relative = file_path.removeprefix(prefix)
            items = volume["secret"]["items"]
            item = next(item for item in items if item["path"] == relative)
            # Only the credential in use is projected into the pod.
            assert len(items) == 1
            return volume["secret"]["secretName"], item["key"]
    raise AssertionError(f"{file_path} lies on no volume mounted in the container")


# --- lint and Kubernetes validity --------------------------------------------------------------


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


# --- values: schema, comments, rejected input ---------------------------------------------------


def test_defaults_satisfy_the_schema(chart):
    chart.validate_schema(chart.values)


def _schema_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, sub in schema.get("properties", {}).items():
        paths.add(prefix + key)
        paths |= _schema_paths(sub, f"{prefix}{key}.")
    return paths


def _value_paths(values: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in values.items():
        paths.add(prefix + key)
        if isinstance(value, dict) and value:
            paths |= _value_paths(value, f"{prefix}{key}.")
    return paths


def test_schema_describes_every_value_and_nothing_else(chart):
    schema = chart.schema
    assert schema is not None
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    schema_paths = _schema_paths(schema)
    value_paths = _value_paths(yaml.safe_load((CHART / "values.yaml").read_text()))
    # Kubernetes-typed blocks are left to the API server's own validation.
    kubernetes_typed = ("podSecurityContext.", "securityContext.")
    assert {p for p in value_paths - schema_paths if not p.startswith(kubernetes_typed)} == set()
    # Accepted but unset by default: Helm's own `global` and optional knobs.
    assert schema_paths - value_paths == {
        "global",
        "strategy.rollingUpdate",
        "strategy.rollingUpdate.maxSurge",
        "strategy.rollingUpdate.maxUnavailable",
        "resources.requests",
        "resources.limits",
        "resources.claims",
        "livenessProbe.successThreshold",
        "readinessProbe.successThreshold",
    }
    for path in schema_paths:
        node: dict[str, Any] = schema
        for key in path.split("."):
            node = node["properties"][key]
        assert node.get("description"), f"{path} has no description in values.schema.json"


def test_every_value_has_a_comment_line_above_it():
    lines = (CHART / "values.yaml").read_text().splitlines()
    keys = [n for n, line in enumerate(lines) if re.match(r"^\s*[A-Za-z][\w.-]*:", line)]
    assert len(keys) > 50
    uncommented = [lines[n].strip() for n in keys if not lines[n - 1].lstrip().startswith("#")]
    assert uncommented == []


def cf(**settings: Any) -> dict[str, Any]:
    return {"cloudflare": settings}


# Values the schema must reject, and what its message must say about them.
BAD_VALUES = [
    (cf(concurrency="lots"), "'/cloudflare/concurrency': got string, want integer"),
    (cf(concurrency=65), "'/cloudflare/concurrency': maximum: got 65, want 64"),
    (cf(concurrency=0), "'/cloudflare/concurrency': minimum: got 0, want 1"),
    (cf(rateLimit=-1), "'/cloudflare/rateLimit': minimum: got -1, want 0"),
    (cf(accountIds="abc"), "'/cloudflare/accountIds': got string, want array"),
    (
        cf(accountIds=[ACCOUNT_A, "0123456789ABCDEF"]),
        "'/cloudflare/accountIds/1': '0123456789ABCDEF' does not match pattern",
    ),
    (cf(accountIds=[ACCOUNT_A, ACCOUNT_A]), "items at 0 and 1 are equal"),
    (cf(timeout="ten seconds"), "'/cloudflare/timeout': 'ten seconds' does not match"),
    ({"logFormat": "xml"}, "'/logFormat': value must be one of 'logfmt', 'json'"),
    ({"logLevel": "verbose"}, "'/logLevel': value must be one of 'debug', 'info', 'warn'"),
    ({"refreshInterval": "5 minutes"}, "'/refreshInterval': '5 minutes' does not match"),
    ({"refreshInterval": 300}, "'/refreshInterval': got number, want string"),
    ({"image": {"pullPolicy": "Sometimes"}}, "'/image/pullPolicy': value must be one of"),
    ({"replicas": -1}, "'/replicas': minimum: got -1, want 0"),
    ({"refreshIntreval": "5m"}, "additional properties 'refreshIntreval' not allowed"),
    ({"serviceMonitor": {"enabeld": True}}, "additional properties 'enabeld' not allowed"),
    ({"resources": {"limit": {"cpu": "1"}}}, "additional properties 'limit' not allowed"),
    ({"serviceMonitor": {"interval": "1 minute"}}, "'/serviceMonitor/interval'"),
]


@pytest.mark.parametrize(
    ("values", "message"),
    BAD_VALUES,
    ids=[json.dumps(values, separators=(",", ":")) for values, _ in BAD_VALUES],
)
def test_schema_rejects_bad_values_naming_them(render, values, message):
    with pytest.raises(helm_python.HelmValuesError) as caught:
        render(merged(WITH_TOKEN, values))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("cloudflare", "fragments"),
    [
        ({}, ["no Cloudflare credentials", "cloudflare.apiToken", "cloudflare.existingSecret"]),
        (
            {"apiToken": TOKEN, "apiEmail": "ops@example.com", "apiKey": GLOBAL_KEY},
            ["both an API token (cloudflare.apiToken) and a Global API key", "keep only"],
        ),
        ({"apiToken": TOKEN, "apiEmail": "ops@example.com"}, ["both an API token"]),
        (
            {"apiToken": TOKEN, "existingSecret": {"name": "creds"}},
            ["cloudflare.apiToken and cloudflare.existingSecret.name are both set"],
        ),
        ({"apiKey": GLOBAL_KEY}, ["cloudflare.apiKey is set but cloudflare.apiEmail is not"]),
        ({"apiEmail": "ops@example.com"}, ["cloudflare.apiEmail is set but no Global API key"]),
        (
            {"existingSecret": {"name": "creds", "key": ""}},
            ["cloudflare.existingSecret.key is empty"],
        ),
    ],
    ids=[
        "none",
        "token-and-global-key",
        "token-and-email",
        "token-inline-and-existing-secret",
        "key-without-email",
        "email-without-key",
        "existing-secret-without-key",
    ],
)
def test_unusable_credentials_fail_naming_the_values_to_set(render, cloudflare, fragments):
    with pytest.raises(helm_python.HelmRenderError) as caught:
        render({"cloudflare": cloudflare})
    for fragment in fragments:
        assert fragment in str(caught.value)


# --- the exporter's command line ----------------------------------------------------------------


def test_default_flags_are_the_exporters_defaults(render):
    assert render(WITH_TOKEN).container["args"] == [
        "--refresh.interval=5m",
        "--cloudflare.concurrency=4",
        "--cloudflare.rate-limit=1000",
        "--cloudflare.timeout=10s",
        "--cloudflare.page-size=50",
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


# --- credentials ---------------------------------------------------------------------------------


def _assert_secret_value_is_nowhere_in_plain_text(release: Release, secret: str) -> None:
    for path, text in release.manifests.items():
        assert secret not in text, f"the credential appears in plain text in {path}"
    for var in release.container["env"]:
        assert var.get("value") != secret


def test_inline_token_reaches_the_container_only_as_a_secret_file(render):
    release = render(WITH_TOKEN)
    assert set(release.env) == {"CLOUDFLARE_API_TOKEN_FILE"}
    secret_name, key = credential_source(release, release.env["CLOUDFLARE_API_TOKEN_FILE"]["value"])
    secret = release.one("Secret")
    assert secret["metadata"]["name"] == secret_name
    assert base64.b64decode(secret["data"][key]).decode() == TOKEN
    _assert_secret_value_is_nowhere_in_plain_text(release, TOKEN)


def test_existing_secret_with_a_custom_key_is_mounted_without_rendering_a_secret(render):
    release = render({"cloudflare": {"existingSecret": {"name": "cf-creds", "key": "oauth-read"}}})
    assert release.all("Secret") == []
    file_path = release.env["CLOUDFLARE_API_TOKEN_FILE"]["value"]
    assert credential_source(release, file_path) == ("cf-creds", "oauth-read")


def test_legacy_inline_key_mounts_the_key_file_and_sets_the_email(render):
    release = render({"cloudflare": {"apiEmail": "ops@example.com", "apiKey": GLOBAL_KEY}})
    assert set(release.env) == {"CLOUDFLARE_API_EMAIL", "CLOUDFLARE_API_KEY_FILE"}
    assert release.env["CLOUDFLARE_API_EMAIL"]["value"] == "ops@example.com"
    secret_name, key = credential_source(release, release.env["CLOUDFLARE_API_KEY_FILE"]["value"])
    secret = release.one("Secret")
    assert secret["metadata"]["name"] == secret_name
    assert base64.b64decode(secret["data"][key]).decode() == GLOBAL_KEY
    _assert_secret_value_is_nowhere_in_plain_text(release, GLOBAL_KEY)


def test_legacy_key_from_an_existing_secret(render):
    release = render(
        {
            "cloudflare": {
                "apiEmail": "ops@example.com",
                "existingSecret": {"name": "cf-global", "apiKeyKey": "global-key"},
            }
        }
    )
    assert release.all("Secret") == []
    assert "CLOUDFLARE_API_TOKEN_FILE" not in release.env
    file_path = release.env["CLOUDFLARE_API_KEY_FILE"]["value"]
    assert credential_source(release, file_path) == ("cf-global", "global-key")


def test_pods_roll_when_the_inline_token_changes(render):
    def checksum(token: str) -> str:
        release = render({"cloudflare": {"apiToken": token}})
        annotations = release.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/secret"])

    assert checksum(TOKEN) != checksum(TOKEN + "-rotated")


def test_notes_explain_port_forward_and_warn_only_about_inline_credentials(render):
    inline = render(WITH_TOKEN)
    service = inline.one("Service")["metadata"]["name"]
    assert f"port-forward service/{service} 9878:9878" in inline.notes
    assert "/metrics" in inline.notes
    assert "WARNING" in inline.notes
    assert "cloudflare.apiToken" in inline.notes
    assert "WARNING" in render({"cloudflare": {"apiEmail": "a@example.com", "apiKey": "k"}}).notes
    assert "WARNING" not in render(scenario_values("existing-secret-values.yaml")).notes


# --- pod hardening, probes, labels, names -----------------------------------------------------


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


# --- ServiceMonitor -------------------------------------------------------------------------

# The prometheus-operator CRDs are not available offline (and kubernetes-validate ships only
# built-in kinds), so the fields this chart sets are checked against this excerpt of the
# ServiceMonitor CRD's OpenAPI schema (monitoring.coreos.com/v1).
RELABEL_CONFIG = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sourceLabels": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
        },
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
        "action": {
            "enum": [
                "replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod",
                "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep",
                "lowercase", "Lowercase", "uppercase", "Uppercase", "keepequal", "KeepEqual",
                "dropequal", "DropEqual",
            ]
        },
    },
}  # fmt: skip
PROMETHEUS_DURATION = {
    "type": "string",
    "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
    "(([0-9]+)ms)?)$",
}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
SECRET_KEY = {
    "type": "object", "required": ["key"], "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "key": {"type": "string"},
                   "optional": {"type": "boolean"}},
}  # fmt: skip
SECRET_OR_CONFIGMAP = {
    "type": "object", "additionalProperties": False,
    "properties": {"secret": SECRET_KEY, "configMap": SECRET_KEY},
}  # fmt: skip
SAFE_TLS_CONFIG = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "ca": SECRET_OR_CONFIGMAP, "cert": SECRET_OR_CONFIGMAP, "keySecret": SECRET_KEY,
        "serverName": {"type": "string"}, "insecureSkipVerify": {"type": "boolean"},
    },
}  # fmt: skip
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": LABELS,
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": LABELS,
                        "matchExpressions": {"type": "array", "items": {
                            "type": "object", "required": ["key", "operator"],
                            "additionalProperties": False,
                            "properties": {
                                "key": {"type": "string"},
                                "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                                "values": {"type": "array", "items": {"type": "string"}},
                            },
                        }},
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "tlsConfig": SAFE_TLS_CONFIG,
                            "basicAuth": {
                                "type": "object", "additionalProperties": False,
                                "properties": {"username": SECRET_KEY, "password": SECRET_KEY},
                            },
                            "honorLabels": {"type": "boolean"},
                            "interval": PROMETHEUS_DURATION,
                            "scrapeTimeout": PROMETHEUS_DURATION,
                            "relabelings": {"type": "array", "items": RELABEL_CONFIG},
                            "metricRelabelings": {"type": "array", "items": RELABEL_CONFIG},
                        },
                    },
                },
            },
        },
    },
}  # fmt: skip


def test_service_monitor_renders_without_the_crd_and_points_at_the_service(render):
    # chart.render uses Helm's default capabilities, which know no monitoring.coreos.com API:
    # exactly the `helm template` / GitOps case a capabilities gate would silently break.
    values = scenario_values("all-enabled-values.yaml")
    release = render(values)
    monitor = release.one("ServiceMonitor")
    jsonschema.Draft7Validator(SERVICE_MONITOR_SCHEMA).validate(monitor)
    service = release.one("Service")

    assert monitor["metadata"]["namespace"] == values["serviceMonitor"]["namespace"]
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"

    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [port["name"] for port in service["spec"]["ports"]]
    assert endpoint["path"] == "/metrics"
    for key in ("interval", "scrapeTimeout", "relabelings", "metricRelabelings", "honorLabels"):
        assert endpoint[key] == values["serviceMonitor"][key]


def test_service_monitor_job_matches_what_the_bundled_alerts_select(render):
    # Even a full name without the chart name in it must keep the alerts working.
    monitored = {"serviceMonitor": {"enabled": True}, "fullnameOverride": "x"}
    release = render(merged(WITH_TOKEN, monitored))
    monitor = release.one("ServiceMonitor")
    job = release.one("Service")["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    expressions = [rule["expr"] for rule in _bundled_rules()]
    job_regexes = re.findall(r'job=~"([^"]+)"', " ".join(expressions))
    assert job_regexes
    for regex in job_regexes:
        assert re.fullmatch(regex, job), f"job {job!r} escapes the alerts' {regex!r}"


def test_service_monitor_defaults_render_valid(render):
    release = render(merged(WITH_TOKEN, {"serviceMonitor": {"enabled": True}}))
    monitor = release.one("ServiceMonitor")
    jsonschema.Draft7Validator(SERVICE_MONITOR_SCHEMA).validate(monitor)
    assert monitor["metadata"]["namespace"] == "monitoring-apps"
    assert monitor["spec"]["endpoints"][0]["interval"] == "60s"


# --- PrometheusRule -------------------------------------------------------------------------


def _bundled_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


@pytest.mark.slow
def test_prometheus_rule_ships_every_bundled_alert_and_passes_promtool(render, tmp_path):
    values = scenario_values("all-enabled-values.yaml")
    rule = render(values).one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["namespace"] == "monitoring"

    groups = rule["spec"]["groups"]
    rendered = {r.get("alert") or r["record"]: r for group in groups for r in group["rules"]}
    for bundled in _bundled_rules():
        # Equal, not merely present: the $labels templates must survive the chart untouched.
        assert rendered[bundled["alert"]] == bundled
    for extra in values["prometheusRule"]["extraRules"]:
        assert rendered[extra.get("alert") or extra["record"]] == extra
    assert len(rendered) == len(_bundled_rules()) + len(values["prometheusRule"]["extraRules"])

    rule_file = tmp_path / "rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": groups}))
    result = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rendered)} rules found" in result.stdout


def test_prometheus_rule_without_extra_rules_has_only_the_bundled_groups(render):
    rule = render(merged(WITH_TOKEN, {"prometheusRule": {"enabled": True}})).one("PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


# --- Grafana dashboard, NetworkPolicy, PDB ------------------------------------------------------


def test_dashboard_config_map_carries_the_dashboard_for_the_sidecar(render):
    release = render(merged(WITH_TOKEN, {"grafanaDashboard": {"enabled": True}}))
    config_map = release.one("ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = config_map["data"].values()
    assert json.loads(text) == json.loads(DASHBOARD.read_text())


def test_dashboard_sidecar_label_namespace_and_annotations_are_configurable(render):
    values = scenario_values("all-enabled-values.yaml")
    custom = {"grafanaDashboard": {"sidecarLabel": "dashboards", "sidecarLabelValue": "cloudflare"}}
    config_map = render(merged(values, custom)).one("ConfigMap")
    assert config_map["metadata"]["labels"]["dashboards"] == "cloudflare"
    assert "grafana_dashboard" not in config_map["metadata"]["labels"]
    assert config_map["metadata"]["namespace"] == "grafana"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Cloudflare"}


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


# --- sharding ------------------------------------------------------------------------------------


def test_sharding_renders_a_statefulset_with_one_shard_per_pod(render):
    release = render(scenario_values("sharding-values.yaml"))
    assert release.all("Deployment") == []
    statefulset = release.one("StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    assert "--total-shards=3" in release.container["args"]
    assert not any(arg.startswith("--shard=") for arg in release.container["args"])
    shard = release.env["EXPORTER_SHARD"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert shard == "metadata.labels['apps.kubernetes.io/pod-index']"
    headless = next(s for s in release.all("Service") if s["spec"].get("clusterIP") == "None")
    assert statefulset["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]


def test_each_shard_reads_its_own_token(render):
    release = render(scenario_values("sharding-values.yaml"))
    token_file = release.env["CLOUDFLARE_API_TOKEN_FILE"]["value"]
    assert "/shard-$(EXPORTER_SHARD)/" in token_file  # Kubernetes expands $(VAR) from env
    names = [var["name"] for var in release.container["env"]]
    assert names.index("EXPORTER_SHARD") < names.index("CLOUDFLARE_API_TOKEN_FILE")
    mount = next(m for m in release.container["volumeMounts"] if m["name"] == "credentials")
    volume = next(v for v in release.pod["volumes"] if v["name"] == "credentials")
    sources = [
        (source["secret"]["name"], item["key"], f"{mount['mountPath']}/{item['path']}")
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    ]
    assert sources == [
        ("cf-token-shard-0", "api-token", token_file.replace("$(EXPORTER_SHARD)", "0")),
        ("cf-token-shard-1", "token", token_file.replace("$(EXPORTER_SHARD)", "1")),
        ("cf-token-shard-2", "api-token", token_file.replace("$(EXPORTER_SHARD)", "2")),
    ]
    assert release.all("Secret") == []  # the user's Secrets; the chart renders none


def test_shards_can_share_one_token(render):
    release = render(merged(WITH_TOKEN, {"replicas": 2, "sharding": {"enabled": True}}))
    assert release.one("StatefulSet")["spec"]["replicas"] == 2
    assert credential_source(release, release.env["CLOUDFLARE_API_TOKEN_FILE"]["value"]) == (
        release.one("Secret")["metadata"]["name"],
        "api-token",
    )
    assert "--total-shards=2" in release.container["args"]


def test_the_servicemonitor_scrapes_every_shard_once(render):
    release = render(scenario_values("sharding-values.yaml"))
    selector = release.one("ServiceMonitor")["spec"]["selector"]
    for service in release.all("Service"):
        labels = service["metadata"]["labels"]
        chosen = selector["matchLabels"].items() <= labels.items() and all(
            labels.get(rule["key"]) not in rule["values"] for rule in selector["matchExpressions"]
        )
        # the regular Service (one endpoint per pod) yes, the headless one no
        assert chosen == (service["spec"].get("clusterIP") != "None")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"replicas": 3, "sharding": {"enabled": True,
                                         "existingSecrets": [{"name": "a"}, {"name": "b"}]}},
            "sharding.existingSecrets lists 2 Secrets but replicas is 3",
        ),
        (
            merged(WITH_TOKEN, {"replicas": 1, "sharding": {"enabled": True,
                                                            "existingSecrets": [{"name": "a"}]}}),
            "leave cloudflare.apiToken",
        ),
    ],
)  # fmt: skip
def test_inconsistent_sharding_is_refused(chart, values, message):
    with pytest.raises(helm_python.HelmError) as raised:
        chart.render(values, name="demo", namespace="monitoring-apps")
    assert message in str(raised.value)


# --- TLS, basic auth and metric selection ---------------------------------------------------------


def test_tls_and_basic_auth_reach_the_exporter_as_a_web_config_file(render, tmp_path):
    release = render(scenario_values("tls-values.yaml"))
    args = release.container["args"]
    config_arg = next(a for a in args if a.startswith("--web.config.file="))
    config_path = config_arg.split("=", 1)[1]
    secret = next(s for s in release.all("Secret") if s["metadata"]["name"].endswith("web-config"))
    text = secret["stringData"]["web-config.yml"]
    config = yaml.safe_load(text)
    mounts = {m["name"]: m["mountPath"] for m in release.container["volumeMounts"]}
    volumes = {v["name"]: v for v in release.pod["volumes"]}
    assert config_path == f"{mounts['web-config']}/web-config.yml"
    assert volumes["web-config"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert volumes["tls"]["secret"]["secretName"] == "cloudflare-oauth-exporter-tls"
    tls = config["tls_server_config"]
    for key, file in (
        ("cert_file", "tls.crt"),
        ("key_file", "tls.key"),
        ("client_ca_file", "ca.crt"),
    ):
        assert tls[key] == f"{mounts['tls']}/{file}"
    assert tls["client_auth_type"] == "RequireAndVerifyClientCert"
    assert tls["min_version"] == "TLS13"
    # The rendered file is one the exporter itself accepts (certificates swapped for test ones).
    from exporter.webconfig import load_web_config
    from tests.support.tls import make_pki

    pki = make_pki(tmp_path)
    local = text.replace(f"{mounts['tls']}/tls.crt", str(pki.server_cert)).replace(
        f"{mounts['tls']}/tls.key", str(pki.server_key)).replace(
        f"{mounts['tls']}/ca.crt", str(pki.ca))  # fmt: skip
    (tmp_path / "web.yml").write_text(local)
    loaded = load_web_config(str(tmp_path / "web.yml"))
    assert loaded.ssl_context is not None
    assert set(loaded.users) == {"prometheus"}


def test_tls_switches_probes_and_the_servicemonitor_to_https(render):
    release = render(scenario_values("tls-values.yaml"))
    for probe in ("livenessProbe", "readinessProbe"):
        assert release.container[probe]["httpGet"]["scheme"] == "HTTPS"
    (endpoint,) = release.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["serverName"] == "cloudflare-oauth-exporter"
    assert endpoint["basicAuth"]["password"] == {"name": "prometheus-scrape", "key": "password"}
    plain = render(merged(WITH_TOKEN, {"serviceMonitor": {"enabled": True}}))
    assert plain.one("ServiceMonitor")["spec"]["endpoints"][0]["scheme"] == "http"
    assert "scheme" not in plain.container["livenessProbe"]["httpGet"]
    assert not any(a.startswith("--web.config.file") for a in plain.container["args"])


def test_metric_selection_values_become_flags(render):
    release = render(scenario_values("tls-values.yaml"))
    args = release.container["args"]
    assert "--metrics.per-client" in args
    assert "--metrics.per-client-limit=2000" in args
    assert "--metrics.denylist=python_.*" in args
    allow = render(merged(WITH_TOKEN, {"metrics": {"allowlist": ["cloudflare_.*", "up"]}}))
    assert "--metrics.allowlist=cloudflare_.*,up" in allow.container["args"]
    assert not any(a.startswith("--metrics.per-client") for a in allow.container["args"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"web": {"basicAuth": {"users": {"prometheus": "plaintext"}}}}, "/web/basicAuth/users"),
        ({"web": {"tls": {"enabled": True}}}, "web.tls.secretName"),
        ({"web": {"tls": {"clientAuthType": "RequireAnyClientCert"}}}, "clientAuthType"),
        ({"metrics": {"allowlist": ["a,b"]}}, "allowlist"),
    ],
)
def test_bad_web_and_metrics_values_are_refused(chart, values, message):
    with pytest.raises(helm_python.HelmError) as raised:
        chart.render(merged(WITH_TOKEN, values), name="demo", namespace="monitoring-apps")
    assert message in str(raised.value)


def test_shards_sharing_one_token_share_its_rate_limit(render):
    shared = render(merged(WITH_TOKEN, {"replicas": 3, "sharding": {"enabled": True},
                                        "cloudflare": {"rateLimit": 1000}}))  # fmt: skip
    assert "--cloudflare.rate-limit=333" in shared.container["args"]
    own = render(scenario_values("sharding-values.yaml"))
    assert "--cloudflare.rate-limit=1000" in own.container["args"]  # a token each: full budget
    unlimited = render(merged(WITH_TOKEN, {"replicas": 3, "sharding": {"enabled": True},
                                           "cloudflare": {"rateLimit": 0}}))  # fmt: skip
    assert "--cloudflare.rate-limit=0" in unlimited.container["args"]
