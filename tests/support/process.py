"""Run the exporter as a real process, the way users and Kubernetes do."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests.support.tools import clean_environ, exporter_command

_LIMITED = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile})); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class ExporterProcess:
    """`python -m exporter ...` on a free loopback port; stderr is captured line by line."""

    def __init__(self, *args: str, nofile: int | None = None, **environ: str) -> None:
        """`nofile`: the process's file descriptor limit (soft and hard), e.g. the common 1024."""
        self.args = ["--web.listen-address", "127.0.0.1:0", *args]
        self.environ = clean_environ(**environ)
        self.nofile = nofile
        self.lines: list[str] = []
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> ExporterProcess:
        command = exporter_command(*self.args)
        if self.nofile is not None:  # set in the child, which then becomes the exporter
            command[1:1] = ["-c", _LIMITED.format(nofile=self.nofile)]
        self._process = subprocess.Popen(
            command, env=self.environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 20
        while not self.url:
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the exporter did not start:\n" + "\n".join(self.lines))
            for line in list(self.lines):
                match = re.search(r'"?address"?[=:] ?"?([0-9.]+:\d+)', line)
                if match:
                    self.url = f"http://{match.group(1)}"
            time.sleep(0.02)
        return self

    def _read(self) -> None:
        assert self._process is not None
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.url.removeprefix("http://").rpartition(":")
        return host, int(port)

    def peak_rss(self) -> int:
        """The process's peak resident memory so far, in bytes (VmHWM)."""
        assert self._process is not None
        status = Path(f"/proc/{self._process.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        assert match is not None
        return int(match.group(1)) * 1024

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get("/readyz").status_code == 200:
                return
            time.sleep(0.05)
        raise AssertionError("never ready:\n" + "\n".join(self.lines))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        assert self._process is not None
        if self._process.poll() is None:
            self._process.send_signal(sig)
        try:
            code = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            raise
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._process.stderr is not None:
            self._process.stderr.close()
        return code

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self.stop()
