"""The command line: configuration errors, --once, serving, shutdown, secrets and the demo."""

from __future__ import annotations

import json
import random
import re
import signal
import socket
import subprocess
import time

import httpx
import pytest

from exporter.simulator import Fault, SimAccount, Simulator, make_account, make_client
from tests.support.exposition import samples
from tests.support.process import ExporterProcess
from tests.support.simulator import TOKEN
from tests.support.tools import clean_environ, exporter_command

pytestmark = pytest.mark.slow  # every test here starts a process


def run(*args: str, timeout: float = 60, **environ: str) -> subprocess.CompletedProcess[str]:
    """Run to completion; stdout is decoded without newline translation (a raw CR is data)."""
    result = subprocess.run(
        exporter_command(*args), env=clean_environ(**environ), capture_output=True,
        timeout=timeout,
    )  # fmt: skip
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def test_help_lists_every_flag():
    result = run("--help")
    assert result.returncode == 0
    for flag in (
        "--web.listen-address", "--web.telemetry-path", "--cloudflare.api-url",
        "--cloudflare.account-id", "--cloudflare.api-token-file", "--refresh.interval",
        "--cloudflare.concurrency", "--cloudflare.rate-limit", "--cloudflare.timeout",
        "--log.level", "--log.format", "--demo", "--once",
    ):  # fmt: skip
        assert flag in result.stdout


def test_console_script_and_module_agree():
    from exporter import __version__

    result = run("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


@pytest.mark.parametrize(
    ("args", "environ", "needle"),
    [
        ((), {}, "CLOUDFLARE_API_TOKEN"),
        ((), {"CLOUDFLARE_API_EMAIL": "ops@example.com"}, "CLOUDFLARE_API_KEY"),
        (("--cloudflare.account-id", "xyz"), {"CLOUDFLARE_API_TOKEN": TOKEN},
         "--cloudflare.account-id"),
        (("--refresh.interval", "soon"), {"CLOUDFLARE_API_TOKEN": TOKEN}, "--refresh.interval"),
        (("--cloudflare.api-token-file", "/nonexistent/token"), {}, "--cloudflare.api-token-file"),
        ((), {"CLOUDFLARE_API_TOKEN_FILE": "/nonexistent/token"}, "CLOUDFLARE_API_TOKEN_FILE"),
        (("--log.format", "xml"), {"CLOUDFLARE_API_TOKEN": TOKEN}, "--log.format"),
        # A few of what used to end in a traceback or hang, as a real process meets them
        # (tests/test_config_errors.py has every flag and variable): a host name, a non-ASCII
        # credential, and a pattern stopped by the timer on the main thread.
        (("--web.listen-address", "a..b:9878"), {"CLOUDFLARE_API_TOKEN": TOKEN}, "empty label"),
        ((), {"CLOUDFLARE_API_TOKEN": "t\u00f6ken"}, "not printable ASCII"),
        (("--metrics.allowlist", r"(\w*)*x"), {"CLOUDFLARE_API_TOKEN": TOKEN}, "longer than 1s"),
        (("--cloudflare.api-url", "http://999.1.1.1:1/v4"), {"CLOUDFLARE_API_TOKEN": TOKEN},
         "is not an IPv4 address"),
        (("--refresh.intreval", "5m"), {"CLOUDFLARE_API_TOKEN": TOKEN},
         "did you mean --refresh.interval?"),
    ],
)  # fmt: skip
def test_bad_configuration_exits_2_with_one_clear_line(args, environ, needle):
    result = run(*args, **environ)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert needle in lines[0]
    assert TOKEN not in result.stderr


def test_a_bcrypt_cost_of_31_is_refused_at_once_not_checked_for_hours(tmp_path):
    config = tmp_path / "web.yml"
    config.write_text("basic_auth_users:\n  prometheus: $2b$31$" + "x" * 53 + "\n")
    result = run("--web.config.file", str(config), CLOUDFLARE_API_TOKEN=TOKEN, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"cloudflare-oauth-exporter: --web.config.file {str(config)!r}: basic_auth_users."
        "prometheus has bcrypt cost 31; use 4 to 14 (10 is usual: each check takes 2^cost "
        "rounds); make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"
    ]


def test_a_port_in_use_exits_2_naming_the_flag():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("--web.listen-address", f"127.0.0.1:{port}", CLOUDFLARE_API_TOKEN=TOKEN)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--web.listen-address" in result.stderr
    assert "in use" in result.stderr


def scenario() -> list[SimAccount]:
    rng = random.Random(99)
    return [make_account(rng, "Alpha", 75), make_account(rng, "Beta", 3)]


def test_once_prints_valid_exact_metrics_and_exits_0(serve_simulator, promtool):
    alpha, beta = scenario()
    url = serve_simulator(Simulator([alpha, beta]))
    result = run("--once", "--cloudflare.api-url", url, CLOUDFLARE_API_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    check = promtool(result.stdout.encode())
    assert check.returncode == 0, check.stdout + check.stderr
    found = samples(result.stdout)
    assert found["cloudflare_oauth_clients"] == {
        (("account_id", alpha.id),): 75.0,
        (("account_id", beta.id),): 3.0,
    }
    visibility = found["cloudflare_oauth_clients_by_visibility"]
    assert visibility[(("account_id", alpha.id), ("visibility", "public"))] == 38
    assert visibility[(("account_id", alpha.id), ("visibility", "private"))] == 37
    assert found["cloudflare_oauth_discovery_up"] == {(): 1.0}
    assert found["cloudflare_oauth_exporter_refresh_interval_seconds"] == {(): 300.0}
    assert "process_cpu_seconds_total" not in found
    last = result.stderr.strip().splitlines()[-1]
    assert last == "cloudflare-oauth-exporter: refreshed 2 accounts, none failed"


def test_once_ends_with_one_line_saying_what_failed_and_what_it_usually_means(serve_simulator):
    simulator = Simulator(scenario())
    simulator.accounts_fault = Fault.api_error(403, 9109, "Invalid access token")
    result = run("--once", "--cloudflare.api-url", serve_simulator(simulator),
                 CLOUDFLARE_API_TOKEN=TOKEN)  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        "cloudflare-oauth-exporter: refresh failed: account discovery (HTTP 403 code 9109: "
        "Invalid access token; usually the API token is invalid, expired or revoked: check "
        "CLOUDFLARE_API_TOKEN (or its file))"
    )
    finished = next(line for line in lines if "refresh finished" in line)
    assert "failed=1" in finished
    assert "discovery=failed" in finished


def test_once_exits_1_when_an_account_failed(serve_simulator):
    alpha, beta = scenario()
    beta.fault = Fault.api_error(403, 10000, "Authentication error")
    url = serve_simulator(Simulator([alpha, beta]))
    result = run(
        "--once", "--cloudflare.api-url", url, "--cloudflare.account-id", alpha.id,
        "--cloudflare.account-id", beta.id, CLOUDFLARE_API_TOKEN=TOKEN,
    )  # fmt: skip
    assert result.returncode == 1
    found = samples(result.stdout)
    assert found["cloudflare_oauth_account_up"] == {
        (("account_id", alpha.id),): 1.0,
        (("account_id", beta.id),): 0.0,
    }
    assert "Authentication error" in result.stderr
    assert "10000" in result.stderr


EVIL_NAMES = [
    'quote " and \\" escaped',
    "back\\slash\\",
    "new\nline\r\n",
    "emoji 🚀🔥 ünïcödé",
    "x" * 400,
    "tab\tand } { = ,",
]


def test_evil_names_and_values_pass_promtool(serve_simulator, promtool):
    rng = random.Random(7)
    accounts = [make_account(rng, name, 2) for name in EVIL_NAMES]
    odd = accounts[0].clients[0]
    odd.update(visibility='in"ternal\n', token_endpoint_auth_method="back\\slash",
               client_uri_verification={"status": "🚀"}, grant_types=["x" * 300])  # fmt: skip
    url = serve_simulator(Simulator(accounts))
    result = run("--once", "--cloudflare.api-url", url, CLOUDFLARE_API_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    check = promtool(result.stdout.encode())
    assert check.returncode == 0, check.stdout + check.stderr
    found = samples(result.stdout)
    names = {dict(labels)["account_name"] for labels in found["cloudflare_oauth_account_info"]}
    assert names == {name[:128] for name in EVIL_NAMES}  # label values from the API: 128 at most
    assert (
        found["cloudflare_oauth_clients_by_visibility"][
            (("account_id", accounts[0].id), ("visibility", 'in"ternal\n'))
        ]
        == 1
    )
    assert (
        found["cloudflare_oauth_clients_by_grant_type"][
            (("account_id", accounts[0].id), ("grant_type", "x" * 128))
        ]
        == 1
    )


def test_serving_refreshes_in_the_background_and_stops_cleanly_on_sigterm(serve_simulator):
    alpha, beta = scenario()
    url = serve_simulator(Simulator([alpha, beta]))
    with ExporterProcess(
        "--cloudflare.api-url", url, "--refresh.interval", "1s", CLOUDFLARE_API_TOKEN=TOKEN
    ) as exporter:
        exporter.wait_ready()
        first = samples(exporter.get("/metrics").text)
        assert first["cloudflare_oauth_clients"][(("account_id", beta.id),)] == 3
        beta.clients.append(make_client(random.Random(1), 0))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = samples(exporter.get("/metrics").text)
            if now["cloudflare_oauth_clients"][(("account_id", beta.id),)] == 4:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the background refresh never picked up the new client")
        assert exporter.get("/healthz").status_code == 200
        assert 'href="/metrics"' in exporter.get("/").text
        assert (
            exporter.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")
        )
        started = time.monotonic()
        assert exporter.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 10
    assert any("shutting down" in line for line in exporter.lines)
    assert not any("Traceback" in line for line in exporter.lines)


def test_scrapes_never_reach_the_api(serve_simulator):
    alpha, beta = scenario()
    url = serve_simulator(sim := Simulator([alpha, beta]))
    with ExporterProcess(
        "--cloudflare.api-url", url, "--refresh.interval", "1h", CLOUDFLARE_API_TOKEN=TOKEN
    ) as exporter:
        exporter.wait_ready()
        before = sum(sim.requests.values())
        assert before == 4  # discovery, two pages of Alpha (75 clients), one of Beta
        bodies = {exporter.get("/metrics").text.split("# HELP process_")[0] for _ in range(50)}
        assert sum(sim.requests.values()) == before
        assert len(bodies) == 1  # the same pre-rendered numbers every time


def test_sigterm_cancels_an_in_flight_refresh(serve_simulator):
    alpha, _ = scenario()
    alpha.fault = Fault.slow(30)
    url = serve_simulator(Simulator([alpha]))
    with ExporterProcess(
        "--cloudflare.api-url", url, "--cloudflare.timeout", "60s", CLOUDFLARE_API_TOKEN=TOKEN
    ) as exporter:
        time.sleep(1.0)  # discovery done, the account's request hangs
        assert exporter.get("/readyz").status_code == 503
        started = time.monotonic()
        assert exporter.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 5


def test_the_token_never_appears_in_logs_output_or_metrics(serve_simulator):
    alpha, beta = scenario()
    beta.fault = Fault.api_error(403, 9109, f"Invalid access token {TOKEN}")  # an echoing API
    url = serve_simulator(Simulator([alpha, beta]))
    with ExporterProcess(
        "--cloudflare.api-url", url, "--log.level", "debug", "--log.format", "json",
        "--refresh.interval", "1s", CLOUDFLARE_API_TOKEN=TOKEN,
    ) as exporter:  # fmt: skip
        exporter.wait_ready()
        body = exporter.get("/metrics").text
        page = exporter.get("/").text
        exporter.stop()
    logs = "\n".join(exporter.lines)
    assert "Invalid access token [REDACTED]" in logs
    for text in (logs, body, page):
        assert TOKEN not in text
    for line in exporter.lines:
        json.loads(line)  # --log.format json: every line is one JSON object


def test_legacy_key_never_appears_either(serve_simulator):
    key = "legacy-global-key-0123456789abcdef"
    alpha, beta = scenario()
    beta.fault = Fault.api_error(403, 9103, f"Unknown X-Auth-Key {key}")  # an echoing API
    url = serve_simulator(Simulator([alpha, beta], tokens=(), email="ops@example.com", key=key))
    result = run(
        "--once", "--cloudflare.api-url", url, "--log.level", "debug",
        CLOUDFLARE_API_EMAIL="ops@example.com", CLOUDFLARE_API_KEY=key,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Unknown X-Auth-Key [REDACTED]" in result.stderr
    assert key not in result.stdout + result.stderr


def test_demo_once_shows_every_scenario(promtool):
    result = run("--demo", "--once")
    assert result.returncode == 1  # the demo has an account without permission, by design
    check = promtool(result.stdout.encode())
    assert check.returncode == 0, check.stdout + check.stderr
    found = samples(result.stdout)
    up = found["cloudflare_oauth_account_up"]
    assert sorted(up.values()) == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert sum(found["cloudflare_oauth_clients"].values()) == 160 + 90 + 3 + 4
    every_finding = {dict(k)["finding"] for k, v in found["cloudflare_oauth_clients_with_finding"]
                     .items() if v > 0}  # fmt: skip
    assert every_finding == {"http_redirect_uri", "wildcard_redirect_uri", "wildcard_cors_origin",
                             "implicit_grant", "public_unverified", "invalid_uri"}  # fmt: skip
    names = {dict(k)["account_name"] for k in found["cloudflare_oauth_account_info"]}
    assert "Acme Production" in names
    assert "HTTP 403 code 10000" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "cloudflare-oauth-exporter: refresh failed: 1 of 5 accounts: Initech (no OAuth "
        "permission) (HTTP 403 code 10000: Authentication error) — on purpose: the demo's "
    )
    assert last.endswith("so exit status 1 is expected")


DEMO_LINE = re.compile(
    r"demo: listening on (?P<where>[^;]+); metrics at (?P<metrics>\S+), status page at "
    r"(?P<page>\S+) \(simulated Cloudflare API at http://127\.0\.0\.1:\d+/client/v4\); "
    r"Ctrl-C stops"
)


def test_demo_serves_metrics_with_no_credentials():
    with ExporterProcess("--demo") as exporter:
        exporter.wait_ready()
        found = samples(exporter.get("/metrics").text)
        assert len(found["cloudflare_oauth_account_up"]) == 5
        assert found["cloudflare_oauth_exporter_build_info"]
        assert "process_cpu_seconds_total" in found
        (said,) = [m for line in exporter.lines if (m := DEMO_LINE.fullmatch(line))]
        host, port = exporter.address
        assert said["where"] == f"{host}:{port}"  # the address it really listens on
        assert said["metrics"] == f"{exporter.url}/metrics"
        assert said["page"] == f"{exporter.url}/"
        assert "Cloudflare OAuth exporter" in httpx.get(said["page"], timeout=10).text


def test_demo_on_every_interface_says_so_and_prints_urls_that_answer():
    process = subprocess.Popen(
        exporter_command("--demo", "--web.listen-address", ":0"), env=clean_environ(),
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        said = None
        for line in process.stderr:
            said = DEMO_LINE.fullmatch(line.strip())
            if said:
                break
        assert said is not None, "no demo line"
        assert said["where"].startswith("every ")
        assert said["where"].endswith(said["metrics"].rsplit(":", 1)[1].split("/")[0])
        deadline = time.monotonic() + 20
        while (
            httpx.get(said["metrics"].replace("/metrics", "/readyz"), timeout=5).status_code != 200
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.get(said["metrics"], timeout=10).status_code == 200
        assert httpx.get(said["page"], timeout=10).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stderr is not None:
            process.stderr.close()


def test_a_simulator_started_by_hand_as_the_readme_says():
    from tests.support.tools import ROOT

    readme = (ROOT / "README.md").read_text()
    assert "python -m exporter.simulator" in readme
    assert "CLOUDFLARE_API_TOKEN=simulator-token" in readme
    assert "--cloudflare.api-url http://127.0.0.1:8788/client/v4" in readme
    simulator = subprocess.Popen(
        [*exporter_command()[:2], "exporter.simulator", "--listen", "127.0.0.1:0"],
        env=clean_environ(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert simulator.stdout is not None
        printed = simulator.stdout.readline()
        match = re.fullmatch(r"simulator: (http://127\.0\.0\.1:\d+/client/v4) \(5 accounts\)\n",
                             printed)  # fmt: skip
        assert match, printed
        result = run("--once", "--cloudflare.api-url", match[1],
                     CLOUDFLARE_API_TOKEN="simulator-token")  # fmt: skip
        assert len(samples(result.stdout)["cloudflare_oauth_account_up"]) == 5
    finally:
        simulator.terminate()
        simulator.wait(timeout=15)
        if simulator.stdout is not None:
            simulator.stdout.close()
