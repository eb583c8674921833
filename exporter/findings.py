"""Security-posture findings: pure rules from one OAuth client to the risks it shows.

Each rule follows OAuth 2.0 (RFC 6749), its Security Best Current Practice (RFC 9700) or OAuth
for native apps (RFC 8252); the README defines them with their reasons and references. A URI that
cannot be parsed is the finding `invalid_uri` and counts for no other URI rule: never a crash.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from exporter.model import OAuthClient

HTTP_REDIRECT_URI = "http_redirect_uri"
WILDCARD_REDIRECT_URI = "wildcard_redirect_uri"
WILDCARD_CORS_ORIGIN = "wildcard_cors_origin"
IMPLICIT_GRANT = "implicit_grant"
PUBLIC_UNVERIFIED = "public_unverified"
INVALID_URI = "invalid_uri"
FINDINGS = (
    HTTP_REDIRECT_URI,
    WILDCARD_REDIRECT_URI,
    WILDCARD_CORS_ORIGIN,
    IMPLICIT_GRANT,
    PUBLIC_UNVERIFIED,
    INVALID_URI,
)
# The findings that make a client risky (warnings in the bundled alerts, red on the status
# page); public_unverified is only unproven, and has a milder alert of its own.
RISKY_FINDINGS = tuple(finding for finding in FINDINGS if finding != PUBLIC_UNVERIFIED)

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
# The shape nearly every real URI has: checked by one regex match instead of a full parse.
_PLAIN_HTTPS = re.compile(r"https://[A-Za-z0-9.-]+(?::[0-9]{1,4})?(?:[/?#][!-~]*)?")
_NO_FINDING = frozenset[str]()


class _Unparsable(ValueError):
    pass


def client_findings(client: OAuthClient) -> frozenset[str]:
    """The findings `client` holds; empty for a clean client."""
    found: set[str] = set()
    for uri in client.redirect_uris:
        _check_redirect(uri, found, wildcard_matters=True)
    for uri in client.post_logout_redirect_uris:
        _check_redirect(uri, found, wildcard_matters=False)
    for origin in client.allowed_cors_origins:
        if origin in ("*", "null"):
            found.add(WILDCARD_CORS_ORIGIN)
        elif _PLAIN_HTTPS.fullmatch(origin) is None:
            try:
                _parse(origin)
            except _Unparsable:
                found.add(INVALID_URI)
    if "token" in client.response_types:
        found.add(IMPLICIT_GRANT)
    if client.visibility == "public" and client.verification_status != "verified":
        found.add(PUBLIC_UNVERIFIED)
    return frozenset(found) if found else _NO_FINDING


def _check_redirect(uri: str, found: set[str], *, wildcard_matters: bool) -> None:
    if _PLAIN_HTTPS.fullmatch(uri) is not None and "*" not in uri:
        return
    try:
        scheme, host = _parse(uri)
    except _Unparsable:
        found.add(INVALID_URI)
        return
    if wildcard_matters and "*" in uri:
        found.add(WILDCARD_REDIRECT_URI)
    if scheme == "http" and not _is_loopback(host):
        found.add(HTTP_REDIRECT_URI)


def _parse(uri: str) -> tuple[str, str]:
    """(lowercase scheme, lowercase host) of an absolute URI; raises _Unparsable.

    A URI without an authority (`com.example.app:/callback`, RFC 8252's private-use schemes) is
    valid and has host "". An authority must hold a host and, if any, a port in 0-65535.
    """
    if not uri or not _SCHEME.match(uri) or not uri.isprintable() or " " in uri:
        raise _Unparsable(uri)
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise _Unparsable(uri) from None
    scheme = parts.scheme.lower()
    if "//" not in uri[len(scheme) + 1 : len(scheme) + 3]:
        if scheme in ("http", "https"):
            raise _Unparsable(uri)  # http(s) needs an authority
        return scheme, ""
    host = (parts.hostname or "").lower()
    if not host or (port is not None and not 0 <= port <= 65535):
        raise _Unparsable(uri)
    return scheme, host


def _is_loopback(host: str) -> bool:
    """`localhost`, an IPv4 address in 127.0.0.0/8, or ::1 — not a name like 127.example.com."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.version == 4:
        return address in ipaddress.IPv4Network("127.0.0.0/8")
    return address == ipaddress.IPv6Address("::1")
