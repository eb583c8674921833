"""The chart loaded once, and a render fixture that caches releases for the whole session.

Every render goes through the Helm v4 SDK (no cluster, no helm binary), so the values schema,
`fail` messages and template functions behave exactly as on `helm install`/`helm template`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import helm_python
import pytest

from tests.support.helm import Release
from tests.support.tools import CHART


@pytest.fixture(scope="session")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


Render = Callable[..., Release]


@pytest.fixture(scope="session")
def render(chart: helm_python.Chart) -> Render:
    """Render values (cached: many tests look at the same release)."""
    cache: dict[str, Release] = {}

    def render_values(
        values: dict[str, Any], *, name: str = "demo", namespace: str = "monitoring-apps"
    ) -> Release:
        key = json.dumps([values, name, namespace], sort_keys=True)
        if key not in cache:
            cache[key] = Release(chart.render(values, name=name, namespace=namespace))
        return cache[key]

    return render_values
