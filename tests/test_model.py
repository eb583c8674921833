from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.model import (
    ApiMessage,
    MalformedResponse,
    OAuthClient,
    ResultInfo,
    parse_account,
    parse_envelope,
    parse_oauth_client,
    unix_seconds,
)

SEED = Path(__file__).resolve().parent / "data" / "list-oauth-clients.example.json"


def test_the_reference_example_parses_into_typed_values():
    body = json.loads(SEED.read_text())
    envelope = parse_envelope(body)
    assert envelope.success is True
    assert envelope.errors == (ApiMessage(code=1000, message="message"),)
    assert envelope.result_info == ResultInfo(page=1, per_page=20, count=1, total_count=2000)
    client = parse_oauth_client(body["result"][0])
    assert client == OAuthClient(
        client_id="a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4",
        visibility="private",
        client_name="My OAuth App",
        token_endpoint_auth_method="client_secret_post",
        verification_status="in_progress",
        has_rotated_secret=False,
        grant_types=frozenset({"authorization_code", "refresh_token"}),
        response_types=frozenset({"code"}),
        redirect_uris=("https://example.com/callback",),
        post_logout_redirect_uris=("https://example.com/logout",),
        allowed_cors_origins=("https://example.com",),
        created_at="2025-01-01T00:00:00Z",
        updated_at="2025-01-01T00:00:00Z",
        promoted_at="2026-05-13T12:00:00Z",
        scopes=("account.read",),
        client_uri="https://example.com",
        verification_text="cloudflare_oauth_client_publisher=example",
    )
    assert unix_seconds(client.created_at) == 1735689600.0
    assert unix_seconds(client.promoted_at) == 1778673600.0


def test_only_client_id_and_visibility_are_required():
    assert parse_oauth_client({"client_id": "c1", "visibility": "public"}) == OAuthClient(
        client_id="c1", visibility="public"
    )


def test_unknown_fields_are_ignored_and_unknown_values_kept():
    client = parse_oauth_client(
        {
            "client_id": "c1",
            "visibility": "internal",
            "token_endpoint_auth_method": "private_key_jwt",
            "client_uri_verification": {"status": "expired"},
            "grant_types": ["client_credentials"],
            "brand_new_field": {"nested": [1, 2]},
        }
    )
    assert client.visibility == "internal"
    assert client.token_endpoint_auth_method == "private_key_jwt"
    assert client.verification_status == "expired"
    assert client.grant_types == frozenset({"client_credentials"})


@pytest.mark.parametrize(
    "fields",
    [
        {"client_uri_verification": None},
        {"client_uri_verification": {}},
        {"client_uri_verification": {"text": "txt"}},
        {"client_uri_verification": {"status": None}},
    ],
)
def test_no_verification_status_is_none(fields):
    client = parse_oauth_client({"client_id": "c", "visibility": "public", **fields})
    assert client.verification_status is None


def test_nulls_mean_absent():
    client = parse_oauth_client(
        {
            "client_id": "c",
            "visibility": "public",
            "token_endpoint_auth_method": None,
            "has_rotated_secret": None,
            "grant_types": None,
            "client_name": None,
        }
    )
    assert client == OAuthClient(client_id="c", visibility="public")


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("just a string", "not a JSON object"),
        ({"visibility": "public"}, "no 'client_id'"),
        ({"client_id": 7, "visibility": "public"}, "no 'client_id'"),
        ({"client_id": "c"}, "no 'visibility'"),
        ({"client_id": "c", "visibility": "public", "has_rotated_secret": "yes"}, "boolean"),
        ({"client_id": "c", "visibility": "public", "grant_types": "code"}, "list of strings"),
        ({"client_id": "c", "visibility": "public", "response_types": [1]}, "list of strings"),
        ({"client_id": "c", "visibility": "public", "client_name": 5}, "a string"),
        ({"client_id": "c", "visibility": "public", "client_uri_verification": "x"}, "object"),
    ],
)
def test_broken_contract_is_malformed(item, reason):
    with pytest.raises(MalformedResponse, match=reason):
        parse_oauth_client(item)


@pytest.mark.parametrize(
    ("fields", "scopes", "client_uri"),
    [
        ({"scopes": ["a", 7, None, "b"], "client_uri": 7}, ("a", "b"), None),
        ({"scopes": "a", "client_uri": ["https://x"]}, (), None),
        ({"scopes": {"a": 1}, "client_uri": {"u": 1}}, (), None),
    ],
)
def test_fields_read_only_for_change_detection_are_read_leniently(fields, scopes, client_uri):
    client = parse_oauth_client({"client_id": "c", "visibility": "public", **fields})
    assert (client.scopes, client.client_uri) == (scopes, client_uri)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-01-01T00:00:00Z", 1735689600.0),
        ("2025-01-01T01:00:00+01:00", 1735689600.0),
        ("2025-01-01T00:00:00.5Z", 1735689600.5),
        ("2025-01-01T00:00:00", None),  # no zone: ambiguous, not guessed
        ("yesterday", None),
        (1735689600, None),
    ],
)
def test_timestamps_are_unix_seconds_or_absent(value, expected):
    client = parse_oauth_client({"client_id": "c", "visibility": "public", "created_at": value})
    assert unix_seconds(client.created_at) == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "expected a JSON object"),
        ("html", "expected a JSON object"),
        ({"result": []}, "boolean 'success'"),
        ({"success": "true", "result": []}, "boolean 'success'"),
    ],
)
def test_envelope_without_success_is_malformed(body, reason):
    with pytest.raises(MalformedResponse, match=reason):
        parse_envelope(body)


def test_envelope_tolerates_odd_errors_and_result_info():
    envelope = parse_envelope(
        {
            "success": False,
            "errors": [{"code": 10000, "message": "Authentication error"}, "junk", {"code": "x"}],
            "result": None,
            "result_info": {"page": 1.0, "per_page": True, "total_count": "many"},
        }
    )
    assert envelope.errors == (
        ApiMessage(code=10000, message="Authentication error"),
        ApiMessage(code=None, message=""),
    )
    assert envelope.result_info == ResultInfo(page=1, per_page=None, count=None, total_count=None)
    assert parse_envelope({"success": True, "result_info": "none"}).result_info is None


def test_accounts_parse_with_or_without_a_name():
    assert parse_account({"id": "a" * 32, "name": "Acme", "type": "standard"}).name == "Acme"
    assert parse_account({"id": "a" * 32}).name is None
    with pytest.raises(MalformedResponse):
        parse_account({"name": "no id"})


def test_an_empty_client_id_is_an_id_like_any_other():
    assert parse_oauth_client({"client_id": "", "visibility": "public"}).client_id == ""


@pytest.mark.parametrize(
    ("value", "read"),
    [(5, 5), (5.0, 5), (5.5, None), (True, None), (-1, None), (float("inf"), None),
     (float("nan"), None), (10**30, None), ("5", None), (None, None)],
)  # fmt: skip
def test_result_info_numbers_are_whole_counts_or_absent(value, read):
    envelope = parse_envelope({"success": True, "result_info": {"total_count": value}})
    assert envelope.result_info is not None
    assert envelope.result_info.total_count == read


@pytest.mark.parametrize(
    ("info", "cursor"),
    [({"cursor": "abc"}, "abc"), ({"cursor": ""}, ""), ({"cursors": {"after": "z"}}, "z"),
     ({"cursor": 7}, None), ({}, None)],
)  # fmt: skip
def test_cursors_in_either_shape(info, cursor):
    envelope = parse_envelope({"success": True, "result_info": info})
    assert envelope.result_info is not None
    assert envelope.result_info.cursor == cursor


def test_a_huge_cursor_is_refused():
    with pytest.raises(MalformedResponse, match="cursor is longer"):
        parse_envelope({"success": True, "result_info": {"cursor": "c" * 5000}})
