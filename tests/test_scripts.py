"""The scripts a new user runs first: how `scripts/ensure-venv` repairs a venv an earlier run left
broken.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.tools import ROOT


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def no_installs(tmp_path: Path) -> dict[str, str]:
    """An environment whose apt-get and sudo refuse: a test never installs a package."""
    path = tmp_path / "refuse"
    path.mkdir()
    for tool in ("apt-get", "sudo"):
        executable(
            path / tool, f"#!/bin/sh\necho 'no package installs in tests ({tool})' >&2\nexit 1\n"
        )
    return {**os.environ, "PATH": f"{path}{os.pathsep}{os.environ['PATH']}"}


def make_broken(venv: Path, how: str, environ: dict[str, str]) -> None:
    if how == "without-pip":  # what `python3 -m venv` leaves when ensurepip is missing
        subprocess.run(["python3", "-m", "venv", "--without-pip", str(venv)], env=environ,
                       check=True, timeout=120)  # fmt: skip
    else:  # a venv whose python is gone: made by a python since removed
        (venv / "bin").mkdir(parents=True)
        (venv / "pyvenv.cfg").write_text(f"home = {venv.parent / 'removed'}\n")
        (venv / "bin" / "python").symlink_to(venv.parent / "removed" / "python3")


def ensure_venv(venv: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "ensure-venv"), str(venv)], env=environ,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("how", ["without-pip", "dangling-python"])
def test_ensure_venv_makes_a_broken_venv_anew_and_then_leaves_it_alone(tmp_path, no_installs, how):
    venv = tmp_path / ".venv"
    make_broken(venv, how, no_installs)
    (venv / "left-by-the-failed-run").touch()
    result = ensure_venv(venv, no_installs)
    assert result.returncode == 0, result.stderr
    assert f"{venv} has no working python with pip; making it anew" in result.stderr
    assert not (venv / "left-by-the-failed-run").exists()
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--version"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    # A working venv is kept as it is.
    (venv / "kept").touch()
    again = ensure_venv(venv, no_installs)
    assert (again.returncode, again.stderr) == (0, "")
    assert (venv / "kept").exists()
