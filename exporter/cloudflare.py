"""The Cloudflare v4 API client: HTTP, auth, paging, retries, bounds and the request budget.

The only module that imports httpx. Bodies are streamed: each list item is parsed, checked and
handed to the caller as it arrives, and only its id's digest is kept, so a listing costs the same
memory whether the API answers in pages of 20 or all 100,000 clients at once. Callers get typed
values (`Account`, `OAuthClient`) or an `ApiError` that says what went wrong in one line and never
carries a credential.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import quote, urlencode

import httpx

from exporter import __version__
from exporter.body import ACCEPT_ENCODING, BodyDecoder, BodyError, BodyTooLarge
from exporter.credentials import Auth
from exporter.envelope_stream import EnvelopeError, EnvelopeStream
from exporter.idset import DigestSet
from exporter.model import (
    Account,
    Envelope,
    MalformedResponse,
    OAuthClient,
    envelope_of,
    parse_account,
    parse_envelope,
    parse_oauth_client,
)
from exporter.paging import EndpointHabits, PageFacts, Pager, StopRule
from exporter.ratelimit import RATE_WINDOW, Clock, Sleep, SlidingWindowLimiter
from exporter.refresh_status import ApiFailure

log = logging.getLogger(__name__)

ACCOUNTS_ENDPOINT = "/accounts"
OAUTH_CLIENTS_ENDPOINT = "/accounts/{account_id}/oauth_clients"
ACCOUNTS_PAGE_SIZE = 50  # the maximum GET /accounts accepts
MAX_PAGES = 10_000  # a guard against an API whose paging never ends
MAX_ACCOUNTS = 100_000  # discovery past this is an API gone wrong, not a tenant
MAX_ITEM_SIZE = 1 << 20  # one client (or envelope member) in characters; real ones are ~1 KiB
MAX_ERROR_BODY = 64 * 1024  # what is read of an error answer
MAX_REASON = 1024  # the API's error messages, joined, in one log line
LONG_PAUSE = 60.0  # a server pause longer than this is logged when it begins
# Cloudflare's account ids are 32 hex characters; anything outside this never reaches a URL.
ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

RequestObserver = Callable[[str, str], None]
PauseObserver = Callable[[float], None]  # the wall time requests resume (0: not paused)
T = TypeVar("T")

_RETRYABLE_STATUS = frozenset({408, 409, 429})
# Listings holding an endpoint's paging lesson that fail (other than with a 400) before the
# others stop waiting for it: one can be its account's own failure, two say the endpoint fails.
_LESSON_FAILURES = 2
_RATELIMIT_HEADER = re.compile(r"\br=(\d{1,9})(?:.*?\bt=(\d{1,9}))?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


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

    @property
    def failure(self) -> ApiFailure:
        """The failure as it is kept and shown (status page, --once)."""
        return ApiFailure(self.status, self.code, self.reason)

    def __str__(self) -> str:
        return str(self.failure)


@dataclass(frozen=True)
class ListingSummary:
    """How a listing went: what it found, what it cost, and why it stopped."""

    distinct: int
    requests: int
    stopped_by: StopRule
    total_count: int | None  # the API's own count, as last reported


@dataclass(frozen=True)
class _Listing:
    """What varies between the two list endpoints."""

    endpoint: str  # the route template, for metrics and logs
    path: str
    page_size: int
    id_field: str
    max_items: int
    too_many: str  # what to do when there are more than max_items
    account_id: str | None = None  # whose listing, for the log


class _Refused(Exception):
    """A 400 answer, which the pager may learn from before it becomes an error."""

    def __init__(self, error: ApiError) -> None:
        self.error = error


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
        max_response_size: int,
        max_clients: int,
        limiter: SlidingWindowLimiter | None = None,
        max_retries: int = 2,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        retry_after_cap: float = RATE_WINDOW,  # a block never lasts longer than the window
        on_request: RequestObserver | None = None,
        on_pause: PauseObserver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.time,
    ) -> None:
        self._secrets = auth.secrets()
        self._timeout = timeout
        self._limiter = limiter or SlidingWindowLimiter(0)
        self._page_size = page_size
        self._max_response_size = max_response_size
        self._max_clients = max_clients
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._retry_after_cap = retry_after_cap
        self._on_request = on_request
        self._on_pause = on_pause
        self._sleep = sleep
        self._clock = clock  # wall time: HTTP dates and the pause metric
        self._in_flight = asyncio.Semaphore(concurrency)
        self._habits: dict[str, EndpointHabits] = {}  # learned per endpoint, for the process
        self._lessons: dict[str, asyncio.Lock] = {}  # held by the listing learning them
        self._lessons_failed: dict[str, int] = {}  # listings that failed holding the lesson
        self.requests_sent = 0
        self._base_url = base_url.rstrip("/")
        # Built once: a request is then one URL parse and a send, not httpx's per-call merging
        # of base URL, params, headers and cookies (a third of the client's CPU per page).
        self._headers = httpx.Headers(
            {
                **auth.headers(),
                "Accept": "application/json",
                "Accept-Encoding": ACCEPT_ENCODING,
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

    # --- listings ------------------------------------------------------------------------

    async def list_accounts(self) -> list[Account]:
        """Every account the credentials can see (GET /accounts, all pages).

        An id that cannot be an account id is skipped with one warning: it would go into a URL.
        """
        accounts: list[Account] = []
        skipped = 0

        def keep(batch: list[Account]) -> None:
            nonlocal skipped
            for account in batch:
                if ACCOUNT_ID.fullmatch(account.id):
                    accounts.append(account)
                else:
                    skipped += 1

        listing = _Listing(
            ACCOUNTS_ENDPOINT, "/accounts", ACCOUNTS_PAGE_SIZE, "id", MAX_ACCOUNTS,
            "list the accounts to export with --cloudflare.account-id instead",
        )  # fmt: skip
        # Redacted before the name is cut: a credential cut in two would no longer match.
        await self._list(listing, lambda raw: parse_account(raw, self._redact), keep)
        if skipped:
            log.warning(
                "account discovery listed ids that are not account ids; skipped them",
                extra={"skipped": skipped, "accounts": len(accounts)},
            )
        return accounts

    async def list_oauth_clients(
        self, account_id: str, consume: Callable[[list[OAuthClient]], None]
    ) -> ListingSummary:
        """Hand every OAuth client of the account to `consume`, in batches as they arrive, each
        client once. Raises ApiError; what was consumed before then is for the caller to drop."""
        if not ACCOUNT_ID.fullmatch(account_id):
            raise ApiError(OAUTH_CLIENTS_ENDPOINT, "not an account id: nothing was requested")
        path = f"/accounts/{quote(account_id, safe='')}/oauth_clients"

        def scrubbed(batch: list[OAuthClient]) -> None:
            consume([self._scrub(client) for client in batch] if self._secrets else batch)

        listing = _Listing(
            OAUTH_CLIENTS_ENDPOINT, path, self._page_size, "client_id", self._max_clients,
            "if that is real, raise --cloudflare.max-clients-per-account", account_id,
        )  # fmt: skip
        return await self._list(listing, parse_oauth_client, scrubbed)

    async def _list(
        self, listing: _Listing, parse: Callable[[object], T], consume: Callable[[list[T]], None]
    ) -> ListingSummary:
        """Walk every page of a list endpoint, handing items with a new id to `consume`.

        The first listing of an endpoint learns how it pages while the others wait: a lesson
        (the 400 fallback, a probe) is then paid once per process, not once per listing running
        at the same time. The wait ends when that listing has ended or had its second answer;
        after that listings run side by side, and one that fails or is cancelled before leaves
        the lesson to the next. Only a 400 teaches anything about paging, and a failure can be
        its account's own (a token without access to it), so the first failure of another kind
        hands the lesson on; a second one says the endpoint is failing, and the wait ends: an
        outage must not run every listing one at a time.
        """
        habits = self._habits.setdefault(listing.endpoint, EndpointHabits())
        if habits.settled:
            return await self._walk(listing, habits, parse, consume)
        lesson = self._lessons.setdefault(listing.endpoint, asyncio.Lock())
        await lesson.acquire()
        held = True

        def settle() -> None:
            nonlocal held
            habits.settled = True
            if held:
                held = False
                lesson.release()

        def failed() -> None:
            """The listing failed, not with a 400, to a request with paging parameters."""
            failures = self._lessons_failed.get(listing.endpoint, 0) + 1
            self._lessons_failed[listing.endpoint] = failures
            if failures >= _LESSON_FAILURES:
                settle()

        try:
            if habits.settled:  # learned while this listing waited
                settle()
            return await self._walk(listing, habits, parse, consume, settle=settle, failed=failed)
        finally:
            if held:
                lesson.release()

    async def _walk(
        self,
        listing: _Listing,
        habits: EndpointHabits,
        parse: Callable[[object], T],
        consume: Callable[[list[T]], None],
        *,
        settle: Callable[[], None] | None = None,
        failed: Callable[[], None] | None = None,
    ) -> ListingSummary:
        """The pages of one listing; `settle` once what the endpoint teaches has been learned,
        `failed` when the listing fails, other than with a 400, to a request with parameters."""
        endpoint = listing.endpoint
        pager = Pager(habits, listing.page_size)
        progress = _Progress()
        seen = progress.seen
        plain_retry = False  # the first page, asked for again without parameters after a 400
        while True:
            if pager.answers >= MAX_PAGES:
                raise ApiError(endpoint, f"paging did not end after {MAX_PAGES} pages")
            params = {} if plain_retry else pager.query()
            try:
                facts = await self._page(listing, params, progress, parse, consume)
            except _Refused as refused:
                if params and pager.answers == 0 and not plain_retry:
                    plain_retry = True  # "retry once without them"
                    continue
                if pager.refused(params) is not None:
                    # It refuses page=N: one answer is all it gives (a total_count saying more
                    # remain notwithstanding, as the spec's own example does).
                    self._learned(endpoint, "it refuses the page parameter: one answer is all")
                    break
                raise refused.error from None
            except ApiError:
                if failed is not None and params:
                    failed()
                raise
            if plain_retry:
                plain_retry = False
                if habits.takes_per_page:
                    habits.takes_per_page = False
                    self._learned(
                        endpoint,
                        "it answers 400 to page/per_page but not without them: from now on its "
                        "first page is asked for without parameters, later ones with page=N",
                    )
            ignores_before = habits.ignores_paging
            if pager.advance(facts) is not None:
                if ignores_before is None and habits.ignores_paging:
                    self._learned(endpoint, "it ignores paging: one request per listing")
                break
            if settle is not None and pager.answers >= 2:
                settle()  # a second answer: the first request's and the probe's lessons are in
        if settle is not None:
            settle()
        assert pager.stopped_by is not None
        if pager.total_count is not None and len(seen) < pager.total_count:
            log.info(
                "fewer distinct items than the API's total_count",
                extra={"endpoint": endpoint, "account_id": listing.account_id or "",
                       "stopped_by": pager.stopped_by,
                       "distinct": len(seen), "total_count": pager.total_count},
            )  # fmt: skip
        return ListingSummary(len(seen), progress.requests, pager.stopped_by, pager.total_count)

    def _learned(self, endpoint: str, what: str) -> None:
        # One lesson for every account: an endpoint is one piece of Cloudflare's code, and pages
        # the same way whichever account it lists.
        log.info(
            "learned how an endpoint pages, for every account",
            extra={"endpoint": endpoint, "learned": what},
        )

    async def _page(
        self,
        listing: _Listing,
        params: Mapping[str, str],
        progress: _Progress,
        parse: Callable[[object], T],
        consume: Callable[[list[T]], None],
    ) -> PageFacts:
        """One page, retried as needed; items with an unseen id are parsed and consumed."""
        endpoint, id_field, max_items = listing.endpoint, listing.id_field, listing.max_items
        seen = progress.seen
        url = self._base_url + listing.path + (f"?{urlencode(params)}" if params else "")
        fresh = 0  # over every attempt: a retry repeats what an attempt already consumed
        items = 0
        batch: list[T] = []

        def start() -> None:
            nonlocal items
            items = 0

        def item(raw: object) -> None:
            nonlocal items, fresh
            items += 1
            item_id = raw.get(id_field) if type(raw) is dict else None
            if type(item_id) is not str:
                parse(raw)  # not an item the parser accepts: it raises and says why
                raise MalformedResponse(f"an item has no string {id_field!r}")
            if not seen.add(item_id):
                return
            if len(seen) > max_items:
                raise ApiError(
                    endpoint,
                    f"more than {max_items} distinct items; {listing.too_many}",
                    status=200,
                )
            fresh += 1
            batch.append(parse(raw))

        def flush() -> None:
            if batch:
                consume(batch.copy())
                batch.clear()

        envelope = await self._get(endpoint, url, _Handlers(start, item, flush, progress))
        return PageFacts(items=items, fresh=fresh, seen=len(seen), info=envelope.result_info)

    # --- one request, with retries -------------------------------------------------------

    async def _get(self, endpoint: str, url: str, handlers: _Handlers) -> Envelope:
        attempt = 0
        while True:
            outcome = await self._attempt(endpoint, url, handlers, attempt)
            if isinstance(outcome, Envelope):
                return outcome
            error, retry_in = outcome.error, outcome.retry_in
            if retry_in is None or attempt >= self._max_retries:
                if error.status == 400:
                    raise _Refused(error)
                raise error
            attempt += 1
            log.debug(
                "retrying API request",
                extra={"endpoint": endpoint, "err": str(error), "retry_in": round(retry_in, 3)},
            )
            if retry_in > 0:
                await self._sleep(retry_in)

    async def _attempt(
        self, endpoint: str, url: str, handlers: _Handlers, attempt: int
    ) -> Envelope | _Failure:
        """One request: its envelope, or why it failed and whether to try again."""
        code = "connection_error"
        async with self._limiter.slot(), self._in_flight:
            self.requests_sent += 1
            handlers.progress.requests += 1
            try:
                async with asyncio.timeout(self._timeout):
                    request = httpx.Request("GET", url, headers=self._headers)
                    response = await self._http.send(request, stream=True)
                    try:
                        code = str(response.status_code)
                        self._obey_ratelimit_header(response)
                        if response.status_code < 300:
                            handlers.start()
                            return await self._read_list(endpoint, response, handlers)
                        envelope = await self._read_error(response)
                        return self._failed(endpoint, response, envelope, attempt)
                    finally:
                        await response.aclose()
            except (TimeoutError, httpx.TimeoutException):
                code = "timeout"
                reason = f"no complete answer within {self._timeout:g}s (--cloudflare.timeout)"
                return _Failure(ApiError(endpoint, reason), self._backoff(attempt))
            except httpx.RequestError as error:
                code = "connection_error"
                reason = f"connection failed ({type(error).__name__})"
                return _Failure(ApiError(endpoint, reason), self._backoff(attempt))
            except _BodyUnreadable as error:
                code = "decode_error"
                return _Failure(ApiError(endpoint, error.reason, status=error.status), None)
            except ApiError as error:
                return _Failure(error, None)
            finally:
                self._observe(endpoint, code)

    async def _read_list(
        self, endpoint: str, response: httpx.Response, handlers: _Handlers
    ) -> Envelope:
        """A 2xx body, streamed: items go to `item` as they complete, the envelope comes back."""
        status = response.status_code
        try:
            decoder = BodyDecoder(response.headers.get("Content-Encoding"), self._max_response_size)
            stream = EnvelopeStream(max_value_size=MAX_ITEM_SIZE)
            item = handlers.item
            async for raw in response.aiter_raw():
                for index, text in enumerate(decoder.feed(raw)):
                    if index:  # a compressed read inflating to many pieces: let others run
                        handlers.flush()
                        await asyncio.sleep(0)
                    for value in stream.feed(text):
                        item(value)
                handlers.flush()
            for value in stream.feed(decoder.finish()):
                item(value)
            for value in stream.finish():
                item(value)
            handlers.flush()
            envelope = envelope_of(stream.members.values)
        except BodyTooLarge as error:
            reason = f"{error} (--cloudflare.max-response-size)"
            raise ApiError(endpoint, reason, status=status) from None
        except BodyError as error:
            raise _BodyUnreadable(str(error), status) from None
        except EnvelopeError as error:
            if error.not_json:
                reason = f"response is not JSON ({self._clean(self._content_type(response))})"
            else:
                reason = f"malformed response: {self._clean(str(error))}"
            raise ApiError(endpoint, reason, status=status) from None
        except MalformedResponse as error:
            reason = f"malformed response: {self._clean(str(error))}"
            raise ApiError(endpoint, reason, status=status) from None
        if not envelope.success:
            raise self._error(endpoint, status, envelope, response)
        return envelope

    async def _read_error(self, response: httpx.Response) -> Envelope | None:
        """The envelope of an error answer, from at most MAX_ERROR_BODY bytes of it."""
        try:
            decoder = BodyDecoder(response.headers.get("Content-Encoding"), MAX_ERROR_BODY)
            text: list[str] = []
            async for raw in response.aiter_raw():
                text.extend(decoder.feed(raw))
            text.append(decoder.finish())
            return parse_envelope(json.loads("".join(text)))
        except (BodyError, ValueError, RecursionError, MalformedResponse, httpx.HTTPError):
            # too large, compressed wrong, not UTF-8, not JSON, not an envelope: no envelope
            return None

    def _failed(
        self, endpoint: str, response: httpx.Response, envelope: Envelope | None, attempt: int
    ) -> _Failure:
        status = response.status_code
        error = self._error(endpoint, status, envelope, response)
        if status == 429:
            self._pause(self._retry_after(response, attempt))
            return _Failure(error, 0.0)  # the limiter holds every request until the pause ends
        if status in _RETRYABLE_STATUS or status >= 500:
            return _Failure(error, self._backoff(attempt))
        return _Failure(error, None)

    def _error(
        self,
        endpoint: str,
        status: int,
        envelope: Envelope | None,
        response: httpx.Response,
    ) -> ApiError:
        if envelope is not None and envelope.errors:
            first = envelope.errors[0]
            message = _bounded(
                "; ".join(self._clean(e.message) for e in envelope.errors if e.message)
            )
            return ApiError(
                endpoint, message or "the API reported an error", status=status, code=first.code
            )
        if envelope is not None and not envelope.success:
            reason = "the API answered success: false without errors"
        elif 300 <= status < 400:
            reason = "an unexpected redirect; check --cloudflare.api-url"
        else:
            phrase = response.reason_phrase or "error"
            reason = self._clean(f"{phrase} ({self._content_type(response)})")
        return ApiError(endpoint, reason, status=status)

    # --- timing --------------------------------------------------------------------------

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
            elif value and len(value) < 64:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - self._clock()
        except (ValueError, TypeError, OverflowError, IndexError):
            seconds = None
        if seconds is None or seconds < 0:
            seconds = self._backoff(attempt)
        return min(seconds, self._retry_after_cap)

    def _obey_ratelimit_header(self, response: httpx.Response) -> None:
        """`Ratelimit: "default";r=0;t=30` means nothing is left for 30 s: wait rather than 429."""
        header = response.headers.get("Ratelimit")
        if not header or len(header) > 256:
            return
        match = _RATELIMIT_HEADER.search(header)
        if match and int(match.group(1)) == 0 and match.group(2):
            self._pause(min(float(match.group(2)), self._retry_after_cap))

    def _pause(self, seconds: float) -> None:
        """Every request waits `seconds` (the block is per token); a long pause is said once."""
        if seconds <= 0:
            return
        began = self._limiter.pause_for(seconds)
        until = self._clock() + seconds
        if self._on_pause is not None:
            self._on_pause(until)
        if began and seconds > LONG_PAUSE:
            resume = email.utils.formatdate(until, usegmt=True)
            log.warning(
                "Cloudflare asked us to pause; every API request waits until then",
                extra={"pause": f"{seconds:g}s", "resume_at": resume},
            )

    # --- text ----------------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        """One line, bounded, control characters escaped, and any credential blotted out."""
        text = self._redact(text)
        text = " ".join(text.split())
        return _bounded(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text))

    def _content_type(self, response: httpx.Response) -> str:
        """The media type, redacted before it is cut (a cut credential would not match)."""
        content_type: str = response.headers.get("Content-Type", "no content type")
        return self._redact(content_type.split(";", maxsplit=1)[0].strip())[:80]

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[REDACTED]")
        return text

    def _scrub(self, client: OAuthClient) -> OAuthClient:
        """The client with any credential the API echoed in it blotted out."""
        secrets = self._secrets
        for value in client:
            if isinstance(value, str):
                if any(secret in value for secret in secrets):
                    break
            elif isinstance(value, tuple | frozenset) and any(
                secret in element for element in value for secret in secrets
            ):
                break
        else:
            return client  # nearly always: checking costs a few substring searches
        fields: list[object] = []  # a credential is in one of them: redacting changes it
        for value in client:
            if isinstance(value, str):
                clean: object = self._redact(value)
            elif isinstance(value, tuple | frozenset):
                clean = type(value)(self._redact(element) for element in value)
            else:
                clean = value
            fields.append(clean)
        return OAuthClient(*fields)  # type: ignore[arg-type]


class _BodyUnreadable(Exception):
    """A body we cannot decode (compression, encoding): counted as decode_error."""

    def __init__(self, reason: str, status: int) -> None:
        self.reason = reason
        self.status = status


@dataclass
class _Progress:
    """A listing so far: the ids seen, and the requests sent (retries included)."""

    seen: DigestSet = field(default_factory=DigestSet)
    requests: int = 0


@dataclass(frozen=True)
class _Handlers:
    """What a list answer's items go through: `start` each attempt, `item` each item as it
    completes, `flush` after each piece of the body (the batch goes to the consumer)."""

    start: Callable[[], None]
    item: Callable[[object], None]
    flush: Callable[[], None]
    progress: _Progress


@dataclass(frozen=True)
class _Failure:
    error: ApiError
    retry_in: float | None  # seconds to wait before trying again; None: do not


def _bounded(text: str) -> str:
    """`text` in at most MAX_REASON characters; a cut says how many characters it left out."""
    if len(text) <= MAX_REASON:
        return text
    keep = MAX_REASON - len(f"...[{len(text)} more]")
    # An escape (\x00 to \x2029, six characters at most) is kept whole or not at all.
    escape = text.rfind("\\", keep - 5, keep)
    if escape != -1:
        keep = escape
    return f"{text[:keep]}...[{len(text) - keep} more]"
