"""Security-posture rules, table-driven, with the edge cases that fool naive URL checks."""

from __future__ import annotations

import pytest

from exporter.findings import FINDINGS, client_findings
from exporter.model import OAuthClient


def findings(**fields) -> set[str]:
    client = OAuthClient(client_id="c", **{"visibility": "private", **fields})
    return set(client_findings(client))


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("https://app.example.com/callback", set()),
        ("https://app.example.com:8443/cb?x=1#f", set()),
        ("http://app.example.com/callback", {"http_redirect_uri"}),
        ("HTTP://app.example.com/callback", {"http_redirect_uri"}),
        ("HtTp://App.Example.COM/cb", {"http_redirect_uri"}),
        ("http://localhost/callback", set()),
        ("http://LOCALHOST:8080/callback", set()),
        ("http://127.0.0.1:53123/cb", set()),
        ("http://127.255.0.9/cb", set()),
        ("http://[::1]:8080/cb", set()),
        ("http://[::2]/cb", {"http_redirect_uri"}),
        ("http://[::ffff:127.0.0.1]/cb", {"http_redirect_uri"}),  # not in the loopback list
        ("http://127.example.com/cb", {"http_redirect_uri"}),  # a name, not an address
        ("http://127.0.0.1.nip.io/cb", {"http_redirect_uri"}),
        ("http://128.0.0.1/cb", {"http_redirect_uri"}),
        ("http://localhost.evil.com/cb", {"http_redirect_uri"}),
        ("http://user:pass@localhost/cb", set()),  # userinfo, loopback host
        ("http://localhost@evil.com/cb", {"http_redirect_uri"}),  # userinfo "localhost"
        ("http://localhost:65535/cb", set()),
        ("http://localhost:65536/cb", {"invalid_uri"}),
        ("http://localhost:port/cb", {"invalid_uri"}),
        ("http://[::1/cb", {"invalid_uri"}),
        ("http:///cb", {"invalid_uri"}),
        ("http:/cb", {"invalid_uri"}),
        ("https://exa mple.com/cb", {"invalid_uri"}),
        ("https://example.com/c\nb", {"invalid_uri"}),
        ("https://exa\x7fmple.com/cb", {"invalid_uri"}),  # DEL is a control character
        ("https://example.com/\u00a0cb", {"invalid_uri"}),  # so is a no-break space here
        ("", {"invalid_uri"}),
        ("not a uri", {"invalid_uri"}),
        ("/relative/callback", {"invalid_uri"}),
        ("http://*.example.com/cb", {"wildcard_redirect_uri", "http_redirect_uri"}),
        ("https://*.example.com/cb", {"wildcard_redirect_uri"}),
        ("https://app.example.com/*", {"wildcard_redirect_uri"}),
        ("http://bücher.example/cb", {"http_redirect_uri"}),  # IDN host
        ("https://bücher.example/cb", set()),
        ("http://xn--bcher-kva.example/cb", {"http_redirect_uri"}),
        ("com.example.app:/oauth2redirect", set()),  # RFC 8252 private-use scheme
        ("com.example.app://callback", set()),
    ],
)  # fmt: skip
def test_redirect_uri_rules(uri, expected):
    assert findings(redirect_uris=(uri,)) == expected


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://app.example.com/logout", {"http_redirect_uri"}),
        ("http://localhost/logout", set()),
        ("https://app.example.com/*", set()),  # the wildcard rule is about redirect URIs
        ("::nonsense", {"invalid_uri"}),
    ],
)
def test_post_logout_redirect_uris_count_for_http_and_invalid(uri, expected):
    assert findings(post_logout_redirect_uris=(uri,)) == expected


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("*", {"wildcard_cors_origin"}),
        ("null", {"wildcard_cors_origin"}),
        ("https://app.example.com", set()),
        ("http://app.example.com", set()),  # only * and null are wildcards
        ("NULL", {"invalid_uri"}),  # not the literal null, and not an origin either
        ("https://*.example.com", set()),
        ("https://exa mple.com", {"invalid_uri"}),
    ],
)
def test_cors_origin_rules(origin, expected):
    assert findings(allowed_cors_origins=(origin,)) == expected


@pytest.mark.parametrize(
    ("response_types", "expected"),
    [
        (frozenset({"code"}), set()),
        (frozenset({"code", "id_token"}), set()),
        (frozenset({"token"}), {"implicit_grant"}),
        (frozenset({"code", "token"}), {"implicit_grant"}),
    ],
)
def test_implicit_grant(response_types, expected):
    assert findings(response_types=response_types) == expected


@pytest.mark.parametrize(
    ("visibility", "status", "expected"),
    [
        ("public", "verified", set()),
        ("public", "pending", {"public_unverified"}),
        ("public", "failed", {"public_unverified"}),
        ("public", None, {"public_unverified"}),
        ("private", None, set()),
        ("private", "failed", set()),
    ],
)
def test_public_unverified(visibility, status, expected):
    assert findings(visibility=visibility, verification_status=status) == expected


def test_a_client_can_hold_every_finding_at_once():
    assert findings(
        visibility="public",
        redirect_uris=("http://a.example/*", "::bad"),
        allowed_cors_origins=("*",),
        response_types=frozenset({"token"}),
    ) == set(FINDINGS)


def test_a_clean_client_has_none():
    assert findings(redirect_uris=("https://a.example/cb",), allowed_cors_origins=(
        "https://a.example",)) == set()  # fmt: skip
