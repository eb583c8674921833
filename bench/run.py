"""Benchmark the exporter against the simulator on loopback and print whether each target holds.

    .venv/bin/python bench/run.py            # 200 accounts x 120 clients, 20 ms latency
    .venv/bin/python bench/run.py --quick    # a small smoke run (the tests run this)

Stages, each with its own processes (simulator, exporter, ceiling app, wrk), Linux only:
1. API requests per refresh against the ideal sum(ceil(clients / page size)) + discovery pages.
2. Refresh wall time with no rate budget against the ideal requests x latency / concurrency, CPU
   seconds per refresh, and the same requests made by a bare httpx loop (what any Python client
   pays on this machine).
3. /metrics under wrk between refreshes and while refreshes run back to back, against a bare
   uvicorn app serving the same bytes (the ceiling).
4. Peak RSS of the exporter process at --memory-accounts x --memory-clients, over three
   refreshes (the later two compared with the one before) and gzip scrapes; then /metrics under
   wrk alone and while 4 clients loop on the status page.
5. One account of --single-clients clients in one answer (the spec-literal endpoint): refresh
   time, peak RSS, and /metrics latency while that answer is parsed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from exporter.durations import parse_duration
from exporter.simulator import DEFAULT_TOKEN

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TOKEN = DEFAULT_TOKEN
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Process:
    """A child process whose stderr/stdout lines are collected in the background."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                match = re.search(pattern, line)
                if match:
                    return match
            seen = len(self.lines)
            if self.popen.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"never saw {pattern!r}:\n" + "\n".join(self.lines[-20:]))

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]

    def refreshes(self) -> list[dict[str, object]]:
        found = []
        for line in list(self.lines):
            if line.startswith("{") and '"refresh finished"' in line:
                found.append(json.loads(line))
        return found


@contextmanager
def started(*args: str) -> Iterator[Process]:
    popen = subprocess.Popen(
        [PYTHON, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CLOUDFLARE_API_TOKEN": TOKEN},
    )  # fmt: skip
    process = Process(popen)
    try:
        yield process
    finally:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


@contextmanager
def simulator(accounts: int, clients: int, latency: str, paging: str = "pages") -> Iterator[str]:
    with started(
        "-m", "exporter.simulator", "--listen", "127.0.0.1:0", "--accounts", str(accounts),
        "--clients", str(clients), "--latency", latency, "--paging", paging,
    ) as process:  # fmt: skip
        yield process.wait_for(r"simulator: (\S+)").group(1)


@contextmanager
def exporter(api_url: str, *flags: str) -> Iterator[tuple[Process, str]]:
    with started(
        "-m", "exporter", "--cloudflare.api-url", api_url, "--web.listen-address", "127.0.0.1:0",
        "--log.format", "json", "--cloudflare.rate-limit", "0", *flags,
    ) as process:  # fmt: skip
        address = process.wait_for(r'"address": "([0-9.]+:\d+)"').group(1)
        yield process, f"http://{address}"


def wait_ready(url: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the exporter never got ready")


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float


def wrk(url: str, seconds: float, connections: int) -> Load:
    result = subprocess.run(
        [shutil.which("wrk") or "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
         "--latency", url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    text = result.stdout

    def latency(percentile: str) -> float:
        match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"wrk printed no {percentile}% latency:\n{text}")
        return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if rps is None:
        raise RuntimeError(f"wrk printed no rate:\n{text}")
    return Load(float(rps.group(1)), latency("50"), latency("99"))


def bare_httpx_refresh(api_url: str, concurrency: int, page_size: int) -> tuple[float, int]:
    """The refresh's requests made by the plainest httpx loop: discovery, then every page."""

    async def run() -> tuple[float, int]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(headers=headers, limits=limits) as client:
            started_at = time.perf_counter()
            accounts, page = [], 1
            while True:
                body = (await client.get(f"{api_url}/accounts?page={page}&per_page=50")).json()
                accounts += [a["id"] for a in body["result"]]
                if len(accounts) >= body["result_info"]["total_count"]:
                    break
                page += 1
            sent = page
            queue = list(accounts)

            async def worker() -> None:
                nonlocal sent
                while queue:
                    account, page = queue.pop(), 1
                    while True:
                        url = f"{api_url}/accounts/{account}/oauth_clients"
                        response = await client.get(f"{url}?page={page}&per_page={page_size}")
                        body = response.json()
                        sent += 1
                        info = body["result_info"]
                        if page * page_size >= info["total_count"]:
                            break
                        page += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - started_at, sent

    return asyncio.run(run())


@dataclass
class Row:
    name: str
    value: str
    target: str = ""
    holds: bool | None = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--clients", type=int, default=120, help="clients per account")
    parser.add_argument("--latency", default="20ms", help="simulated API latency")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per case (median taken)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--refreshes", type=int, default=3, help="refreshes measured")
    parser.add_argument("--memory-accounts", type=int, default=1000)
    parser.add_argument("--memory-clients", type=int, default=200)
    parser.add_argument("--single-clients", type=int, default=100_000,
                        help="clients of the one account that answers all at once")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks it all works")
    args = parser.parse_args(argv)
    if args.quick:
        args.accounts, args.clients, args.latency = 6, 60, "2ms"
        args.seconds, args.rounds, args.connections, args.refreshes = 1, 1, 4, 2
        args.memory_accounts, args.memory_clients = 20, 50
        args.single_clients = 2000
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (Debian package wrk)", file=sys.stderr)
        return 2

    rows: list[Row] = []
    latency = parse_duration(args.latency)
    flags = ("--cloudflare.concurrency", str(args.concurrency),
             "--cloudflare.page-size", str(args.page_size))  # fmt: skip
    ideal_requests = args.accounts * math.ceil(args.clients / args.page_size) + max(
        1, math.ceil(args.accounts / 50)
    )

    with simulator(args.accounts, args.clients, args.latency) as api_url:
        # 1-3b: refreshes back to back (interval 1s, no budget), then /metrics during them.
        with exporter(api_url, "--refresh.interval", "1s", *flags) as (process, url):
            process.wait_for('"refresh finished"')  # the first one warms connections
            cpu_before, done_before = process.cpu_seconds(), len(process.refreshes())
            while len(process.refreshes()) < done_before + args.refreshes:
                time.sleep(0.05)
            cpu = (process.cpu_seconds() - cpu_before) / args.refreshes
            measured = process.refreshes()[done_before : done_before + args.refreshes]
            requests = [int(str(r["requests"])) for r in measured]
            walls = [parse_duration(str(r["duration"])) for r in measured]
            seen = len(process.refreshes())
            busy = [wrk(f"{url}/metrics", args.seconds, args.connections) for _ in
                    range(args.rounds)]  # fmt: skip
            during = process.refreshes()[seen:]
        floor_wall, floor_requests = bare_httpx_refresh(api_url, args.concurrency, args.page_size)

        # 3a: between refreshes, against the ceiling serving the very same bytes.
        with exporter(api_url, "--refresh.interval", "1h", *flags) as (process, url):
            wait_ready(url)
            body = httpx.get(f"{url}/metrics", timeout=30).content
            with tempfile.NamedTemporaryFile(suffix=".prom") as saved:
                saved.write(body)
                saved.flush()
                with started("bench/ceiling.py", saved.name, "127.0.0.1:0") as ceiling:
                    ceiling_url = ceiling.wait_for(r"ceiling: (\S+)").group(1)
                    quiet, top = [], []
                    for _ in range(args.rounds):  # alternate, so drift hits both alike
                        quiet.append(wrk(f"{url}/metrics", args.seconds, args.connections))
                        top.append(wrk(ceiling_url, args.seconds, args.connections))

    with (
        simulator(args.memory_accounts, args.memory_clients, "0s") as api_url,
        exporter(api_url, "--refresh.interval", "5s", *flags) as (process, url),
    ):
        # Two refreshes after the first, each compared with the one before (change
        # detection), with Prometheus-like gzip scrapes all along.
        wait_ready(url)
        done = len(process.refreshes())
        while len(process.refreshes()) < done + 2:
            httpx.get(f"{url}/metrics", timeout=30)
            time.sleep(0.25)
        peak = process.peak_rss_mb()
        series = httpx.get(f"{url}/metrics", timeout=30).text.count("\ncloudflare_oauth_")
        # The status page of as many accounts as it shows: visitors must not slow /metrics.
        alone = wrk(f"{url}/metrics", args.seconds, args.connections)
        with visitors(f"{url}/", 4) as pages:
            visited = wrk(f"{url}/metrics", args.seconds, args.connections)

    single = single_answer(args.single_clients)

    ideal_wall = statistics.median(requests) * latency / args.concurrency
    wall = statistics.median(walls)
    # With --refresh.interval 1s, a refresh that takes longer is followed at once: back to back.
    refreshing = min(1.0, wall / 1.0)
    rows += [
        Row("API requests per refresh", f"{statistics.median(requests):.0f}",
            f"= ideal {ideal_requests}", statistics.median(requests) == ideal_requests),
        Row("refresh wall time, no rate budget", f"{wall:.3f} s",
            f"<= 1.2 x ideal {ideal_wall:.3f} s", wall <= 1.2 * ideal_wall),
        Row("  ratio to ideal", f"{wall / ideal_wall:.2f}"),
        Row("  bare httpx loop, same requests", f"{floor_wall:.3f} s ({floor_requests} requests)",
            f"ratio {floor_wall / ideal_wall:.2f}: the floor on this machine"),
        Row("CPU seconds per refresh", f"{cpu:.3f} s"),
    ]  # fmt: skip
    quiet_rps, top_rps = _median(quiet, "rps"), _median(top, "rps")
    quiet_p99, top_p99 = _median(quiet, "p99_ms"), _median(top, "p99_ms")
    busy_rps, busy_p99 = _median(busy, "rps"), _median(busy, "p99_ms")
    rows += [
        Row("/metrics between refreshes",
            f"{quiet_rps:.0f}/s p50 {_median(quiet, 'p50_ms'):.2f} p99 {quiet_p99:.2f} ms"),
        Row("ceiling: bare uvicorn, same bytes",
            f"{top_rps:.0f}/s p50 {_median(top, 'p50_ms'):.2f} p99 {top_p99:.2f} ms"),
        Row("  throughput ratio", f"{quiet_rps / top_rps:.2f}", ">= 0.9",
            quiet_rps >= 0.9 * top_rps),
        Row("  p99 ratio", f"{quiet_p99 / top_p99:.2f}", "<= 2", quiet_p99 <= 2 * top_p99),
        Row("/metrics during back-to-back refreshes",
            f"{busy_rps:.0f}/s p50 {_median(busy, 'p50_ms'):.2f} p99 {busy_p99:.2f} ms "
            f"(refreshing {refreshing:.0%} of the time; {len(during)} refreshes ended)"),
        Row("  p99", f"{busy_p99:.2f} ms", "< 25 ms", busy_p99 < 25),
        Row("  throughput ratio to ceiling", f"{busy_rps / top_rps:.2f}", ">= 0.3",
            busy_rps >= 0.3 * top_rps),
        Row(f"peak RSS, {args.memory_accounts} x {args.memory_clients} clients",
            f"{peak:.1f} MB ({series} account series, change detection on)", "< 70 MB",
            peak < 70),
        Row(f"/metrics while 4 clients loop GET / ({args.memory_accounts} accounts)",
            f"p50 {visited.p50_ms:.2f} ms (alone {alone.p50_ms:.2f}), "
            f"{pages[0] / args.seconds:.0f} pages/s", "p50 <= 2 x alone",
            visited.p50_ms <= 2 * alone.p50_ms),
        Row(f"one answer of {args.single_clients} clients: refresh", f"{single.wall:.2f} s "
            f"({single.wall / args.single_clients * 1e6:.1f} us a client)"),
        Row("  peak RSS", f"{single.peak:.1f} MB", "< 100 MB", single.peak < 100),
        Row("  /metrics while it is parsed",
            f"p50 {single.p50:.2f} p99 {single.p99:.2f} max {single.max:.2f} ms "
            f"({single.scrapes} scrapes)", "p99 < 100 ms", single.p99 < 100),
    ]  # fmt: skip
    print(_table(rows, args, len(body)))
    return 0


@contextmanager
def visitors(url: str, count: int) -> Iterator[list[int]]:
    """`count` clients fetching `url` again and again; yields [pages fetched], filled at exit."""
    stop = threading.Event()
    fetched = [0] * count
    errors: list[Exception] = []

    def visit(index: int) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    client.get(url).raise_for_status()
                    fetched[index] += 1
        except Exception as error:  # said at the end: a row measured without visitors is wrong
            errors.append(error)
            stop.set()

    threads = [threading.Thread(target=visit, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    total = [0]
    try:
        yield total
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        total[0] = sum(fetched)
    if errors:
        raise RuntimeError(f"a status-page visitor failed: {errors[0]!r}")
    if not total[0]:
        raise RuntimeError("the status-page visitors fetched no page")


@dataclass
class SingleAnswer:
    wall: float
    peak: float
    p50: float
    p99: float
    max: float
    scrapes: int


def single_answer(clients: int) -> SingleAnswer:
    """One account answering all its clients at once; /metrics scraped while it is parsed."""
    with (
        simulator(1, clients, "0s", paging="spec") as api_url,
        exporter(api_url, "--refresh.interval", "1h") as (  # the default --cloudflare.timeout
            process, url,
        ),
    ):  # fmt: skip
        latencies: list[float] = []
        with httpx.Client(timeout=30) as client:
            while not latencies or not process.refreshes():  # one scrape at least
                started_at = time.perf_counter()
                client.get(f"{url}/metrics")
                latencies.append((time.perf_counter() - started_at) * 1000)
                time.sleep(0.01)
        wall = parse_duration(str(process.refreshes()[0]["duration"]))
        peak = process.peak_rss_mb()
    latencies.sort()
    return SingleAnswer(
        wall, peak, statistics.median(latencies), latencies[int(0.99 * (len(latencies) - 1))],
        latencies[-1], len(latencies),
    )  # fmt: skip


def _median(loads: list[Load], attribute: str) -> float:
    return float(statistics.median(getattr(load, attribute) for load in loads))


def _table(rows: list[Row], args: argparse.Namespace, body_bytes: int) -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    header = (
        f"cloudflare-oauth-exporter benchmark, {datetime.now(UTC):%Y-%m-%d}, {cpu}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}\n"
        f"{args.accounts} accounts x {args.clients} clients, {args.latency} latency, concurrency "
        f"{args.concurrency}, page size {args.page_size}; wrk -t1 -c{args.connections}, "
        f"{args.seconds:g}s x {args.rounds} (median); /metrics body {body_bytes / 1024:.0f} KiB\n"
    )
    width = max(len(row.name) for row in rows)
    value_width = max(len(row.value) for row in rows)
    lines = [header, f"| {'measure':<{width}} | {'measured':<{value_width}} | target | holds |",
             f"|{'-' * (width + 2)}|{'-' * (value_width + 2)}|---|---|"]  # fmt: skip
    for row in rows:
        holds = "" if row.holds is None else ("yes" if row.holds else "NO")
        lines.append(
            f"| {row.name:<{width}} | {row.value:<{value_width}} | {row.target} | {holds} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
