"""A small run of the benchmark, so the script cannot rot. It asserts what it prints, not speed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.tools import ROOT, clean_environ, require_tool

pytestmark = pytest.mark.slow  # every test here starts a process


def test_the_benchmark_runs_and_prints_every_measure():
    require_tool("wrk")
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--quick"], cwd=ROOT, env=clean_environ(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout
    # the first cell of every row, so "peak RSS" is its own row, not part of another's name
    measures = [line.strip("|").split("|")[0].strip() for line in table.splitlines()
                if line.startswith("|")]  # fmt: skip
    for measure in (
        "API requests per refresh", "refresh wall time, no rate budget", "ratio to ideal",
        "bare httpx loop, same requests", "CPU seconds per refresh", "/metrics between refreshes",
        "ceiling: bare uvicorn, same bytes", "/metrics during back-to-back refreshes",
        "peak RSS, 20 x 50 clients", "one answer of 2000 clients: refresh", "peak RSS",
        "/metrics while it is parsed", "/metrics while 4 clients loop GET / (20 accounts)",
    ):  # fmt: skip
        assert measure in measures, measure
    # The request count is exact whatever the machine: 6 accounts x 2 pages + 1 discovery page.
    assert "| API requests per refresh " in table
    row = next(line for line in table.splitlines() if "API requests per refresh" in line)
    assert [cell.strip() for cell in row.strip("|").split("|")] == [
        "API requests per refresh",
        "13",
        "= ideal 13",
        "yes",
    ]
