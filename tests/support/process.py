"""Run the exporter as a real process, the way users and Kubernetes do."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time

import httpx

from tests.support.tools import clean_environ, exporter_command


class ExporterProcess:
    """`python -m exporter ...` on a free loopback port; stderr is captured line by line."""

    def __init__(self, *args: str, **environ: str) -> None:
        self.args = ["--web.listen-address", "127.0.0.1:0", *args]
        self.environ = clean_environ(**environ)
        self.lines: list[str] = []
        self.url = ""
        self.stdout = ""
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> ExporterProcess:
        self._process = subprocess.Popen(
            exporter_command(*self.args),
            env=self.environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
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
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

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
        if self._process.stdout is not None:
            self.stdout = self._process.stdout.read()
            self._process.stdout.close()
        if self._process.stderr is not None:
            self._process.stderr.close()
        return code

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self.stop()
