"""pytest fixtures only; what tests share otherwise lives in `tests.support`."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator

import pytest

from exporter.simulator import Simulator
from tests.support.simulator import SimulatorThread
from tests.support.tools import require_tool


@pytest.fixture
def promtool() -> Callable[[bytes], subprocess.CompletedProcess[bytes]]:
    path = require_tool("promtool")

    def check(exposition: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [path, "check", "metrics"], input=exposition, capture_output=True, timeout=60
        )

    return check


@pytest.fixture(scope="session")
def simulator_thread() -> Iterator[SimulatorThread]:
    with SimulatorThread(Simulator()) as thread:
        yield thread


@pytest.fixture
def serve_simulator(simulator_thread: SimulatorThread) -> Callable[[Simulator], str]:
    """Serve a Simulator on loopback (one uvicorn thread per session); returns its base URL."""

    def start(simulator: Simulator) -> str:
        simulator_thread.simulator = simulator
        return simulator_thread.url

    return start


@contextlib.contextmanager
def _refuse_processes(item: pytest.Item) -> Iterator[None]:
    """Around a test not marked slow, starting a process fails with the fix in the message."""
    if item.get_closest_marker("slow") is not None:
        yield
        return

    def refuse(self: subprocess.Popen[bytes], *args: object, **kwargs: object) -> None:
        raise AssertionError(
            f"{item.nodeid} starts a process: mark it pytest.mark.slow, so that "
            '`scripts/test -m "not slow"` stays the fast loop'
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", refuse)
        yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with _refuse_processes(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _refuse_processes(item):
        return (yield)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report what tests measured: record_property("measured: <what>", value)."""
    lines = [
        f"{report.nodeid}: {name.removeprefix('measured: ')} = {value}"
        for report in terminalreporter.stats.get("passed", [])
        for name, value in report.user_properties
        if name.startswith("measured: ")
    ]
    if lines:
        terminalreporter.section("measured")
        for line in lines:
            terminalreporter.write_line(line)
