"""The Cloudflare API's data as typed, frozen values, and the one place that parses its JSON.

Parsing is tolerant where the API is allowed to change (unknown fields are ignored, unknown enum
values are kept verbatim) and strict where it is not (a missing `client_id`, a field of the wrong
type): those raise MalformedResponse so the caller can fail that account instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
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
    """Paging facts; a number that is not a whole number in range reads as absent."""

    page: int | None = None
    per_page: int | None = None
    count: int | None = None
    total_count: int | None = None
    # The next page's cursor when the endpoint pages by cursor; "" on the last page.
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """The v4 response wrapper's `{success, errors, result_info}`: its `result` is streamed."""

    success: bool
    errors: tuple[ApiMessage, ...]
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
    # Read for change detection only.
    scopes: tuple[str, ...] = ()
    client_uri: str | None = None
    verification_text: str | None = None  # the DNS TXT value of client_uri_verification


def parse_envelope(body: object) -> Envelope:
    """A whole envelope (an error answer, read in full); list answers are streamed instead."""
    if not isinstance(body, Mapping):
        raise MalformedResponse(f"expected a JSON object, got {type(body).__name__}")
    return envelope_of(body)


def envelope_of(members: Mapping[str, object]) -> Envelope:
    """The envelope from its members (success, errors, result_info)."""
    success = members.get("success")
    if not isinstance(success, bool):
        raise MalformedResponse("the response has no boolean 'success'")
    info = members.get("result_info")
    return Envelope(
        success=success,
        errors=_messages(members.get("errors")),
        result_info=_result_info(info) if isinstance(info, Mapping) else None,
    )


MAX_MESSAGES = 20  # errors an answer may list that are kept; the rest say nothing new
MAX_CURSOR_LENGTH = 4096  # it goes into a URL


def _messages(value: object) -> tuple[ApiMessage, ...]:
    if not isinstance(value, list):
        return ()
    messages = []
    for item in value[:MAX_MESSAGES]:
        if isinstance(item, Mapping):
            # Kept whole (the body it came in is bounded): the client cuts it once any credential
            # in it is redacted, as a cut first could leave a credential's beginning behind.
            text = item.get("message")
            messages.append(
                ApiMessage(
                    code=_whole_number(item.get("code")),
                    message=text if isinstance(text, str) else "",
                )
            )
    return tuple(messages)


def _whole_number(value: object) -> int | None:
    """An int, or a float holding one, within what a count can be; anything else is absent
    (booleans, NaN, infinities, 1e999, fractions, absurdly large numbers)."""
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int or not -(2**53) <= value <= 2**53:
        return None
    return value


def _result_info(info: Mapping[str, object]) -> ResultInfo:
    def count(key: str) -> int | None:
        value = _whole_number(info.get(key))
        return value if value is not None and value >= 0 else None

    cursor = info.get("cursor")
    cursors = info.get("cursors")
    if cursor is None and isinstance(cursors, Mapping):
        cursor = cursors.get("after")  # the other shape Cloudflare's cursor lists use
    if not isinstance(cursor, str):
        cursor = None  # "" stays: the cursor of the last page, which says there is no next one
    elif len(cursor) > MAX_CURSOR_LENGTH:
        raise MalformedResponse(f"result_info.cursor is longer than {MAX_CURSOR_LENGTH} characters")
    return ResultInfo(
        page=count("page"),
        per_page=count("per_page"),
        count=count("count"),
        total_count=count("total_count"),
        cursor=cursor,
    )


MAX_LABEL_LENGTH = 128  # a label value from the API is cut here: not a place for essays
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def well_formed(text: str) -> str:
    """`text` with any lone surrogate replaced by U+FFFD, so it can be written as UTF-8.

    JSON can carry a lone surrogate (`"\\ud800"`); UTF-8 cannot, and a page or a log line that
    tried would fail. Pairs were joined by the JSON decoder, so any surrogate left is alone.
    """
    return text if text.isascii() else _LONE_SURROGATE.sub("\ufffd", text)


def shown(text: str) -> str:
    """A value from the API as a label value shows it: cut at MAX_LABEL_LENGTH, then
    `well_formed`. Everything that keys a series by such a value keys it by this, so two values
    that would be written the same are one series (Prometheus refuses a scrape with duplicates).
    """
    return well_formed(text[:MAX_LABEL_LENGTH])


def parse_account(item: object, redact: Callable[[str], str] = str) -> Account:
    """The account; `redact` blots credentials out of its name before the name is cut."""
    if not isinstance(item, Mapping):
        raise MalformedResponse("an account is not a JSON object")
    account_id = item.get("id")
    if not isinstance(account_id, str) or not account_id:
        raise MalformedResponse("an account has no 'id'")
    name = item.get("name")
    return Account(id=account_id, name=shown(redact(name)) if isinstance(name, str) else None)


def parse_oauth_client(item: object) -> OAuthClient:
    # Runs once per client per refresh (200k times for a large tenant), so the checks are the
    # cheap exact-type ones: JSON only ever gives dict, list, str and bool.
    if type(item) is not dict:
        raise MalformedResponse("an OAuth client is not a JSON object")
    client_id = item.get("client_id")
    if type(client_id) is not str:  # "" is an id like any other
        raise MalformedResponse("an OAuth client has no 'client_id'")
    visibility = item.get("visibility")
    if type(visibility) is not str or not visibility:
        raise MalformedResponse(f"OAuth client {client_id!r} has no 'visibility'")

    verification = item.get("client_uri_verification")
    status: str | None = None
    text: str | None = None
    if verification is not None:
        if type(verification) is not dict:
            raise _wrong_type(client_id, "client_uri_verification", "an object")
        status = _optional_str(verification, "status", client_id) or None
        text = _text(verification.get("text"))

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
        # Read for change detection only: an odd value there is no reason to fail the account.
        scopes=_strings(item.get("scopes")),
        client_uri=_text(item.get("client_uri")),
        verification_text=text,
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


def _strings(value: object) -> tuple[str, ...]:
    """The strings of a list; anything else in it, or a value that is not a list, is absent."""
    if type(value) is not list:
        return ()
    return tuple(element for element in value if type(element) is str)


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
