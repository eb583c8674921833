"""The monitoring objects: ServiceMonitor, PrometheusRule and the Grafana dashboard ConfigMap."""

from __future__ import annotations

import json
import re
import subprocess

import jsonschema
import pytest
import yaml

from exporter.settings import load_settings
from tests.support.helm import WITH_TOKEN, merged, scenario_values
from tests.support.tools import ALERTS, DASHBOARD, bundled_rules, require_tool

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
    expressions = [rule["expr"] for rule in bundled_rules()]
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


@pytest.mark.slow
def test_prometheus_rule_ships_every_bundled_alert_and_passes_promtool(render, tmp_path):
    values = scenario_values("all-enabled-values.yaml")
    rule = render(values).one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["namespace"] == "monitoring"

    groups = rule["spec"]["groups"]
    rendered = {r.get("alert") or r["record"]: r for group in groups for r in group["rules"]}
    for bundled in bundled_rules():
        # Equal, not merely present: the $labels templates must survive the chart untouched.
        assert rendered[bundled["alert"]] == bundled
    for extra in values["prometheusRule"]["extraRules"]:
        assert rendered[extra.get("alert") or extra["record"]] == extra
    assert len(rendered) == len(bundled_rules()) + len(values["prometheusRule"]["extraRules"])

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


# --- Grafana dashboard -------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({}, "/metrics"),
        ({"web": {"telemetryPath": "/cloudflare"}}, "/cloudflare"),
        ({"extraArgs": ["--web.telemetry-path=/from-extra-args"]}, "/from-extra-args"),
        (
            {"web": {"telemetryPath": "/a"}, "extraArgs": ["--web.telemetry-path", "/b", "-v"]},
            "/b",
        ),
    ],
    ids=["default", "value", "extra-args", "extra-args-two-words"],
)
def test_service_monitor_scrapes_the_path_the_exporter_serves(render, values, path):
    monitored = {"serviceMonitor": {"enabled": True}}
    release = render(merged(WITH_TOKEN, monitored, values))
    (endpoint,) = release.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["path"] == path
    # The exporter's own parser decides which flag wins; -v stands for any later flag.
    args = [arg for arg in release.container["args"] if arg != "-v"]
    assert load_settings(args, {"CLOUDFLARE_API_TOKEN": "x"}).telemetry_path == path
    assert f"127.0.0.1:9878{path} |" in release.notes
