"""The Cloudflare API's data as typed, frozen values, and the one place that parses its JSON.

Parsing is tolerant where the API is allowed to change (unknown fields are ignored, unknown enum
values are kept verbatim) and strict where it is not (a missing `client_id`, a field of the wrong
type): those raise MalformedResponse so the caller can fail that account instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

# Documented values, in the order the reference lists them. Anything else the API sends is kept.
VISIBILITIES = ("public", "private")
AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
VERIFICATION_STATUSES = ("pending", "in_progress", "verified", "failed")
GRANT_TYPES = ("authorization_code", "refresh_token")
RESPONSE_TYPES = ("code", "token", "id_token")


class MalformedResponse(ValueError):
    """The body is not what the API contract promises."""


@dataclass(frozen=True, slots=True)
class ApiMessage:
    """One item of an envelope's `errors` or `messages`."""

    code: int | None
    message: str


@dataclass(frozen=True, slots=True)
class ResultInfo:
    page: int | None = None
    per_page: int | None = None
    count: int | None = None
    total_count: int | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """The v4 response wrapper: `{success, errors, messages, result, result_info}`."""

    success: bool
    errors: tuple[ApiMessage, ...]
    result: object
    result_info: ResultInfo | None


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str | None = None


class OAuthClient(NamedTuple):
    """An OAuth client as listed; only `client_id` and `visibility` are always present.

    A NamedTuple rather than a frozen dataclass: just as immutable and typed, but built in a
    fifth of the time, and a large tenant builds 200k of these every refresh.
    """

    client_id: str
    visibility: str
    client_name: str | None = None
    token_endpoint_auth_method: str | None = None
    # None: the client has no verification object, or one without a status.
    verification_status: str | None = None
    has_rotated_secret: bool = False
    grant_types: frozenset[str] = frozenset()
    response_types: frozenset[str] = frozenset()
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    allowed_cors_origins: tuple[str, ...] = ()
    # RFC 3339 as sent; `unix_seconds` converts the few that a metric needs, when it needs them.
    created_at: str | None = None
    updated_at: str | None = None
    promoted_at: str | None = None


def parse_envelope(body: object) -> Envelope:
    if not isinstance(body, Mapping):
        raise MalformedResponse(f"expected a JSON object, got {type(body).__name__}")
    success = body.get("success")
    if not isinstance(success, bool):
        raise MalformedResponse("the response has no boolean 'success'")
    info = body.get("result_info")
    return Envelope(
        success=success,
        errors=_messages(body.get("errors")),
        result=body.get("result"),
        result_info=_result_info(info) if isinstance(info, Mapping) else None,
    )


def _messages(value: object) -> tuple[ApiMessage, ...]:
    if not isinstance(value, list):
        return ()
    messages = []
    for item in value:
        if isinstance(item, Mapping):
            code = item.get("code")
            text = item.get("message")
            messages.append(
                ApiMessage(
                    code=code if isinstance(code, int) and not isinstance(code, bool) else None,
                    message=text if isinstance(text, str) else "",
                )
            )
    return tuple(messages)


def _result_info(info: Mapping[str, object]) -> ResultInfo:
    def number(key: str) -> int | None:
        value = info.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return int(value)

    return ResultInfo(
        page=number("page"),
        per_page=number("per_page"),
        count=number("count"),
        total_count=number("total_count"),
    )


def parse_account(item: object) -> Account:
    if not isinstance(item, Mapping):
        raise MalformedResponse("an account is not a JSON object")
    account_id = item.get("id")
    if not isinstance(account_id, str) or not account_id:
        raise MalformedResponse("an account has no 'id'")
    name = item.get("name")
    return Account(id=account_id, name=name if isinstance(name, str) else None)


def parse_oauth_client(item: object) -> OAuthClient:
    # Runs once per client per refresh (200k times for a large tenant), so the checks are the
    # cheap exact-type ones: JSON only ever gives dict, list, str and bool.
    if type(item) is not dict:
        raise MalformedResponse("an OAuth client is not a JSON object")
    client_id = item.get("client_id")
    if type(client_id) is not str or not client_id:
        raise MalformedResponse("an OAuth client has no 'client_id'")
    visibility = item.get("visibility")
    if type(visibility) is not str or not visibility:
        raise MalformedResponse(f"OAuth client {client_id!r} has no 'visibility'")

    verification = item.get("client_uri_verification")
    status: str | None = None
    if verification is not None:
        if type(verification) is not dict:
            raise _wrong_type(client_id, "client_uri_verification", "an object")
        status = _optional_str(verification, "status", client_id) or None

    rotated = item.get("has_rotated_secret")
    if rotated is not None and type(rotated) is not bool:
        raise _wrong_type(client_id, "has_rotated_secret", "a boolean")

    return OAuthClient(
        client_id=client_id,
        visibility=visibility,
        client_name=_optional_str(item, "client_name", client_id),
        token_endpoint_auth_method=_optional_str(item, "token_endpoint_auth_method", client_id)
        or None,
        verification_status=status,
        has_rotated_secret=bool(rotated),
        grant_types=frozenset(_str_list(item, "grant_types", client_id)),
        response_types=frozenset(_str_list(item, "response_types", client_id)),
        redirect_uris=_str_list(item, "redirect_uris", client_id),
        post_logout_redirect_uris=_str_list(item, "post_logout_redirect_uris", client_id),
        allowed_cors_origins=_str_list(item, "allowed_cors_origins", client_id),
        created_at=_text(item.get("created_at")),
        updated_at=_text(item.get("updated_at")),
        promoted_at=_text(item.get("promoted_at")),
    )


def _wrong_type(client_id: str, field: str, expected: str) -> MalformedResponse:
    return MalformedResponse(f"OAuth client {client_id!r}: '{field}' is not {expected}")


def _optional_str(item: Mapping[str, object], field: str, client_id: str) -> str | None:
    value = item.get(field)
    if value is None or type(value) is str:
        return value
    raise _wrong_type(client_id, field, "a string")


def _str_list(item: Mapping[str, object], field: str, client_id: str) -> tuple[str, ...]:
    value = item.get(field)
    if value is None:
        return ()
    if type(value) is list:
        for element in value:
            if type(element) is not str:
                break
        else:
            return tuple(value)
    raise _wrong_type(client_id, field, "a list of strings")


def _text(value: object) -> str | None:
    return value if type(value) is str else None


def unix_seconds(value: str | None) -> float | None:
    """Unix seconds of an RFC 3339 time; an unreadable time is treated as absent, not an error."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()
