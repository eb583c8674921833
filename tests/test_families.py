"""The metric family table, checked against literal exposition text."""

from __future__ import annotations

import pytest

from exporter.exposition import render_account
from exporter.families import ACCOUNT_FAMILIES
from exporter.refresh_status import ApiFailure
from exporter.snapshot import AccountSnapshot
from tests.support.snapshots import COUNTS, GOOD, PER_CLIENT, A


def family_text(snapshot: AccountSnapshot, name: str) -> str:
    index = [family.name for family in ACCOUNT_FAMILIES].index(name)
    return render_account(snapshot)[index].decode()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cloudflare_oauth_clients", f'cloudflare_oauth_clients{{account_id="{A}"}} 2\n'),
        (
            "cloudflare_oauth_clients_by_visibility",
            f'cloudflare_oauth_clients_by_visibility{{account_id="{A}",visibility="public"}} 1\n'
            f'cloudflare_oauth_clients_by_visibility{{account_id="{A}",visibility="private"}} 1\n',
        ),
        (
            "cloudflare_oauth_clients_by_auth_method",
            f'cloudflare_oauth_clients_by_auth_method{{account_id="{A}",auth_method="none"}} 1\n'
            f'cloudflare_oauth_clients_by_auth_method{{account_id="{A}",auth_method="client_secret_basic"}} 0\n'
            f'cloudflare_oauth_clients_by_auth_method{{account_id="{A}",auth_method="client_secret_post"}} 1\n'
            f'cloudflare_oauth_clients_by_auth_method{{account_id="{A}",auth_method="unspecified"}} 0\n',
        ),
        (
            "cloudflare_oauth_clients_by_verification_status",
            f'cloudflare_oauth_clients_by_verification_status{{account_id="{A}",status="pending"}} 0\n'
            f'cloudflare_oauth_clients_by_verification_status{{account_id="{A}",status="in_progress"}} 0\n'
            f'cloudflare_oauth_clients_by_verification_status{{account_id="{A}",status="verified"}} 1\n'
            f'cloudflare_oauth_clients_by_verification_status{{account_id="{A}",status="failed"}} 1\n'
            f'cloudflare_oauth_clients_by_verification_status{{account_id="{A}",status="none"}} 0\n',
        ),
        (
            "cloudflare_oauth_clients_rotated_secret_pending",
            f'cloudflare_oauth_clients_rotated_secret_pending{{account_id="{A}"}} 1\n',
        ),
        (
            "cloudflare_oauth_clients_by_grant_type",
            f'cloudflare_oauth_clients_by_grant_type{{account_id="{A}",grant_type="authorization_code"}} 2\n'
            f'cloudflare_oauth_clients_by_grant_type{{account_id="{A}",grant_type="refresh_token"}} 1\n',
        ),
        (
            "cloudflare_oauth_clients_by_response_type",
            f'cloudflare_oauth_clients_by_response_type{{account_id="{A}",response_type="code"}} 2\n'
            f'cloudflare_oauth_clients_by_response_type{{account_id="{A}",response_type="token"}} 1\n'
            f'cloudflare_oauth_clients_by_response_type{{account_id="{A}",response_type="id_token"}} 0\n',
        ),
        ("cloudflare_oauth_account_up", f'cloudflare_oauth_account_up{{account_id="{A}"}} 1\n'),
        (
            "cloudflare_oauth_account_last_success_timestamp_seconds",
            f'cloudflare_oauth_account_last_success_timestamp_seconds{{account_id="{A}"}} 1767225600.5\n',
        ),
        (
            "cloudflare_oauth_account_refresh_duration_seconds",
            f'cloudflare_oauth_account_refresh_duration_seconds{{account_id="{A}"}} 0.25\n',
        ),
        (
            "cloudflare_oauth_account_info",
            f'cloudflare_oauth_account_info{{account_id="{A}",account_name="Acme"}} 1\n',
        ),
    ],
)
def test_each_family_renders_exactly(name, expected):
    assert family_text(GOOD, name) == expected


def test_an_account_never_read_has_up_and_duration_but_no_counts():
    never = AccountSnapshot(
        account_id=A, account_name=None, up=False, counts=None, last_success=None,
        refresh_duration=1.5, last_error=ApiFailure(403, 10000, "Authentication error"),
    )  # fmt: skip
    rendered = dict(zip([f.name for f in ACCOUNT_FAMILIES], render_account(never), strict=True))
    assert rendered.pop("cloudflare_oauth_account_up") == (
        f'cloudflare_oauth_account_up{{account_id="{A}"}} 0\n'.encode()
    )
    assert rendered.pop("cloudflare_oauth_account_refresh_duration_seconds") == (
        f'cloudflare_oauth_account_refresh_duration_seconds{{account_id="{A}"}} 1.5\n'.encode()
    )
    assert set(rendered.values()) == {b""}


def test_a_failed_account_keeps_its_last_good_counts():
    failed = GOOD.failed(ApiFailure(500, None, "boom"), 2.0, None)
    assert failed.account_name == "Acme"
    assert family_text(failed, "cloudflare_oauth_clients") == family_text(
        GOOD, "cloudflare_oauth_clients"
    )
    assert family_text(failed, "cloudflare_oauth_account_up").endswith(" 0\n")
    assert family_text(failed, "cloudflare_oauth_account_last_success_timestamp_seconds") == (
        family_text(GOOD, "cloudflare_oauth_account_last_success_timestamp_seconds")
    )


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ('say "hi"', 'say \\"hi\\"'),
        ("back\\slash", "back\\\\slash"),
        ("two\nlines", "two\\nlines"),
        ("emoji 🚀", "emoji 🚀"),
        ("x" * 400, "x" * 400),
    ],
)
def test_label_values_are_escaped(name, escaped):
    snapshot = AccountSnapshot(A, name, True, COUNTS, 1.0, 0.1)
    assert family_text(snapshot, "cloudflare_oauth_account_info") == (
        f'cloudflare_oauth_account_info{{account_id="{A}",account_name="{escaped}"}} 1\n'
    )


def test_lone_surrogates_cannot_break_utf8():
    snapshot = AccountSnapshot(A, "bad \ud800 half", True, COUNTS, 1.0, 0.1)
    line = family_text(snapshot, "cloudflare_oauth_account_info").encode()
    assert line.decode("utf-8") == (
        f'cloudflare_oauth_account_info{{account_id="{A}",account_name="bad ? half"}} 1\n'
    )


def test_findings_family_lists_every_finding():
    assert family_text(GOOD, "cloudflare_oauth_clients_with_finding") == (
        f'cloudflare_oauth_clients_with_finding{{account_id="{A}",finding="http_redirect_uri"}} 0\n'
        f'cloudflare_oauth_clients_with_finding{{account_id="{A}",finding="wildcard_redirect_uri"}} 0\n'
        f'cloudflare_oauth_clients_with_finding{{account_id="{A}",finding="wildcard_cors_origin"}} 0\n'
        f'cloudflare_oauth_clients_with_finding{{account_id="{A}",finding="implicit_grant"}} 1\n'
        f'cloudflare_oauth_clients_with_finding{{account_id="{A}",finding="public_unverified"}} 0\n'
        f'cloudflare_oauth_clients_with_finding{{account_id="{A}",finding="invalid_uri"}} 0\n'
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "cloudflare_oauth_client_info",
            f'cloudflare_oauth_client_info{{account_id="{A}",client_id="c9",client_name="App \\"9\\"",visibility="public",auth_method="none",verification_status="pending"}} 1\n'
            f'cloudflare_oauth_client_info{{account_id="{A}",client_id="c1",client_name="",visibility="public",auth_method="none",verification_status="pending"}} 1\n',
        ),
        (
            "cloudflare_oauth_client_created_timestamp_seconds",
            f'cloudflare_oauth_client_created_timestamp_seconds{{account_id="{A}",client_id="c9"}} 1735689600.0\n',
        ),
        ("cloudflare_oauth_client_updated_timestamp_seconds", ""),  # unreadable: left out
        ("cloudflare_oauth_client_promoted_timestamp_seconds", ""),
        (
            "cloudflare_oauth_client_rotated_secret_pending",
            f'cloudflare_oauth_client_rotated_secret_pending{{account_id="{A}",client_id="c9"}} 1\n'
            f'cloudflare_oauth_client_rotated_secret_pending{{account_id="{A}",client_id="c1"}} 0\n',
        ),
        (
            "cloudflare_oauth_client_finding",
            f'cloudflare_oauth_client_finding{{account_id="{A}",client_id="c9",finding="implicit_grant"}} 1\n'
            f'cloudflare_oauth_client_finding{{account_id="{A}",client_id="c9",finding="public_unverified"}} 1\n',
        ),
        (
            "cloudflare_oauth_per_client_series_dropped",
            f'cloudflare_oauth_per_client_series_dropped{{account_id="{A}"}} 7\n',
        ),
    ],
)
def test_per_client_families_render_exactly(name, expected):
    assert family_text(PER_CLIENT, name) == expected
