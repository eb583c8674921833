"""values.yaml and its schema: every value described and commented, bad input refused by name."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python
import pytest
import yaml

from tests.support.helm import ACCOUNT_A, GLOBAL_KEY, TOKEN, WITH_TOKEN, merged
from tests.support.tools import CHART


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
        (
            {"apiToken": TOKEN, "apiEmail": "ops@example.com"},
            [
                "cloudflare.apiToken and cloudflare.apiEmail are both set",
                "unset cloudflare.apiEmail",
            ],
        ),
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
