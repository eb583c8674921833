"""Sharding: a StatefulSet whose pods each export their own share of the accounts."""

from __future__ import annotations

import helm_python
import pytest

from tests.support.helm import (
    WITH_TOKEN,
    credential_source,
    merged,
    scenario_values,
)


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


def test_shards_sharing_one_token_share_its_rate_limit(render):
    shared = render(merged(WITH_TOKEN, {"replicas": 3, "sharding": {"enabled": True},
                                        "cloudflare": {"rateLimit": 1000}}))  # fmt: skip
    assert "--cloudflare.rate-limit=333" in shared.container["args"]
    own = render(scenario_values("sharding-values.yaml"))
    assert "--cloudflare.rate-limit=1000" in own.container["args"]  # a token each: full budget
    unlimited = render(merged(WITH_TOKEN, {"replicas": 3, "sharding": {"enabled": True},
                                           "cloudflare": {"rateLimit": 0}}))  # fmt: skip
    assert "--cloudflare.rate-limit=0" in unlimited.container["args"]
