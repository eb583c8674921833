"""Snapshots with known contents, for tests that render them."""

from __future__ import annotations

from exporter.aggregation import count_clients
from exporter.model import OAuthClient
from exporter.selection import ClientRecord
from exporter.snapshot import AccountSnapshot

A = "a" * 32
B = "b" * 32

COUNTS = count_clients(
    [
        OAuthClient(
            client_id="c1",
            visibility="public",
            token_endpoint_auth_method="none",
            verification_status="verified",
            grant_types=frozenset({"authorization_code", "refresh_token"}),
            response_types=frozenset({"code"}),
        ),
        OAuthClient(
            client_id="c2",
            visibility="private",
            token_endpoint_auth_method="client_secret_post",
            verification_status="failed",
            has_rotated_secret=True,
            grant_types=frozenset({"authorization_code"}),
            response_types=frozenset({"code", "token"}),
            redirect_uris=("https://app.example.com/cb",),
        ),
    ]
)
GOOD = AccountSnapshot(
    account_id=A,
    account_name="Acme",
    up=True,
    counts=COUNTS,
    last_success=1767225600.5,
    refresh_duration=0.25,
)
RISKY = ClientRecord(
    client_id="c9", client_name='App "9"', visibility="public", auth_method="none",
    verification_status="pending", rotated_secret_pending=True,
    created_at="2025-01-01T00:00:00Z", updated_at="not a time", promoted_at=None,
    findings=frozenset({"public_unverified", "implicit_grant"}),
)  # fmt: skip
CLEAN = RISKY._replace(client_id="c1", client_name="", rotated_secret_pending=False,
                       created_at=None, findings=frozenset())  # fmt: skip
PER_CLIENT = AccountSnapshot(A, "Acme", True, COUNTS, 1.0, 0.1, clients=(RISKY, CLEAN),
                             dropped_client_series=7)  # fmt: skip
