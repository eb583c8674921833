"""Simulated accounts and their OAuth clients: made-up but shaped like the API's, every value
represented, for the demo, the tests and the benchmark."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from exporter.simulator.faults import Fault

# How GET /accounts/{id}/oauth_clients answers paging, one mode per behaviour seen in the v4 API:
Paging = Literal[
    "pages",  # honest paging by page and per_page, result_info with total_count
    "spec",  # the official spec: no query parameters, one answer with every client (and an
    #          honest result_info, which the spec allows and the official SDK ignores)
    "ignore",  # every page is the whole list; result_info says per_page 20 and the total,
    #            or `reported_total` (the reference's own example: 2000 for one client)
    "single",  # the whole list, no result_info
    "fixed",  # pages of `fixed_page_size` whatever per_page says; result_info says so
    "fixed_echo",  # pages of `fixed_page_size`; result_info echoes the per_page asked for
    "fixed_bare",  # pages of `fixed_page_size`; no result_info at all
    "cursor",  # pages by result_info.cursor: the next request sends cursor=...
    "strict",  # 400 (6008) to any query parameter; without them, the whole list, and a
    #            result_info with the total, or `reported_total` (the reference's 2000)
    "max_per_page",  # 400 (8000024) to a per_page above `max_per_page`; pages of 20 otherwise
    "endless",  # every page invents new clients, and total_count says there are ever more
]


@dataclass
class SimAccount:
    id: str
    name: str
    type: str = "standard"
    clients: list[dict[str, Any]] = field(default_factory=list)
    paging: Paging = "pages"
    reported_total: int | None = None  # a total_count to report instead of the true one
    fixed_page_size: int = 20  # the "fixed*" modes' page size
    max_per_page: int = 20  # the "max_per_page" mode's limit
    fault: Fault | None = None  # every request fails this way until cleared
    faults: deque[Fault] = field(default_factory=deque)  # the next requests fail, one each


def account_id(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(32))


def make_client(rng: random.Random, index: int, **overrides: Any) -> dict[str, Any]:
    """A client object as the API lists it, varied so every documented value appears."""
    client_id = f"{rng.getrandbits(128):032x}"
    visibility = ("public", "private")[index % 2]
    client: dict[str, Any] = {"client_id": client_id, "visibility": visibility}
    if index % 4 != 3:
        client["token_endpoint_auth_method"] = (
            "none",
            "client_secret_basic",
            "client_secret_post",
        )[index % 3]
    if index % 5 != 4:
        status = ("pending", "in_progress", "verified", "failed")[index % 4]
        client["client_uri_verification"] = {
            "status": status,
            "text": f"cloudflare_oauth_client_publisher={client_id[:12]}",
        }
    if index % 6 != 5:
        client["has_rotated_secret"] = index % 7 == 0
    client["grant_types"] = (
        ["authorization_code", "refresh_token"] if index % 2 else ["authorization_code"]
    )
    client["response_types"] = [["code"], ["code", "id_token"], ["token"]][index % 3]
    host = f"app{index}.example.com"
    client.update(
        client_name=f"App {index}",
        client_uri=f"https://{host}",
        redirect_uris=[f"https://{host}/callback"],
        post_logout_redirect_uris=[f"https://{host}/logout"],
        allowed_cors_origins=[f"https://{host}"],
        scopes=["account.read"],
        logo_uri=f"https://{host}/logo.png",
        policy_uri=f"https://{host}/privacy",
        tos_uri=f"https://{host}/tos",
        created_at="2025-01-01T00:00:00Z",
        updated_at="2025-06-01T12:00:00Z",
    )
    if visibility == "public":
        client["promoted_at"] = "2026-05-13T12:00:00Z"
    client.update(overrides)
    return client


def make_account(rng: random.Random, name: str, clients: int, **options: Any) -> SimAccount:
    return SimAccount(
        id=account_id(rng),
        name=name,
        clients=[make_client(rng, i) for i in range(clients)],
        **options,
    )


def demo_accounts(seed: int = 2026) -> list[SimAccount]:
    """A few accounts, a few hundred clients, every value represented, and some faults."""
    rng = random.Random(seed)
    production = make_account(rng, "Acme Production", 160, type="enterprise")
    # Values the reference does not document: the exporter must keep them, not drop them.
    production.clients[0].update(
        token_endpoint_auth_method="private_key_jwt",  # noqa: S106 - an enum value
        grant_types=["authorization_code", "client_credentials"],
        client_uri_verification={"status": "expired"},
    )
    # Risky configurations, one per security finding, and one that only looks risky.
    risky = {
        1: {"redirect_uris": ["http://app1.example.com/callback"]},
        2: {"redirect_uris": ["https://*.app2.example.com/callback"]},
        3: {"allowed_cors_origins": ["*"]},
        4: {"post_logout_redirect_uris": ["http://[::1", "https://app4.example.com/logout"]},
        5: {"redirect_uris": ["http://127.0.0.1:53682/callback"]},  # loopback: fine (RFC 8252)
    }
    for index, fields in risky.items():
        production.clients[index].update(fields)
    staging = make_account(rng, "Acme Staging", 90)
    staging.faults.extend([Fault.html(503)])  # one bad gateway, then it recovers on retry
    # Names are user-written: the status page must show this as text, never run it.
    lab = make_account(rng, "<script>document.title='pwned'</script> Labs", 4)
    lab.clients[0].update(
        client_name='<img src=x onerror="document.body.dataset.pwned=1">',
        allowed_cors_origins=["null"],
    )
    legacy = make_account(
        rng, 'Globex "legacy" \\ eu 🚀', 3, paging="ignore", reported_total=2000
    )  # the reference's own example: total_count 2000 for a page that ignores paging
    denied = make_account(rng, "Initech (no OAuth permission)", 12)
    denied.fault = Fault.api_error(403, 10000, "Authentication error")
    return [production, staging, legacy, denied, lab]


def scale_accounts(
    accounts: int, clients: int, seed: int = 1, paging: Paging = "pages"
) -> list[SimAccount]:
    rng = random.Random(seed)
    return [make_account(rng, f"Account {i}", clients, paging=paging) for i in range(accounts)]
