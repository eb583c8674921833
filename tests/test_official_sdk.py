"""Cloudflare's official Python SDK as an independent client: what it reads, we export.

The SDK is generated from Cloudflare's OpenAPI spec; it lists OAuth clients as one page with no
query parameters (`client.iam.oauth_clients.list`) and validates every object against the spec
when `_strict_response_validation` is on. Pointed at the simulator's spec-literal mode, it checks
both that the simulator answers what the spec describes and that the exporter's numbers are the
ones any correct client would count.
"""

from __future__ import annotations

import os
import random
from collections import Counter

import httpx
import pytest
from cloudflare import Cloudflare
from cloudflare.types.iam import OAuthClientListResponse

from exporter.aggregation import NO_VERIFICATION, UNSPECIFIED_AUTH_METHOD
from exporter.findings import FINDINGS, client_findings
from exporter.model import OAuthClient
from exporter.simulator import Simulator, demo_accounts, make_account
from tests.support.exposition import Samples
from tests.support.refresh import Refresher
from tests.support.simulator import TOKEN


@pytest.fixture
def sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK reads these when set, and sends an email or key instead of the token we give it.
    for name in list(os.environ):
        if name.startswith("CLOUDFLARE_"):
            monkeypatch.delenv(name)


def sdk(url: str, *, strict: bool) -> Cloudflare:
    return Cloudflare(
        api_token=TOKEN, base_url=url, max_retries=0, timeout=30.0,
        http_client=httpx.Client(trust_env=False), _strict_response_validation=strict,
    )  # fmt: skip


def exporter_metrics(url: str) -> Samples:
    """One refresh of every discovered account, as the service does it; the /metrics bytes."""

    with Refresher(url) as refresher:
        assert refresher.refresh()
        return refresher.samples()


def expected_families(client: OAuthClientListResponse) -> list[tuple[str, str, str]]:
    """(family, label, value) a client counts in, read from the SDK's own model."""
    rows = [
        ("cloudflare_oauth_clients_by_visibility", "visibility", client.visibility),
        ("cloudflare_oauth_clients_by_auth_method", "auth_method",
         client.token_endpoint_auth_method or UNSPECIFIED_AUTH_METHOD),
        ("cloudflare_oauth_clients_by_verification_status", "status",
         (client.client_uri_verification.status if client.client_uri_verification else None)
         or NO_VERIFICATION),
    ]  # fmt: skip
    rows += [("cloudflare_oauth_clients_by_grant_type", "grant_type", g)
             for g in set(client.grant_types or ())]  # fmt: skip
    rows += [("cloudflare_oauth_clients_by_response_type", "response_type", r)
             for r in set(client.response_types or ())]  # fmt: skip
    # The findings rules are the exporter's own; what is independent is the reading of the
    # fields they look at, which here comes from the SDK's model, not the exporter's parser.
    ours = OAuthClient(
        client_id=client.client_id, visibility=client.visibility,
        verification_status=(
            client.client_uri_verification.status if client.client_uri_verification else None
        ),
        response_types=frozenset(client.response_types or ()),
        redirect_uris=tuple(client.redirect_uris or ()),
        post_logout_redirect_uris=tuple(client.post_logout_redirect_uris or ()),
        allowed_cors_origins=tuple(client.allowed_cors_origins or ()),
    )  # fmt: skip
    rows += [("cloudflare_oauth_clients_with_finding", "finding", f)
             for f in client_findings(ours)]  # fmt: skip
    return rows


def test_the_sdk_reads_every_account_and_client_of_the_spec_literal_simulator(
    serve_simulator, sdk_environment
):
    rng = random.Random(8)
    strict = [make_account(rng, f"Spec {i}", n, paging="spec") for i, n in enumerate((0, 7, 260))]
    demo = demo_accounts()  # undocumented values on purpose: read without strict validation
    lenient = [demo[0], demo[4]]
    for account in lenient:
        account.paging = "spec"
    url = serve_simulator(Simulator([*strict, *lenient]))

    with sdk(url, strict=True) as strict_client, sdk(url, strict=False) as lenient_client:
        listed = {account.id: account for account in strict_client.accounts.list()}
        read = {
            account.id: list(strict_client.iam.oauth_clients.list(account_id=account.id))
            for account in strict
        } | {
            account.id: list(lenient_client.iam.oauth_clients.list(account_id=account.id))
            for account in lenient
        }

    assert set(listed) == {account.id for account in (*strict, *lenient)}
    assert {account_id: listed[account_id].name for account_id in listed} == {
        account.id: account.name for account in (*strict, *lenient)
    }
    metrics = exporter_metrics(url)
    findings_compared: set[str] = set()
    for account_id, clients in read.items():
        assert metrics["cloudflare_oauth_clients"][(("account_id", account_id),)] == len(clients)
        rotated = sum(bool(c.has_rotated_secret) for c in clients)
        assert (
            metrics["cloudflare_oauth_clients_rotated_secret_pending"][
                (("account_id", account_id),)
            ]
            == rotated
        )
        expected: Counter[tuple[str, str, str]] = Counter(
            row for client in clients for row in expected_families(client)
        )
        for family in (
            "cloudflare_oauth_clients_by_visibility",
            "cloudflare_oauth_clients_by_auth_method",
            "cloudflare_oauth_clients_by_verification_status",
            "cloudflare_oauth_clients_by_grant_type",
            "cloudflare_oauth_clients_by_response_type",
            "cloudflare_oauth_clients_with_finding",
        ):
            exported = {
                (family, *next((k, v) for k, v in labels if k != "account_id")): value
                for labels, value in metrics[family].items()
                if ("account_id", account_id) in labels
            }
            for (name, label, value), count in expected.items():
                if name == family:
                    assert exported.pop((family, label, value)) == count, (family, value)
                    if label == "finding":
                        findings_compared.add(value)
            assert all(value == 0 for value in exported.values()), (family, exported)
    assert findings_compared == set(FINDINGS)  # the demo's accounts hold every one
