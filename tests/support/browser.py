"""Headless Chromium driven over the DevTools protocol on a pipe: load a page at a given window
size, read its DOM and measurements, take a screenshot.

The page itself may forbid scripts (the status page does): DevTools' Runtime.evaluate runs in
the browser's own context, outside the page's Content-Security-Policy, and only reads.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.tools import require_tool

# Debian's name for it, and Ubuntu's: its chromium-browser deb installs the snap and
# /usr/bin/chromium-browser, which starts it (scripts/test installs whichever apt has).
BROWSERS = ("chromium", "chromium-browser")
_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe",
]  # fmt: skip


@dataclass(frozen=True)
class Rendered:
    html: str  # the DOM after loading, serialized
    title: str
    scroll_width: int  # the document's width, overflow included
    window_width: int
    screenshot: bytes  # PNG of the whole page


def render_page(
    url: str, *, width: int = 1280, height: int = 900, full_page: bool = True, timeout: float = 60
) -> Rendered:
    """`url` in a window `width` x `height`; the screenshot covers the whole page, or with
    `full_page=False` the window only."""
    chromium = require_tool(*BROWSERS)
    commands_read, commands_write = os.pipe()
    results_read, results_write = os.pipe()
    # Moved above 9, so that putting them on 3 and 4 cannot close one of them on the way.
    commands_read, results_write = (_above_9(fd) for fd in (commands_read, results_write))
    with tempfile.TemporaryDirectory() as profile:
        # The browser reads commands on fd 3 and writes results on fd 4: bash puts them there (dash
        # cannot redirect descriptors above 9).
        shell = (
            f'exec "$0" "$@" 3<&{commands_read} 4>&{results_write} '
            f"{commands_read}<&- {results_write}>&-"
        )
        process = subprocess.Popen(
            ["bash", "-c", shell, chromium, *_FLAGS, f"--user-data-dir={profile}"],
            pass_fds=(commands_read, results_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(results_write)
        session = _Session(commands_write, results_read, time.monotonic() + timeout)
        try:
            return session.load(url, width, height, full_page)
        finally:
            session.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _above_9(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class _Session:
    def __init__(self, write_fd: int, read_fd: int, deadline: float) -> None:
        self._write = os.fdopen(write_fd, "wb", buffering=0)
        self._read = os.fdopen(read_fd, "rb", buffering=0)
        self._deadline = deadline
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []

    def load(self, url: str, width: int, height: int, full_page: bool) -> Rendered:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

        def page(method: str, **params: Any) -> dict[str, Any]:
            return self.call(method, session=session, **params)

        page("Emulation.setDeviceMetricsOverride", width=width, height=height,
             deviceScaleFactor=1, mobile=False)  # fmt: skip
        page("Page.enable")
        page("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", session)
        facts = json.loads(
            page(
                "Runtime.evaluate",
                returnByValue=True,
                expression=(
                    "JSON.stringify({html: document.documentElement.outerHTML, "
                    "title: document.title, "
                    "scroll: document.documentElement.scrollWidth, "
                    "window: window.innerWidth, "
                    "height: document.documentElement.scrollHeight})"
                ),
            )["result"]["value"]
        )
        shot = page(
            "Page.captureScreenshot", format="png", captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "scale": 1,
                  "height": facts["height"] if full_page else height},
        )  # fmt: skip
        return Rendered(
            html=facts["html"],
            title=facts["title"],
            scroll_width=facts["scroll"],
            window_width=facts["window"],
            screenshot=base64.b64decode(shot["data"]),
        )

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self._write.write(json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result
            self._events.append(reply)

    def wait_event(self, method: str, session: str) -> None:
        while True:
            for event in self._events:
                if event.get("method") == method and event.get("sessionId") == session:
                    return
            self._events.append(self._receive())

    def _receive(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._read], [], [], remaining)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = self._read.read(65536)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        decoded: dict[str, Any] = json.loads(message)
        return decoded

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._write.write(json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        self._write.close()
        self._read.close()


def save_screenshot(rendered: Rendered, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rendered.screenshot)
    return path
