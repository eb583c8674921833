"""The README's tables keep up with the code: every flag, variable and metric is documented."""

from __future__ import annotations

import pytest

from exporter.metrics import ACCOUNT_FAMILIES, ExpositionStore
from exporter.settings import OPTIONS
from tests.support.tools import ROOT

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", sorted({n for o in OPTIONS for n in (o.flag, o.env) if n}))
def test_every_flag_and_variable_is_in_the_configuration_table(name):
    assert f"`{name}`" in README


def exported_families() -> set[str]:
    store = ExpositionStore(discovering=True, refresh_interval=300, per_client=True,
                            process_metrics=False)  # fmt: skip
    store.set_discovery_up(True)
    names = {line.split()[2] for line in store.render().decode().splitlines()
             if line.startswith("# TYPE")}  # fmt: skip
    return names | {family.name for family in ACCOUNT_FAMILIES}


@pytest.mark.parametrize("name", sorted(exported_families()))
def test_every_metric_is_in_the_metric_tables(name):
    assert f"`{name}`" in README


def test_the_quick_start_is_the_demo():
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "cloudflare-oauth-exporter --demo" in quick_start
