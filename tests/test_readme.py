"""The README's tables keep up with the code: every flag, variable and metric is documented."""

from __future__ import annotations

import pytest

from exporter.families import ACCOUNT_FAMILIES, EXPORTER_FAMILIES
from exporter.options import OPTIONS
from tests.support.tools import ROOT

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", sorted({n for o in OPTIONS for n in (o.flag, o.env) if n}))
def test_every_flag_and_variable_is_in_the_configuration_table(name):
    assert f"`{name}`" in README


def exported_families() -> set[str]:
    return {f.name for f in ACCOUNT_FAMILIES} | {f.name for f in EXPORTER_FAMILIES}


@pytest.mark.parametrize("name", sorted(exported_families()))
def test_every_metric_is_in_the_metric_tables(name):
    assert f"`{name}`" in README


def test_the_quick_start_is_the_demo():
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "cloudflare-oauth-exporter --demo" in quick_start


def modules() -> list[str]:
    package = ROOT / "exporter"
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if path.parent != package:  # a subpackage is one row
            relative = path.parent.relative_to(ROOT).as_posix() + "/"
        found.append(relative)
    return sorted(set(found))


@pytest.mark.parametrize("module", modules())
def test_the_layout_table_names_every_module(module):
    layout = README.split("### Layout", 1)[1]
    assert f"`{module}`" in layout
