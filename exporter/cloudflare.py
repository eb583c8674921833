"""The Cloudflare v4 API client: HTTP, auth, paging, retries and the request budget.

The only module that imports httpx. Callers get typed values (`Account`, `OAuthClient`) or an
`ApiError` that says what went wrong in one line and never carries a credential.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar
from urllib.parse import quote

import httpx

from exporter import __version__
from exporter.credentials import Auth
from exporter.model import (
    Account,
    Envelope,
    MalformedResponse,
    OAuthClient,
    parse_account,
    parse_envelope,
    parse_oauth_client,
)
from exporter.ratelimit import RATE_WINDOW, Clock, Sleep, SlidingWindowLimiter

log = logging.getLogger(__name__)

ACCOUNTS_ENDPOINT = "/accounts"
OAUTH_CLIENTS_ENDPOINT = "/accounts/{account_id}/oauth_clients"
ACCOUNTS_PAGE_SIZE = 50  # the maximum GET /accounts accepts
MAX_PAGES = 10_000  # a guard against an API that keeps inventing ids; 500k clients at 50 a page

RequestObserver = Callable[[str, str], None]
T = TypeVar("T")

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_RATELIMIT_HEADER = re.compile(r"\br=(\d+)(?:.*?\bt=(\d+))?")


class ApiError(Exception):
    """A request that failed for good, after any retries; safe to log and to show."""

    def __init__(
        self, endpoint: str, reason: str, *, status: int | None = None, code: int | None = None
    ) -> None:
        super().__init__(reason)
        self.endpoint = endpoint
        self.reason = reason
        self.status = status
        self.code = code

    def __str__(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code is not None:
            parts.append(f"code {self.code}")
        prefix = " ".join(parts)
        return f"{prefix}: {self.reason}" if prefix else self.reason


class CloudflareAPI:
    """Lists accounts and OAuth clients; one instance per exporter, shared by all refreshes."""

    def __init__(
        self,
        base_url: str,
        auth: Auth,
        *,
        timeout: float,
        concurrency: int,
        page_size: int,
        limiter: SlidingWindowLimiter | None = None,
        max_retries: int = 2,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        retry_after_cap: float = RATE_WINDOW,  # a block never lasts longer than the window
        on_request: RequestObserver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.time,
    ) -> None:
        self._secrets = auth.secrets()
        self._timeout = timeout
        self._limiter = limiter or SlidingWindowLimiter(0)
        self._page_size = page_size
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._retry_after_cap = retry_after_cap
        self._on_request = on_request
        self._sleep = sleep
        self._clock = clock  # wall time, for Retry-After given as an HTTP date
        self._in_flight = asyncio.Semaphore(concurrency)
        self.requests_sent = 0
        self._base_url = base_url.rstrip("/")
        # Built once: a request is then one URL parse and a send, not httpx's per-call merging
        # of base URL, params, headers and cookies (a third of the client's CPU per page).
        self._headers = httpx.Headers(
            {
                **auth.headers(),
                "Accept": "application/json",
                "User-Agent": f"cloudflare-oauth-exporter/{__version__}",
            }
        )
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"CloudflareAPI(base_url={self._base_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def list_accounts(self) -> list[Account]:
        """Every account the credentials can see (GET /accounts, all pages)."""
        accounts: list[Account] = []
        async for page in self._pages(
            ACCOUNTS_ENDPOINT, "/accounts", ACCOUNTS_PAGE_SIZE, parse_account, "id"
        ):
            accounts.extend(page)
        return accounts

    def oauth_client_pages(self, account_id: str) -> AsyncIterator[list[OAuthClient]]:
        """The account's clients page by page, each client once, so callers can count as they go."""
        path = f"/accounts/{quote(account_id, safe='')}/oauth_clients"
        return self._pages(
            OAUTH_CLIENTS_ENDPOINT, path, self._page_size, parse_oauth_client, "client_id"
        )

    async def _pages(
        self,
        endpoint: str,
        path: str,
        page_size: int,
        parse: Callable[[object], T],
        id_field: str,
    ) -> AsyncIterator[list[T]]:
        """Pages of items not seen before, for APIs that page and for ones that ignore `page`.

        Stops on: an empty page, a page with nothing new (the API ignores `page`), no
        `result_info`, `total_count` reached, or a page shorter than its reported `per_page`.
        Only items with an id not seen before are parsed.
        """
        seen: set[str] = set()
        page = 1
        while True:
            envelope = await self._get(endpoint, f"{path}?page={page}&per_page={page_size}")
            result = envelope.result
            if not isinstance(result, list):
                raise ApiError(endpoint, "malformed response: 'result' is not a list", status=200)
            fresh = []
            for raw in result:
                item_id = raw.get(id_field) if type(raw) is dict else None
                if type(item_id) is not str:
                    fresh.append(raw)  # not an item the parser accepts: it will say why
                elif item_id not in seen:
                    seen.add(item_id)
                    fresh.append(raw)
            try:
                items = [parse(raw) for raw in fresh]
            except MalformedResponse as error:
                reason = f"malformed response: {self._clean(str(error))}"
                raise ApiError(endpoint, reason, status=200) from None
            if items:
                yield items
            info = envelope.result_info
            if (
                not result
                or not fresh
                or info is None
                or (info.total_count is not None and len(seen) >= info.total_count)
                or (info.per_page and len(result) < info.per_page)
            ):
                return
            if page >= MAX_PAGES:
                raise ApiError(endpoint, f"paging did not end after {MAX_PAGES} pages")
            page += 1

    async def _get(self, endpoint: str, path_and_query: str) -> Envelope:
        url = self._base_url + path_and_query
        attempt = 0
        while True:
            response: httpx.Response | None = None
            failure = ""
            async with self._limiter.slot(), self._in_flight:
                self.requests_sent += 1
                try:
                    async with asyncio.timeout(self._timeout):
                        request = httpx.Request("GET", url, headers=self._headers)
                        response = await self._http.send(request)
                except (TimeoutError, httpx.TimeoutException):
                    code, failure = "timeout", f"no answer within {self._timeout:g}s"
                except httpx.DecodingError:
                    code, failure = "decode_error", "the body could not be decoded"
                except httpx.RequestError as error:
                    code, failure = (
                        "connection_error",
                        f"connection failed ({type(error).__name__})",
                    )
            if response is not None:
                code = str(response.status_code)
            self._observe(endpoint, code)

            if response is None:
                retry_in = self._backoff(attempt)
                final = ApiError(endpoint, failure)
            else:
                self._obey_ratelimit_header(response)
                status = response.status_code
                if status < 400 or (status not in _RETRYABLE_STATUS and status < 500):
                    return self._envelope(endpoint, response)
                final = self._error(endpoint, response)
                if status == 429:
                    retry_in = self._retry_after(response, attempt)
                    self._limiter.pause_for(retry_in)
                else:
                    retry_in = self._backoff(attempt)
            if attempt >= self._max_retries:
                raise final
            attempt += 1
            log.debug(
                "retrying API request",
                extra={"endpoint": endpoint, "err": str(final), "retry_in": round(retry_in, 3)},
            )
            if response is None or response.status_code != 429:
                await self._sleep(retry_in)

    def _envelope(self, endpoint: str, response: httpx.Response) -> Envelope:
        """The body of a non-retryable answer: the envelope on success, else an ApiError."""
        try:
            envelope = parse_envelope(json.loads(response.content))
        except (ValueError, RecursionError, MalformedResponse) as error:
            if response.status_code >= 400:
                raise self._error(endpoint, response) from None
            reason = (
                f"malformed response: {self._clean(str(error))}"
                if isinstance(error, MalformedResponse)
                else f"response is not JSON ({self._clean(_content_type(response))})"
            )
            raise ApiError(endpoint, reason, status=response.status_code) from None
        if response.status_code >= 400 or not envelope.success:
            raise self._error(endpoint, response, envelope)
        return envelope

    def _error(
        self, endpoint: str, response: httpx.Response, envelope: Envelope | None = None
    ) -> ApiError:
        if envelope is None:
            try:
                envelope = parse_envelope(json.loads(response.content))
            except (ValueError, RecursionError, MalformedResponse):
                envelope = None
        if envelope is not None and envelope.errors:
            first = envelope.errors[0]
            message = "; ".join(self._clean(e.message) for e in envelope.errors if e.message)
            return ApiError(
                endpoint,
                message or "the API reported an error",
                status=response.status_code,
                code=first.code,
            )
        if envelope is not None and not envelope.success:
            reason = "the API answered success: false without errors"
        else:
            reason = self._clean(f"{response.reason_phrase or 'error'} ({_content_type(response)})")
        return ApiError(endpoint, reason, status=response.status_code)

    def _observe(self, endpoint: str, code: str) -> None:
        if self._on_request is not None:
            self._on_request(endpoint, code)

    def _backoff(self, attempt: int) -> float:
        # The SDKs' schedule: min(0.5 * 2^n, 8) seconds, with jitter so replicas spread out.
        delay: float = min(self._backoff_base * 2**attempt, self._backoff_cap)
        return delay * (1 - 0.25 * random.random())

    def _retry_after(self, response: httpx.Response, attempt: int) -> float:
        """Seconds or an HTTP date; anything unreadable falls back to the usual backoff."""
        value = response.headers.get("Retry-After", "").strip()
        seconds: float | None = None
        try:
            if value.isascii() and value.isdigit():
                seconds = float(value)
            elif value:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - self._clock()
        except (ValueError, TypeError, OverflowError, IndexError):
            seconds = None
        if seconds is None or seconds < 0:
            seconds = self._backoff(attempt)
        return min(seconds, self._retry_after_cap)

    def _obey_ratelimit_header(self, response: httpx.Response) -> None:
        """`Ratelimit: "default";r=0;t=30` means nothing is left for 30 s: wait rather than 429."""
        header = response.headers.get("Ratelimit")
        if not header:
            return
        match = _RATELIMIT_HEADER.search(header)
        if match and match.group(1) == "0" and match.group(2):
            self._limiter.pause_for(min(float(match.group(2)), self._retry_after_cap))

    def _clean(self, text: str) -> str:
        """One line, bounded, and with any credential the API might echo blotted out."""
        for secret in self._secrets:
            text = text.replace(secret, "[REDACTED]")
        text = " ".join(text.split())
        return text if len(text) <= 300 else text[:297] + "..."


def _content_type(response: httpx.Response) -> str:
    content_type: str = response.headers.get("Content-Type", "no content type")
    return content_type.split(";", maxsplit=1)[0].strip()
