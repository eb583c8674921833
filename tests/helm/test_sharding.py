"""Sharding: a StatefulSet whose pods each export their own share of the accounts."""

from __future__ import annotations

import json
import os
import pathlib
import random
import re
import subprocess
import sys

import helm_python
import pytest
from kubernetes_validate.utils import validate as validate_kubernetes

from exporter.credentials import TokenAuth
from exporter.settings import load_settings
from exporter.simulator import Simulator, make_account
from tests.support.exposition import sample
from tests.support.helm import (
    PROMETHEUS_OPERATOR,
    SHARDING_KUBE_VERSIONS,
    WITH_TOKEN,
    credential_source,
    kubelet_environment,
    kubelet_expand,
    merged,
    project_credentials,
    render_at,
    scenario_values,
)
from tests.support.simulator import TOKEN as SIMULATOR_TOKEN
from tests.support.tools import CHART, clean_environ

SHARD_LAUNCHER = CHART / "files" / "shard.py"


def test_sharding_renders_a_statefulset_with_one_shard_per_pod(render):
    release = render(scenario_values("sharding-values.yaml"))
    assert release.all("Deployment") == []
    statefulset = release.one("StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    assert "--total-shards=3" in release.container["args"]
    assert not any(arg.startswith("--shard=") for arg in release.container["args"])
    # The shard comes from the pod's name, which every Kubernetes sets; never from the
    # apps.kubernetes.io/pod-index label, which 1.25 to 1.27 do not.
    assert release.env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "EXPORTER_SHARD" not in release.env
    field_refs = re.findall(r'"fieldPath": "([^"]+)"', json.dumps(release.objects))
    assert field_refs == ["metadata.name"]
    assert release.container["command"] == ["python", "-c", SHARD_LAUNCHER.read_text()]
    headless = next(s for s in release.all("Service") if s["spec"].get("clusterIP") == "None")
    assert statefulset["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]


def test_without_sharding_the_image_entrypoint_runs_the_exporter(render):
    assert "command" not in render(WITH_TOKEN).container


def test_each_shard_reads_its_own_token(render):
    release = render(scenario_values("sharding-values.yaml"))
    token_file = release.env["CLOUDFLARE_API_TOKEN_FILE"]["value"]
    assert "/shard-$(EXPORTER_SHARD)/" in token_file  # filled in by files/shard.py
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


class _Exec(Exception):
    """Raised instead of replacing the test process with the exporter."""


def run_launcher(monkeypatch, command, args, environ):
    """Run the container's `python -c` launcher in this process, as the runtime would start it
    (argv and a fresh environment), stopping where it would exec the exporter: returns the
    exporter's (argv, environment)."""
    assert command[:2] == ["python", "-c"]
    exec_call: list[tuple[str, list[str], dict[str, str]]] = []

    def execvp(file, argv):
        exec_call.append((file, argv, dict(os.environ)))
        raise _Exec

    monkeypatch.setattr(os, "execvp", execvp)
    monkeypatch.setattr(sys, "argv", ["-c", *args])
    for key in [*os.environ, "EXPORTER_SHARD"]:
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(_Exec):
        exec(compile(command[2], "shard.py", "exec"), {"__name__": "__main__"})  # noqa: S102
    ((file, argv, exporter_environ),) = exec_call
    assert file == argv[0] == "cloudflare-oauth-exporter"  # the image's console script
    return argv[1:], exporter_environ


@pytest.mark.parametrize("shard", [0, 1, 2])
@pytest.mark.parametrize("kube_version", SHARDING_KUBE_VERSIONS)
def test_every_pod_runs_its_own_shard_with_its_own_token(
    chart, monkeypatch, tmp_path, kube_version, shard
):
    release = render_at(chart, scenario_values("sharding-values.yaml"), kube_version)
    for obj in release.objects:
        if obj["apiVersion"] != PROMETHEUS_OPERATOR:
            validate_kubernetes(obj, kube_version, strict=True)
    pod_name = f"{release.one('StatefulSet')['metadata']['name']}-{shard}"
    container = release.container
    environ = kubelet_environment(container, pod_name)
    args = [kubelet_expand(arg, environ) for arg in container["args"]]
    command = [kubelet_expand(part, environ) for part in container["command"]]
    inside, local = project_credentials(release, tmp_path)  # the Secrets, as mounted
    environ = {key: value.replace(inside, local) for key, value in environ.items()}

    argv, exporter_environ = run_launcher(monkeypatch, command, args, environ)

    assert exporter_environ["EXPORTER_SHARD"] == str(shard)
    settings = load_settings(argv, exporter_environ)
    assert (settings.shard, settings.total_shards) == (shard, 3)
    assert isinstance(settings.auth, TokenAuth)
    secret = scenario_values("sharding-values.yaml")["sharding"]["existingSecrets"][shard]
    assert settings.auth.token.reveal() == f"{secret['name']}/{secret.get('key', 'api-token')}"


@pytest.mark.parametrize("pod_name", ["", "cloudflare-oauth-exporter", "exporter-01", "x-1a"])
def test_the_launcher_refuses_a_pod_name_without_an_ordinal(render, monkeypatch, pod_name):
    command = render(scenario_values("sharding-values.yaml")).container["command"]
    with pytest.raises(SystemExit) as exited:
        run_launcher(monkeypatch, command, [], {"POD_NAME": pod_name})
    message = str(exited.value.code)
    assert message.startswith("cloudflare-oauth-exporter: cannot take a shard from the pod name")
    assert "\n" not in message


@pytest.mark.slow
def test_a_shard_pod_command_runs_the_exporter_as_that_shard(render, tmp_path, serve_simulator):
    # The launcher as the container runtime starts it: `python -c`, a fresh process.
    release = render(merged(WITH_TOKEN, {"replicas": 3, "sharding": {"enabled": True}}))
    container = release.container
    environ = kubelet_environment(container, "cf-oauth-exporter-2")
    inside, local = project_credentials(release, tmp_path)
    environ = {key: value.replace(inside, local) for key, value in environ.items()}
    (pathlib.Path(local) / "api-token").write_text(SIMULATOR_TOKEN + "\n")
    rng = random.Random(14)
    url = serve_simulator(Simulator([make_account(rng, f"account {n}", 2) for n in range(6)]))
    command = [sys.executable, *container["command"][1:]]
    args = [*container["args"], "--once", f"--cloudflare.api-url={url}"]
    bin_dir = os.path.dirname(sys.executable)  # where the console script is, as in the image
    result = subprocess.run(
        [*command, *args], env={**clean_environ(), **environ, "PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sample(result.stdout, "cloudflare_oauth_exporter_shard_info", shard="2",
                  total_shards="3") == 1  # fmt: skip


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
