"""The Cloudflare API's data as typed, frozen values, and the one place that parses its JSON.

Parsing is tolerant where the API is allowed to change (unknown fields are ignored, unknown enum
values are kept verbatim) and strict where it is not (a missing `client_id`, a field of the wrong
type): those raise MalformedResponse so the caller can fail that account instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

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


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """An OAuth client as listed; only `client_id` and `visibility` are always present."""

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
    scopes: tuple[str, ...] = ()
    client_uri: str | None = None
    created_at: float | None = None
    updated_at: float | None = None
    promoted_at: float | None = None


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
    if not isinstance(item, Mapping):
        raise MalformedResponse("an OAuth client is not a JSON object")
    client_id = item.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise MalformedResponse("an OAuth client has no 'client_id'")
    visibility = item.get("visibility")
    if not isinstance(visibility, str) or not visibility:
        raise MalformedResponse(f"OAuth client {client_id!r} has no 'visibility'")

    verification = item.get("client_uri_verification")
    status: str | None = None
    if verification is not None:
        if not isinstance(verification, Mapping):
            raise _wrong_type(client_id, "client_uri_verification", "an object")
        status = _optional_str(verification, "status", client_id) or None

    rotated = item.get("has_rotated_secret")
    if rotated is not None and not isinstance(rotated, bool):
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
        scopes=_str_list(item, "scopes", client_id),
        client_uri=_optional_str(item, "client_uri", client_id),
        created_at=_timestamp(item.get("created_at")),
        updated_at=_timestamp(item.get("updated_at")),
        promoted_at=_timestamp(item.get("promoted_at")),
    )


def _wrong_type(client_id: str, field: str, expected: str) -> MalformedResponse:
    return MalformedResponse(f"OAuth client {client_id!r}: '{field}' is not {expected}")


def _optional_str(item: Mapping[str, object], field: str, client_id: str) -> str | None:
    value = item.get(field)
    if value is None or isinstance(value, str):
        return value
    raise _wrong_type(client_id, field, "a string")


def _str_list(item: Mapping[str, object], field: str, client_id: str) -> tuple[str, ...]:
    value = item.get(field)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _wrong_type(client_id, field, "a list of strings")
    return tuple(value)


def _timestamp(value: object) -> float | None:
    """Unix seconds of an RFC 3339 time; an unreadable time is treated as absent, not an error."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()
