"""What the chart's tests share: its paths and scenarios, merging values, reading a render."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from helm_python import _native as helm_native
from kubernetes_validate.utils import all_versions

from tests.support.tools import CHART

SCENARIOS = sorted(path.name for path in (CHART / "ci").glob("*-values.yaml"))
# The oldest and newest Kubernetes whose schemas kubernetes-validate ships: 1.25, the oldest the
# chart's kubeVersion accepts, and the newest there is.
KUBE_VERSIONS = (all_versions()[0], all_versions()[-1])
# Sharding is rendered at both sides of 1.28, where the apps.kubernetes.io/pod-index label began.
SHARDING_KUBE_VERSIONS = ("1.25.0", "1.27.0", "1.28.0", all_versions()[-1])
# The chart's own kinds, which kubernetes-validate has no schema for (tests/helm/test_monitoring.py
# checks the ServiceMonitor against an excerpt of its CRD).
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


def render_at(
    chart: Any,
    values: dict[str, Any],
    kube_version: str,
    *,
    name: str = "demo",
    namespace: str = "monitoring-apps",
) -> Release:
    """Render as `helm template --kube-version` does (.Capabilities.KubeVersion set).

    helm-python's Chart.render does not take a Kubernetes version, though the Helm SDK call under
    it does; this passes it there.
    """  # fmt: skip
    options = {"name": name, "namespace": namespace, "kube_version": f"v{kube_version}"}
    rendered = helm_native.call_string(
        "helm_render", chart._raw(), json.dumps(values), json.dumps(options)
    )
    return Release(json.loads(rendered))


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def kubelet_expand(text: str, environ: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a defined variable is replaced, `$$` is `$`, and a reference
    to an undefined variable stays as written."""
    return _REFERENCE.sub(
        lambda m: "$" if m.group(0) == "$$" else environ.get(m.group(1), m.group(0)), text
    )


def kubelet_environment(container: dict[str, Any], pod_name: str) -> dict[str, str]:
    """The environment the kubelet gives `container` in pod `pod_name`: variables in order, each
    value expanded against the ones before it; the only field reference the chart uses is the
    pod's name."""
    environ: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            environ[var["name"]] = kubelet_expand(var["value"], environ)
        else:
            assert var["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, var
            environ[var["name"]] = pod_name
    return environ


def project_credentials(release: Release, root: Path) -> tuple[str, str]:
    """Write the credentials volume's files under `root` as the kubelet would mount them, each
    holding "<Secret name>/<key>"; returns (mount path in the container, its place here)."""
    mount = next(m for m in release.container["volumeMounts"] if m["name"] == "credentials")
    volume = next(v for v in release.pod["volumes"] if v["name"] == "credentials")
    secrets = (
        [source["secret"] for source in volume["projected"]["sources"]]
        if "projected" in volume
        else [{"name": volume["secret"]["secretName"], "items": volume["secret"]["items"]}]
    )
    local = root / mount["mountPath"].strip("/")
    for secret in secrets:
        for item in secret["items"]:
            path = local / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{secret['name']}/{item['key']}\n")
    return mount["mountPath"], str(local)
