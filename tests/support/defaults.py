"""The exporter's own defaults, read from its option table, for tests that build parts by hand."""

from __future__ import annotations

from typing import Any

from exporter.settings import Settings, load_settings
from tests.support.simulator import TOKEN

DEFAULTS: Settings = load_settings([], {"CLOUDFLARE_API_TOKEN": TOKEN})


def api_options(**overrides: Any) -> dict[str, Any]:
    """CloudflareAPI's keyword arguments as the service passes them with default settings."""
    return {
        "timeout": DEFAULTS.timeout,
        "concurrency": DEFAULTS.concurrency,
        "page_size": DEFAULTS.page_size,
        "max_response_size": DEFAULTS.max_response_size,
        "max_clients": DEFAULTS.max_clients_per_account,
        **overrides,
    }
