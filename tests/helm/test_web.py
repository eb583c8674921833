"""TLS, basic auth, the connection bound and metric selection on the metrics port."""

from __future__ import annotations

import helm_python
import pytest
import yaml

from exporter.options import MAX_CONNECTIONS
from tests.support.helm import (
    WITH_TOKEN,
    merged,
    scenario_values,
)
from tests.support.tools import CHART


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


def test_max_connections_becomes_the_flag_and_is_left_to_the_exporter_by_default(chart, render):
    release = render(scenario_values("all-enabled-values.yaml"))
    assert release.container["args"].count("--web.max-connections=64") == 1
    # Unset (null, the documented default): no flag, so the exporter's own default holds, which
    # the chart's README names.
    assert chart.values["web"]["maxConnections"] is None
    args = render(WITH_TOKEN).container["args"]
    assert not any(arg.startswith("--web.max-connections") for arg in args)
    readme = (CHART / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `web.maxConnections`"))
    assert f"`null`: the exporter's {MAX_CONNECTIONS.default} " in row
    assert "`--web.max-connections`" in row


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"web": {"basicAuth": {"users": {"prometheus": "plaintext"}}}}, "/web/basicAuth/users"),
        ({"web": {"tls": {"enabled": True}}}, "web.tls.secretName"),
        ({"web": {"tls": {"clientAuthType": "RequireAnyClientCert"}}}, "clientAuthType"),
        ({"metrics": {"allowlist": ["a,b"]}}, "allowlist"),
        # The exporter's own bounds for --web.max-connections: 1 to 100,000.
        ({"web": {"maxConnections": 0}}, "'/web/maxConnections': minimum: got 0, want 1"),
        ({"web": {"maxConnections": 100_001}}, "'/web/maxConnections': maximum: got 100,001"),
        ({"web": {"maxConnections": "64"}}, "'/web/maxConnections': got string, want"),
    ],
)
def test_bad_web_and_metrics_values_are_refused(chart, values, message):
    with pytest.raises(helm_python.HelmError) as raised:
        chart.render(merged(WITH_TOKEN, values), name="demo", namespace="monitoring-apps")
    assert message in str(raised.value)
