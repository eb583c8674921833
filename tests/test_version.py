"""One version: the package's, the image label's default and the chart's appVersion agree."""

from __future__ import annotations

import re

import yaml

from exporter import __version__
from tests.support.tools import CHART, ROOT


def test_dockerfile_labels_the_image_with_the_package_version():
    dockerfile = (ROOT / "Dockerfile").read_text()
    (default,) = re.findall(r"^ARG VERSION=(\S+)$", dockerfile, flags=re.MULTILINE)
    assert default == __version__, "bump ARG VERSION in the Dockerfile with exporter.__version__"
    assert 'org.opencontainers.image.version="${VERSION}"' in dockerfile


def test_chart_app_version_is_the_package_version():
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert app_version == __version__, "bump appVersion in Chart.yaml with exporter.__version__"
