"""The exporter process under the attacks of issue 10, with its default settings, on real
loopback sockets: the numbers the issue asks for, asserted.

The bounds (answers within 15 s, peak RSS under 150 MB, closed within 10 s) are behaviour the
issue specifies, not speed: each is asserted with the issue's own number, which the exporter
meets with a wide margin (measured: /metrics answers within ~0.2 s of the attack starting; peak
RSS ~42 MB with 6,000 silent TLS connections, ~122 MB with every open connection stalled
mid-handshake).
"""

from __future__ import annotations

import contextlib
import random
import ssl
import time

import httpx
import pytest

from exporter.simulator import Simulator, make_account
from tests.support.attack import (
    client_hello,
    closed_by_peer,
    file_descriptors,
    silent_connections,
)
from tests.support.process import ExporterProcess
from tests.support.simulator import TOKEN
from tests.support.tls import make_pki

pytestmark = pytest.mark.slow  # every test here starts the exporter

MB = 1024 * 1024


def start(serve_simulator, *args: str, nofile: int | None = None) -> ExporterProcess:
    url = serve_simulator(Simulator([make_account(random.Random(4), "Target", 20)]))
    return ExporterProcess(
        "--cloudflare.api-url", url, *args, nofile=nofile, CLOUDFLARE_API_TOKEN=TOKEN
    )


def answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.TransportError:
        return False


def seconds_until_answering(client: httpx.Client, url: str, budget: float) -> float:
    started = time.monotonic()
    while not answers(client, url):
        assert time.monotonic() - started < budget, f"{url} did not answer within {budget}s"
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.parametrize(
    "extra",
    [(), ("--web.max-connections", "5000")],
    ids=["default-limit", "limit-above-the-descriptors"],
)
def test_1100_silent_connections_with_1024_descriptors_leave_metrics_answering(
    serve_simulator, extra
):
    # With the default limit (256) the longest-waiting silent connections make room; with a
    # limit above what 1,024 descriptors allow, accept fails with EMFILE and does the same.
    with (
        start(serve_simulator, *extra, nofile=1024) as exporter,
        file_descriptors(1100 + 256),
    ):
        exporter.wait_ready()
        lines_before = len(exporter.lines)
        with silent_connections(exporter.address, 1100), httpx.Client(timeout=5) as client:
            attack_started = time.monotonic()
            # The bound: answering again within 15 s of the attack starting.
            assert seconds_until_answering(client, f"{exporter.url}/metrics", 15) < 15
            # ...and through the attack, past the head timeout that closes the silent ones
            while time.monotonic() - attack_started < 12:
                assert answers(client, f"{exporter.url}/metrics")
                time.sleep(0.5)
        with httpx.Client(timeout=5) as client:
            assert answers(client, f"{exporter.url}/metrics")
        logged = exporter.lines[lines_before:]
    assert len(logged) < 100, "\n".join(logged[:20])  # was 567,294 tracebacks in 45 s
    assert not any("Traceback" in line for line in logged)
    if extra:  # the EMFILE path ran, and was counted rather than repeated
        failed = [line for line in logged if "accepting a connection failed" in line]
        assert failed
        assert "Too many open files" in failed[0]
        assert len(failed) <= 3


@pytest.fixture(scope="module")
def tls_config(tmp_path_factory) -> tuple[str, ssl.SSLContext]:
    directory = tmp_path_factory.mktemp("tls")
    pki = make_pki(directory)
    config = directory / "web.yml"
    config.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    )
    return str(config), ssl.create_default_context(cafile=str(pki.ca))


@pytest.mark.parametrize("hello", [False, True], ids=["silent", "stalled-in-handshake"])
def test_6000_tls_connections_keep_memory_under_150_mb_and_metrics_answering(
    serve_simulator, tls_config, hello
):
    config, trust = tls_config
    with start(serve_simulator, "--web.config.file", config) as exporter, file_descriptors(6300):
        url = exporter.url.replace("http://", "https://") + "/metrics"
        with httpx.Client(verify=trust, timeout=5) as client:
            seconds_until_answering(client, url, 30)
            with silent_connections(exporter.address, 6000) as sockets:
                if hello:  # the worst case: every held connection costs a TLS handshake
                    time.sleep(0.5)  # the connects complete
                    first = client_hello()
                    for sock in sockets:
                        with contextlib.suppress(OSError):  # closed to make room already
                            sock.send(first)
                attack_started = time.monotonic()
                missed = 0
                while time.monotonic() - attack_started < 5:
                    missed += not answers(client, url)
                    time.sleep(0.25)
                # keeps answering: a scrape may lose a race in the first burst, never more
                assert missed <= 1
            peak = exporter.peak_rss()
    assert peak < 150 * MB, f"peak RSS {peak / MB:.0f} MB"  # was 1.8 GB for 6,000


def test_silent_and_slow_clients_are_closed_within_10_seconds(serve_simulator):
    with start(serve_simulator) as exporter, httpx.Client(timeout=5) as client:
        exporter.wait_ready()
        with silent_connections(exporter.address, 3) as (silent, dripping, idle):
            time.sleep(0.2)  # the connects complete
            dripping.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            idle.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # then keeps it alive
            started = time.monotonic()
            closed: dict[str, float] = {}
            while len(closed) < 3:
                elapsed = time.monotonic() - started
                assert elapsed < 13, f"still open after {elapsed:.0f}s: {closed}"
                for name, sock in (("silent", silent), ("dripping", dripping), ("idle", idle)):
                    if name not in closed and closed_by_peer(sock):
                        closed[name] = elapsed
                if "dripping" not in closed:
                    dripping.send(b"a")  # a byte a second keeps no connection alive
                time.sleep(1 if "dripping" not in closed else 0.1)
            assert answers(client, f"{exporter.url}/metrics")
    # the head timeout: 10 s from accept (plus the 1 s polling step)
    assert 9 <= closed["silent"] <= 12
    assert 9 <= closed["dripping"] <= 12
    assert closed["idle"] <= 7  # keep-alive: closed 5 s after its response, as before
