"""The scripts a new user runs first: which Debian packages `scripts/test` asks apt for on each
distribution, how `scripts/ensure-venv` repairs a venv an earlier run left broken, and how the
tests find the tools those scripts install.

Ubuntu cannot be run here (no Ubuntu archive is reachable), so its apt is played by a fake
`apt-cache` and `apt-get` on PATH that answer as Ubuntu 24.04's do for the packages in question.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import tools
from tests.support.browser import BROWSERS
from tests.support.debian import is_debian
from tests.support.tools import ROOT, require_tool

# What `apt-cache policy` knows of a package in each world: its candidate (None: a virtual
# package, "Candidate: (none)") and the version installed, if any. A package not listed is unknown
# to apt, which then prints nothing.
Package = dict[str, str | None]
# Named alike on Debian 12 and 13 and on Ubuntu 24.04 (its universe component, on by default).
OTHER_PACKAGES = [
    "debootstrap", "npm", "podman", "prometheus", "prometheus-alertmanager", "runc", "wrk",
]  # fmt: skip
COMMON: dict[str, Package] = {name: {"candidate": "1.0"} for name in OTHER_PACKAGES}
DEBIAN_12: dict[str, Package] = {
    **COMMON,
    "chromium": {"candidate": "150.0.7871.100-1~deb12u1"},
    "chromium-browser": {"candidate": None},  # only named in other packages' dependencies
    "debian-archive-keyring": {"candidate": "2023.3+deb12u2", "installed": "2023.3+deb12u2"},
}
UBUNTU_24_04: dict[str, Package] = {
    **COMMON,
    "chromium": {"candidate": None},
    "chromium-browser": {"candidate": "2:1snap1-0ubuntu2"},  # installs the snap
    "debian-archive-keyring": {"candidate": "2023.4"},
}
EVERY_COMMAND = (
    "promtool", "prometheus", "prometheus-alertmanager", "amtool", "wrk", "podman", "runc",
    "debootstrap", "npm",
)  # fmt: skip

APT_CACHE = """#!{python}
import json, os, sys
state = json.loads(open(os.environ["FAKE_APT"]).read())
known = state["worlds"][state["now"]]
assert sys.argv[1] == "policy", sys.argv
for name in sys.argv[2:]:
    if name in known:
        candidate = known[name]["candidate"]
        print(f"{{name}}:")
        print(f"  Installed: {{known[name].get('installed') or '(none)'}}")
        print(f"  Candidate: {{candidate or '(none)'}}")
        print("  Version table:")
        if candidate:
            print(f"     {{candidate}} 500")
            print("        500 http://mirror.invalid/debian stable/main amd64 Packages")
"""
APT_GET = """#!{python}
import json, os, sys
path = os.environ["FAKE_APT"]
state = json.loads(open(path).read())
state["calls"].append(sys.argv[1:])
if sys.argv[1] == "update":
    state["now"] = state["after_update"]
open(path, "w").write(json.dumps(state))
if "install" in sys.argv:
    known = state["worlds"][state["now"]]
    for name in sys.argv[sys.argv.index("install") + 1:]:
        if not name.startswith("-") and not known.get(name, {{}}).get("candidate"):
            sys.exit(f"E: Unable to locate package {{name}}")
"""


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def run_test_command_with_fake_apt(
    tmp_path: Path, now: str, *, after_update: str | None = None, commands: tuple[str, ...] = ()
) -> tuple[list[list[str]], subprocess.CompletedProcess[str]]:
    """scripts/test, copied into an empty clone, with a PATH that holds only the fake apt, `sudo`
    that just runs its command, the few basic tools the scripts call, and `commands` as if they
    were installed. It goes as far as scripts/ensure-venv, which stops it: python3 is not on that
    PATH. Returns the fake apt-get's calls."""
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    for script in ("test", "apt-install", "ensure-venv"):
        shutil.copy2(ROOT / "scripts" / script, clone / "scripts" / script)
    path = tmp_path / "bin"
    path.mkdir()
    for tool in ("bash", "env", "id", "dirname", "sort"):
        found = shutil.which(tool)
        assert found, tool
        (path / tool).symlink_to(found)
    executable(path / "apt-cache", APT_CACHE.format(python=sys.executable))
    executable(path / "apt-get", APT_GET.format(python=sys.executable))
    executable(path / "sudo", f'#!{shutil.which("bash")}\nexec "$@"\n')
    for command in commands:
        executable(path / command, "#!/bin/false\n")
    state = tmp_path / "apt.json"
    worlds = {"debian-12": DEBIAN_12, "ubuntu-24.04": UBUNTU_24_04, "stale": {}}
    state.write_text(
        json.dumps({"worlds": worlds, "now": now, "after_update": after_update or now, "calls": []})
    )
    result = subprocess.run(
        [str(clone / "scripts" / "test")],
        env={"PATH": str(path), "HOME": str(tmp_path), "FAKE_APT": str(state)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # Past the packages, to the venv: the package step succeeded.
    assert "scripts/ensure-venv: python3 not found" in result.stderr, result.stderr
    calls: list[list[str]] = json.loads(state.read_text())["calls"]
    return calls, result


def installed(call: list[str]) -> list[str]:
    assert call[:3] == ["install", "-y", "--no-install-recommends"], call
    return sorted(call[3:])


@pytest.mark.slow
def test_on_debian_12_the_test_command_installs_chromium(tmp_path):
    calls, _ = run_test_command_with_fake_apt(tmp_path, "debian-12")
    (call,) = calls
    assert installed(call) == sorted(["chromium", *OTHER_PACKAGES])


@pytest.mark.slow
def test_on_ubuntu_24_04_the_test_command_installs_chromium_browser_and_debians_keyring(tmp_path):
    calls, result = run_test_command_with_fake_apt(tmp_path, "ubuntu-24.04")
    (call,) = calls
    assert installed(call) == sorted(["chromium-browser", "debian-archive-keyring",
                                      *OTHER_PACKAGES])  # fmt: skip
    assert "apt has no chromium; installing chromium-browser" in result.stderr


@pytest.mark.slow
def test_with_package_lists_not_yet_fetched_the_browser_is_chosen_after_the_update(tmp_path):
    # A fresh Ubuntu container: apt knows nothing until `apt-get update`.
    calls, _ = run_test_command_with_fake_apt(tmp_path, "stale", after_update="ubuntu-24.04")
    first, update, second = calls
    assert "chromium" in installed(first)
    assert update == ["update"]
    assert installed(second) == sorted(["chromium-browser", "debian-archive-keyring",
                                        *OTHER_PACKAGES])  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("world", "commands", "expected"),
    [
        ("debian-12", EVERY_COMMAND, ["chromium"]),
        ("debian-12", (*EVERY_COMMAND, "chromium"), None),
        # the snap's chromium-browser, installed by hand or by an earlier run
        ("ubuntu-24.04", (*EVERY_COMMAND, "chromium-browser"), ["debian-archive-keyring"]),
        ("ubuntu-24.04", ("chromium-browser",), sorted(["debian-archive-keyring",
                                                        *OTHER_PACKAGES])),
    ],
    ids=["debian-only-chromium-missing", "debian-nothing-missing", "ubuntu-only-keyring-missing",
         "ubuntu-browser-there"],
)  # fmt: skip
def test_only_what_is_missing_is_installed(tmp_path, world, commands, expected):
    calls, _ = run_test_command_with_fake_apt(tmp_path, world, commands=commands)
    if expected is None:
        assert calls == []
    else:
        (call,) = calls
        assert installed(call) == expected


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


def test_the_tests_find_ubuntus_chromium_browser(tmp_path, monkeypatch):
    monkeypatch.setattr(tools, "CACHE", tmp_path / "cache")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match="chromium or chromium-browser is not"):
        require_tool(*BROWSERS)
    executable(tmp_path / "chromium-browser", "#!/bin/false\n")
    assert require_tool(*BROWSERS) == str(tmp_path / "chromium-browser")
    executable(tmp_path / "chromium", "#!/bin/false\n")
    assert require_tool(*BROWSERS) == str(tmp_path / "chromium")  # Debian's name first


OS_RELEASE: dict[str, str] = {
    "Debian 12": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nID=debian\n',
    "Debian 13": 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_ID="13"\nID=debian\n',
    "Ubuntu 24.04": 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nVERSION_ID="24.04"\nID=ubuntu\n'
    "ID_LIKE=debian\n",
}


@pytest.mark.parametrize("release", OS_RELEASE)
def test_debian_roots_use_the_machines_mirror_only_on_debian(release):
    # Ubuntu's archive has no Debian suites: there debootstrap takes its own default mirror.
    assert is_debian(OS_RELEASE[release]) == release.startswith("Debian")
