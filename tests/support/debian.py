"""Clean Debian systems for the tests: roots made by debootstrap, run by Debian's podman.

Both are slow to make, so they are kept in CACHE between runs under names made from everything
that goes into them (suite, packages, mirror, architecture, debootstrap's version, this recipe):
change any of it and a new one is made, so a stale cache cannot stand in for a fresh root. Only
what this machine's own configuration says is used to reach the package archives: the apt mirror
from /etc/apt (on a machine that is not Debian, debootstrap's own default), pip's index and the CA
certificates, all passed in at run time.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import hashlib
import io
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.tools import CACHE, missing, require_root, require_tool

# Bump when the way roots or podman are set up changes, so old caches are not reused.
RECIPE = 1
CA_CERTIFICATES = Path("/etc/ssl/certs/ca-certificates.crt")
# Where a container sees this machine's CA certificates: beside, not over, its own bundle, which
# its ca-certificates package rewrites when installed.
CA_CERTIFICATES_INSIDE = "/etc/host-ca-certificates.crt"


def is_debian(os_release: str) -> bool:
    """Whether /etc/os-release's text is Debian's (Ubuntu's says ID=ubuntu, ID_LIKE=debian)."""
    return re.search(r"""^ID=["']?debian["']?$""", os_release, flags=re.MULTILINE) is not None


def apt_mirror() -> str | None:
    """This machine's Debian archive: the first `deb` URI of its apt sources. None on a machine
    that is not Debian, such as Ubuntu, whose archive has no Debian suites: debootstrap then uses
    its own default Debian mirror."""
    os_release = Path("/etc/os-release")
    if not is_debian(os_release.read_text() if os_release.exists() else ""):
        return None
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:  # deb822: stanzas of "Key: value" lines
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.+)$", stanza, flags=re.MULTILINE))
            suites = fields.get("Suites", "").split()
            if "deb" in fields.get("Types", "").split() and any(
                not suite.endswith("-security") for suite in suites
            ):
                return str(fields["URIs"]).split()[0].rstrip("/")
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            match = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if match and not match.group(2).endswith("-security"):
                return match.group(1).rstrip("/")
    return missing("no Debian archive found in /etc/apt/sources.list.d/*.sources or sources.list")


def pip_config() -> str:
    """A pip.conf for a fresh system that reaches the package index the way this machine does:
    its index URLs if it sets any (http(s) only: local paths mean nothing elsewhere), and this
    machine's CA certificates, mounted at CA_CERTIFICATES_INSIDE."""
    found = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    ).stdout  # the venv's pip reads the machine's pip.conf; a stock python3 may have no pip
    settings = dict(re.findall(r"^[\w:.-]*?\.?(index-url|extra-index-url)='(.*)'$", found,
                               flags=re.MULTILINE))  # fmt: skip
    config = configparser.ConfigParser()
    config["global"] = {"cert": CA_CERTIFICATES_INSIDE}
    for key, value in settings.items():
        urls = [url for url in value.split() if url.startswith(("http://", "https://"))]
        if urls:
            config["global"][key] = " ".join(urls)
    text = io.StringIO()
    config.write(text)
    return text.getvalue()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One maker at a time (pytest-xdist, or two runs of the suite)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def debian_root(suite: str, packages: tuple[str, ...] = ()) -> Path:
    """A `minbase` Debian `suite` with `packages`, made by debootstrap once and then cached."""
    require_root("debootstrap")
    debootstrap = require_tool("debootstrap")
    mirror = apt_mirror()
    version = subprocess.run(
        [debootstrap, "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    recipe = [RECIPE, suite, "minbase", sorted(packages), mirror, platform.machine(), version]
    key = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]
    root = CACHE / "debootstrap" / f"{suite}-{key}"
    with _locked(root.with_suffix(".lock")):
        if (root / ".complete").exists():
            return root
        partial = root.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        include = [f"--include={','.join(packages)}"] if packages else []
        result = subprocess.run(
            [debootstrap, "--variant=minbase", *include, suite, str(partial),
             *([mirror] if mirror else [])],
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        if result.returncode != 0:
            log = partial / "debootstrap" / "debootstrap.log"
            detail = log.read_text()[-3000:] if log.exists() else result.stderr[-3000:]
            shutil.rmtree(partial, ignore_errors=True)
            pytest.fail(f"debootstrap {suite} failed:\n{detail}")
        for package in (partial / "var" / "cache" / "apt" / "archives").glob("*.deb"):
            package.unlink()  # installed already; only the cache would grow
        (partial / ".complete").write_text(json.dumps(recipe) + "\n")
        partial.rename(root)
    return root


class Podman:
    """Debian's podman as root, configured by files of its own (never /etc/containers): vfs
    storage in CACHE, cgroupfs and runc (crun fails on this kernel's cgroups), and rlimits
    preset to what this process has, since runc may not raise them."""

    def __init__(self) -> None:
        require_root("podman")
        self.binary = require_tool("podman")
        require_tool("runc")
        home = CACHE / "podman"
        home.mkdir(parents=True, exist_ok=True)
        # Runtime state must not outlive a reboot (a temporary directory, not the cache), and is
        # one per storage, so that two caches never share their locks.
        storage_key = hashlib.sha256(str(home).encode()).hexdigest()[:12]
        run = Path(tempfile.gettempdir()) / f"cloudflare-oauth-exporter-podman-{storage_key}"
        files, nproc = resource_limits()
        containers_conf = home / "containers.conf"
        containers_conf.write_text(
            "[containers]\n"
            f'default_ulimits = ["nofile={files}:{files}", "nproc={nproc}:{nproc}"]\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\nruntime = "runc"\nevents_logger = "file"\n'
            f'tmp_dir = "{run / "libpod"}"\n'
        )
        storage_conf = home / "storage.conf"
        storage_conf.write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{home / "storage"}"\nrunroot = "{run}"\n'
        )
        registries = home / "registries.conf"
        registries.write_text("unqualified-search-registries = []\n")  # no registry: local only
        self.environ = {
            **os.environ,
            "CONTAINERS_CONF": str(containers_conf),
            "CONTAINERS_STORAGE_CONF": str(storage_conf),
            "CONTAINERS_REGISTRIES_CONF": str(registries),
        }

    def run(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args], env=self.environ, capture_output=True, text=True,
            errors="replace", timeout=timeout,
        )  # fmt: skip
        if check and result.returncode != 0:
            pytest.fail(f"podman {args[0]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result

    def wait_for_metrics(self, name: str, url: str, timeout: float, *, poll: float = 1) -> str:
        """The exporter's metrics from container `name` once they count clients; fails with the
        container's log when they do not come, or when the container stops first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                response = httpx.get(url, timeout=5)
                if response.status_code == 200 and "cloudflare_oauth_clients{" in response.text:
                    return response.text
            except httpx.HTTPError:
                pass
            state = self.run("inspect", "--format", "{{.State.Status}}", name, check=False)
            if state.returncode == 0 and state.stdout.strip() != "running":
                self._fail_with_logs(name, f"the container stopped ({state.stdout.strip()})")
            time.sleep(poll)
        self._fail_with_logs(name, f"no metrics within {timeout:.0f}s")
        raise AssertionError  # not reached: pytest.fail raises

    def _fail_with_logs(self, name: str, what: str) -> None:
        logs = self.run("logs", name, check=False)
        pytest.fail(f"{what}:\n{(logs.stdout + logs.stderr)[-4000:]}")

    def image_of(self, root: Path) -> str:
        """`root` as a local image (imported once; the tag carries the root's cache key)."""
        tag = f"localhost/cloudflare-oauth-exporter-tests/{root.name}:latest"
        if self.run("image", "exists", tag, check=False).returncode != 0:
            tar = subprocess.run(
                ["tar", "-C", str(root), "--exclude=./.complete", "-c", "."],
                capture_output=True, check=True, timeout=600,
            )  # fmt: skip
            subprocess.run(
                [self.binary, "import", "-", tag], input=tar.stdout, env=self.environ,
                capture_output=True, check=True, timeout=600,
            )  # fmt: skip
        return tag


def resource_limits() -> tuple[int, int]:
    """(open files, processes) limits to preset in containers: within this process' own, and a
    process limit small enough for conmon's (32768)."""
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    processes = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if processes == resource.RLIM_INFINITY:
        processes = 4096
    return min(files, 65536), min(processes, 4096)
