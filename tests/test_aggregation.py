from __future__ import annotations

import pytest

from exporter.aggregation import ClientCounter, ClientCounts, count_clients
from exporter.findings import client_findings
from exporter.model import OAuthClient


def client(n: int = 0, **fields) -> OAuthClient:
    return OAuthClient(client_id=f"c{n}", **{"visibility": "private", **fields})


ZERO = ClientCounts(
    total=0,
    by_visibility=(("public", 0), ("private", 0)),
    by_auth_method=(
        ("none", 0), ("client_secret_basic", 0), ("client_secret_post", 0), ("unspecified", 0)
    ),
    by_verification_status=(
        ("pending", 0), ("in_progress", 0), ("verified", 0), ("failed", 0), ("none", 0)
    ),
    rotated_secret_pending=0,
    by_grant_type=(("authorization_code", 0), ("refresh_token", 0)),
    by_response_type=(("code", 0), ("token", 0), ("id_token", 0)),
    by_finding=(
        ("http_redirect_uri", 0), ("wildcard_redirect_uri", 0), ("wildcard_cors_origin", 0),
        ("implicit_grant", 0), ("public_unverified", 0), ("invalid_uri", 0),
    ),
)  # fmt: skip


def test_no_clients_still_exports_every_documented_value_as_zero():
    assert count_clients([]) == ZERO


@pytest.mark.parametrize(
    ("clients", "field", "expected"),
    [
        (
            [client(1, visibility="public"), client(2), client(3)],
            "by_visibility",
            (("public", 1), ("private", 2)),
        ),
        (
            [client(1, visibility="internal"), client(2, visibility="beta")],
            "by_visibility",
            (("public", 0), ("private", 0), ("beta", 1), ("internal", 1)),
        ),
        (
            [
                client(1, token_endpoint_auth_method="none"),
                client(2, token_endpoint_auth_method="client_secret_post"),
                client(3, token_endpoint_auth_method="client_secret_post"),
                client(4),
                client(5, token_endpoint_auth_method="private_key_jwt"),
            ],
            "by_auth_method",
            (
                ("none", 1), ("client_secret_basic", 0), ("client_secret_post", 2),
                ("unspecified", 1), ("private_key_jwt", 1),
            ),
        ),
        (
            [
                client(1, verification_status="verified"),
                client(2, verification_status="failed"),
                client(3, verification_status="failed"),
                client(4),
                client(5, verification_status="expired"),
            ],
            "by_verification_status",
            (
                ("pending", 0), ("in_progress", 0), ("verified", 1), ("failed", 2), ("none", 1),
                ("expired", 1),
            ),
        ),
        (
            [
                client(1, grant_types=frozenset({"authorization_code", "refresh_token"})),
                client(2, grant_types=frozenset({"authorization_code"})),
                client(3),
                client(4, grant_types=frozenset({"client_credentials"})),
            ],
            "by_grant_type",
            (("authorization_code", 2), ("refresh_token", 1), ("client_credentials", 1)),
        ),
        (
            [
                client(1, response_types=frozenset({"code", "id_token"})),
                client(2, response_types=frozenset({"token"})),
            ],
            "by_response_type",
            (("code", 1), ("token", 1), ("id_token", 1)),
        ),
        ([client(1, has_rotated_secret=True), client(2), client(3, has_rotated_secret=True)],
         "rotated_secret_pending", 2),
        ([client(n) for n in range(7)], "total", 7),
    ],
)  # fmt: skip
def test_each_dimension_counts_exactly(clients, field, expected):
    assert getattr(count_clients(clients), field) == expected


def test_a_client_counts_once_in_each_single_valued_dimension():
    counts = count_clients([client(n, visibility=("public", "private")[n % 2]) for n in range(10)])
    for breakdown in (
        counts.by_visibility,
        counts.by_auth_method,
        counts.by_verification_status,
    ):
        assert sum(count for _, count in breakdown) == counts.total == 10


def test_counting_page_by_page_equals_counting_all_at_once():
    clients = [
        client(n, visibility=("public", "private")[n % 2], has_rotated_secret=n % 3 == 0)
        for n in range(25)
    ]
    counter = ClientCounter()
    for start in range(0, 25, 10):
        for item in clients[start : start + 10]:
            counter.add(item, client_findings(item))
    assert counter.result() == count_clients(clients)


def test_findings_are_counted_per_client_once():
    clients = [
        client(1, visibility="public", response_types=frozenset({"token"}),
               redirect_uris=("http://a.example/cb", "http://b.example/cb")),
        client(2, visibility="public", verification_status="verified"),
        client(3, allowed_cors_origins=("*",)),
    ]  # fmt: skip
    assert dict(count_clients(clients).by_finding) == {
        "http_redirect_uri": 1,  # two http URIs, one client
        "wildcard_redirect_uri": 0,
        "wildcard_cors_origin": 1,
        "implicit_grant": 1,
        "public_unverified": 1,
        "invalid_uri": 0,
    }
