"""A Cloudflare v4 API simulator for the demo, the tests and the benchmark.

Faithful to the reference where the exporter depends on it: the envelope, `result_info`, error
shapes and codes, `per_page` clamped to 5..50 on GET /accounts, both auth schemes, and the
1200-requests-per-5-minutes limit with its `Ratelimit` / `Retry-After` headers (off by default).
Each account can page in several ways (`Paging`) and fail in every way the exporter must survive
(`Fault`).
"""

from __future__ import annotations

from exporter.simulator.app import (
    BASE_PATH,
    DEFAULT_TOKEN,
    Simulator,
    change_now_and_then,
    make_server,
    url_of,
)
from exporter.simulator.data import (
    Paging,
    SimAccount,
    account_id,
    demo_accounts,
    make_account,
    make_client,
    scale_accounts,
)
from exporter.simulator.faults import Fault

__all__ = [
    "BASE_PATH",
    "DEFAULT_TOKEN",
    "Fault",
    "Paging",
    "SimAccount",
    "Simulator",
    "account_id",
    "change_now_and_then",
    "demo_accounts",
    "make_account",
    "make_client",
    "make_server",
    "scale_accounts",
    "url_of",
]
