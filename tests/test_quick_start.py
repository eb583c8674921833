"""The README's quick start, run as a new user would: on a clean Debian with nothing but python3.

The command is read from the README, not copied here, so the README cannot drift from what works.
Each Debian is a `minbase` root from debootstrap (cached, see tests/support/debian.py), run by
podman on the host's network; the machine's own apt mirror, pip index and CA certificates are
what a stock machine would have configured.
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.support.debian import (
    CA_CERTIFICATES,
    CA_CERTIFICATES_INSIDE,
    Podman,
    debian_root,
    pip_config,
)
from tests.support.prometheus import free_port
from tests.support.tools import ROOT

README = ROOT / "README.md"
# What a clone has: the repository without what the tests and the tools leave behind.
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "*.egg-info",
    "htmlcov", ".coverage*", "build", "dist",
)  # fmt: skip


def quick_start_section() -> str:
    return README.read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]


def quick_start() -> str:
    blocks = re.findall(r"```sh\n(.*?)```", quick_start_section(), flags=re.DOTALL)
    return str(blocks[0]).strip()


def test_the_quick_start_is_one_command_then_the_tests():
    section = quick_start_section()
    first, second = (b.strip() for b in re.findall(r"```sh\n(.*?)```", section, re.DOTALL)[:2])
    assert "\n" not in first
    assert second == "scripts/test"
    for release in ("Debian 12", "Debian 13", "Ubuntu 24.04", "3.11 or newer"):
        assert release in section


@pytest.mark.slow
@pytest.mark.parametrize("suite", ["bookworm", "trixie"])  # Debian 12 and 13
def test_the_quick_start_serves_metrics_on_a_clean_debian(tmp_path, suite):
    root = debian_root(suite, ("python3",))
    assert not (root / "usr" / "share" / "doc" / "python3-venv").exists()  # stock: no venv yet
    podman = Podman()
    image = podman.image_of(root)
    clone = tmp_path / "clone"
    shutil.copytree(ROOT, clone, ignore=NOT_IN_A_CLONE)
    (tmp_path / "pip.conf").write_text(pip_config())
    port = free_port()
    name = f"cloudflare-oauth-exporter-quick-start-{suite}-{port}"
    podman.run(
        "run", "--detach", "--name", name, "--network", "host",
        "--volume", f"{clone}:/src", "--workdir", "/src",
        "--volume", f"{CA_CERTIFICATES}:{CA_CERTIFICATES_INSIDE}:ro",
        "--volume", f"{tmp_path / 'pip.conf'}:/etc/pip.conf:ro",
        "--env", f"EXPORTER_WEB_LISTEN_ADDRESS=127.0.0.1:{port}",
        image, "bash", "-c", quick_start(),
    )  # fmt: skip
    try:
        body = podman.wait_for_metrics(name, f"http://127.0.0.1:{port}/metrics", 900, poll=2)
        logs = podman.run("logs", name).stderr
    finally:
        podman.run("rm", "--force", name, check=False)
    assert "cloudflare_oauth_clients{" in body
    assert "cloudflare_oauth_account_up{" in body
    # The command did what a stock machine needs: it installed the venv package of its python
    # (python3.11-venv on bookworm, python3.13-venv on trixie) itself.
    assert re.search(r"installing python3\.\d+-venv with apt-get", logs), logs
