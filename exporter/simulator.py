"""A Cloudflare v4 API simulator for the demo, the tests and the benchmark.

Faithful to the reference where the exporter depends on it: the envelope, `result_info`, error
shapes and codes, `per_page` clamped to 5..50 on GET /accounts, both auth schemes, and the
1200-requests-per-5-minutes limit with its `Ratelimit` / `Retry-After` headers (off by default).
Each account can page, ignore `page` (as the reference's own example suggests), or omit
`result_info`, and can fail in every way the exporter must survive.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exporter.durations import parse_duration
from exporter.serving import EmbeddedServer, bind_socket

BASE_PATH = "/client/v4"
DEFAULT_TOKEN = "simulator-token"  # noqa: S105 - a made-up credential the simulator accepts


@dataclass
class Fault:
    """An answer the simulator gives instead of the normal one."""

    status: int = 500
    code: int | None = None
    message: str = ""
    body: str | None = None
    content_type: str = "application/json"
    retry_after: str | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def api_error(cls, status: int, code: int, message: str) -> Fault:
        return cls(status=status, code=code, message=message)

    @classmethod
    def html(cls, status: int = 502) -> Fault:
        return cls(
            status=status,
            body="<html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>",
            content_type="text/html",
        )

    @classmethod
    def not_json(cls) -> Fault:
        return cls(
            status=200, body='{"success": true, "result": [', content_type="application/json"
        )

    @classmethod
    def success_false(cls, code: int = 1000, message: str = "internal processing error") -> Fault:
        return cls(
            status=200,
            body=json.dumps(
                {
                    "success": False,
                    "errors": [{"code": code, "message": message}],
                    "messages": [],
                    "result": None,
                }
            ),
        )

    @classmethod
    def missing_client_id(cls) -> Fault:
        return cls(
            status=200,
            body=json.dumps(
                {
                    "success": True,
                    "errors": [],
                    "messages": [],
                    "result": [{"visibility": "private"}],
                    "result_info": {"page": 1, "per_page": 20, "count": 1, "total_count": 1},
                }
            ),
        )

    @classmethod
    def rate_limited(cls, retry_after: int = 1) -> Fault:
        return cls(
            status=429,
            code=971,
            message="Please wait and consider throttling your request speed",
            retry_after=str(retry_after),
        )

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Answers normally, but only after `delay` seconds (for client timeouts)."""
        return cls(status=0, delay=delay)


@dataclass
class SimAccount:
    id: str
    name: str
    type: str = "standard"
    clients: list[dict[str, Any]] = field(default_factory=list)
    paging: str = (
        "pages"  # "pages", "ignore" (every page is the whole list) or "single" (no result_info)
    )
    reported_total: int | None = None  # a total_count to report instead of the true one
    fault: Fault | None = None  # every request fails this way until cleared
    faults: deque[Fault] = field(default_factory=deque)  # the next requests fail, one each


class Simulator:
    """The API's state and behaviour; `app` serves it. Tests change the state between requests."""

    def __init__(
        self,
        accounts: Iterable[SimAccount] = (),
        *,
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        email: str | None = None,
        key: str | None = None,
        latency: float = 0.0,
        max_page_size: int = 50,
        rate_limit: int | None = None,
        rate_window: float = 300.0,
        rate_block: float = 300.0,
        cache_pages: bool = False,
    ) -> None:
        self.accounts: dict[str, SimAccount] = {a.id: a for a in accounts}
        # With data that never changes (the benchmark's), encode each page once: the simulator's
        # own CPU should not stand in for the API latency being simulated.
        self._page_cache: dict[tuple[str, int, int], bytes] | None = {} if cache_pages else None
        self.tokens = set(tokens)
        self.email = email
        self.key = key
        self.latency = latency
        self.max_page_size = max_page_size
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.rate_block = rate_block
        self.accounts_fault: Fault | None = None
        self.accounts_faults: deque[Fault] = deque()
        self.requests: Counter[str] = Counter()  # by path, every request answered
        self.status_counts: Counter[int] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.rate_limited = 0  # 429s sent because the rate limit was exceeded
        self._sent: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route(f"{BASE_PATH}/accounts", self._list_accounts),
                Route(f"{BASE_PATH}/accounts/{{account_id}}/oauth_clients", self._list_clients),
                Route(f"{BASE_PATH}/user/tokens/verify", self._verify_token),
            ]
        )
        self.app.add_exception_handler(404, self._no_route)

    def add(self, account: SimAccount) -> SimAccount:
        self.accounts[account.id] = account
        return account

    # --- endpoints -------------------------------------------------------------------------

    async def _list_accounts(self, request: Request) -> Response:
        return await self._serve(request, self._accounts_answer)

    async def _list_clients(self, request: Request) -> Response:
        return await self._serve(request, self._clients_answer)

    async def _verify_token(self, request: Request) -> Response:
        async def answer(_: Request) -> Response:
            return _envelope({"id": "0" * 32, "status": "active"}, None)

        return await self._serve(request, answer)

    async def _no_route(self, request: Request, _: Exception) -> Response:
        return _error_response(404, 7000, "No route for that URI")

    async def _accounts_answer(self, request: Request) -> Response:
        fault = self._next_fault(self.accounts_faults, self.accounts_fault)
        if fault is not None and fault.status:
            return await self._fault_response(fault)
        if fault is not None:
            await asyncio.sleep(fault.delay)
        accounts = sorted(self.accounts.values(), key=lambda a: a.id)
        page, per_page = _paging(request, default=20, minimum=5, maximum=50)
        chunk = accounts[(page - 1) * per_page : page * per_page]
        return _envelope(
            [
                {
                    "id": a.id,
                    "name": a.name,
                    "type": a.type,
                    "created_on": "2024-01-01T00:00:00Z",
                    "settings": {"enforce_twofactor": False},
                }
                for a in chunk
            ],
            {
                "page": page,
                "per_page": per_page,
                "count": len(chunk),
                "total_count": len(accounts),
                "total_pages": -(-len(accounts) // per_page),
            },
        )

    async def _clients_answer(self, request: Request) -> Response:
        account = self.accounts.get(request.path_params["account_id"])
        if account is None:
            return _error_response(
                404,
                7003,
                "Could not route to /accounts/.../oauth_clients, perhaps your object identifier "
                "is invalid?",
            )
        fault = self._next_fault(account.faults, account.fault)
        if fault is not None and fault.status:
            return await self._fault_response(fault)
        if fault is not None:
            await asyncio.sleep(fault.delay)
        clients = account.clients
        page, per_page = _paging(request, default=20, minimum=1, maximum=self.max_page_size)
        total = account.reported_total if account.reported_total is not None else len(clients)
        if account.paging == "single":
            return _envelope(clients, None)
        if account.paging == "ignore":
            return _envelope(
                clients, {"page": page, "per_page": 20, "count": len(clients), "total_count": total}
            )
        key = (account.id, page, per_page)
        if self._page_cache is not None and key in self._page_cache:
            return Response(self._page_cache[key], media_type="application/json")
        chunk = clients[(page - 1) * per_page : page * per_page]
        response = _envelope(
            chunk, {"page": page, "per_page": per_page, "count": len(chunk), "total_count": total}
        )
        if self._page_cache is not None:
            self._page_cache[key] = bytes(response.body)
        return response

    # --- shared behaviour ------------------------------------------------------------------

    async def _serve(
        self, request: Request, answer: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Latency, auth and the rate limit around an endpoint's answer; counts every request.

        The answer leaves `latency` after the request arrived, however long building it took,
        so the simulated API's speed is the configured latency and not the simulator's own CPU.
        """
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + self.latency
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            principal = self._principal(request)
            if isinstance(principal, Response):
                response = principal
            else:
                refusal, headers = self._charge(principal)
                response = refusal or await answer(request)
                response.headers.update(headers)
            if self.latency:
                await asyncio.sleep(max(0.0, ready_at - loop.time()))
        finally:
            with self._lock:
                self.in_flight -= 1
                self.requests[request.url.path.removeprefix(BASE_PATH)] += 1
        with self._lock:
            self.status_counts[response.status_code] += 1
        return response

    def _principal(self, request: Request) -> str | Response:
        authorization = request.headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token:
                return _error_response(400, 6003, "Invalid request headers", chain=6111)
            if token not in self.tokens:
                return _error_response(403, 9109, "Invalid access token")
            return f"token:{token}"
        email, key = request.headers.get("x-auth-email"), request.headers.get("x-auth-key")
        if not email or not key:
            return _error_response(400, 6003, "Invalid request headers", chain=6103)
        if self.email is None or (email, key) != (self.email, self.key):
            return _error_response(403, 9103, "Unknown X-Auth-Key or X-Auth-Email")
        return f"key:{email}"

    def _charge(self, principal: str) -> tuple[Response | None, dict[str, str]]:
        """Cloudflare's limit: over `rate_limit` in the window blocks the caller for a while."""
        if self.rate_limit is None:
            return None, {}
        now = time.monotonic()
        with self._lock:
            blocked = self._blocked_until.get(principal, 0.0) - now
            sent = self._sent.setdefault(principal, deque())
            while sent and sent[0] <= now - self.rate_window:
                sent.popleft()
            if blocked <= 0 and len(sent) >= self.rate_limit:
                blocked = self.rate_block
                self._blocked_until[principal] = now + blocked
            policy = f'"burst";q={self.rate_limit};w={round(self.rate_window)}'
            if blocked > 0:
                self.rate_limited += 1
                response = _error_response(
                    429, 971, "Please wait and consider throttling your request speed"
                )
                response.headers["Retry-After"] = str(max(1, round(blocked)))
                return response, {"Ratelimit-Policy": policy}
            sent.append(now)
            remaining = self.rate_limit - len(sent)
            reset = max(1, round(sent[0] + self.rate_window - now))
        return None, {"Ratelimit": f'"default";r={remaining};t={reset}', "Ratelimit-Policy": policy}

    @staticmethod
    def _next_fault(scripted: deque[Fault], persistent: Fault | None) -> Fault | None:
        if scripted:
            return scripted.popleft()
        return persistent

    @staticmethod
    async def _fault_response(fault: Fault) -> Response:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.body is not None:
            response = Response(fault.body, status_code=fault.status, media_type=fault.content_type)
        else:
            response = _error_response(fault.status, fault.code or 1000, fault.message or "error")
        if fault.retry_after is not None:
            response.headers["Retry-After"] = fault.retry_after
        response.headers.update(fault.headers)
        return response


def _paging(request: Request, *, default: int, minimum: int, maximum: int) -> tuple[int, int]:
    def number(name: str, fallback: int) -> int:
        try:
            return int(request.query_params.get(name, fallback))
        except ValueError:
            return fallback

    page = max(1, number("page", 1))
    per_page = min(maximum, max(minimum, number("per_page", default)))
    return page, per_page


def _envelope(result: object, result_info: dict[str, int] | None) -> Response:
    body: dict[str, object] = {"errors": [], "messages": [], "success": True, "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return Response(json.dumps(body), media_type="application/json")


def _error_response(status: int, code: int, message: str, chain: int | None = None) -> Response:
    error: dict[str, object] = {"code": code, "message": message}
    if chain is not None:
        error["error_chain"] = [{"code": chain, "message": "invalid or missing credentials"}]
    body = {"success": False, "errors": [error], "messages": [], "result": None}
    return Response(json.dumps(body), status_code=status, media_type="application/json")


# --- data ----------------------------------------------------------------------------------


def account_id(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(32))


def make_client(rng: random.Random, index: int, **overrides: Any) -> dict[str, Any]:
    """A client object as the API lists it, varied so every documented value appears."""
    client_id = f"{rng.getrandbits(128):032x}"
    visibility = ("public", "private")[index % 2]
    client: dict[str, Any] = {"client_id": client_id, "visibility": visibility}
    if index % 4 != 3:
        client["token_endpoint_auth_method"] = (
            "none",
            "client_secret_basic",
            "client_secret_post",
        )[index % 3]
    if index % 5 != 4:
        status = ("pending", "in_progress", "verified", "failed")[index % 4]
        client["client_uri_verification"] = {
            "status": status,
            "text": f"cloudflare_oauth_client_publisher={client_id[:12]}",
        }
    if index % 6 != 5:
        client["has_rotated_secret"] = index % 7 == 0
    client["grant_types"] = (
        ["authorization_code", "refresh_token"] if index % 2 else ["authorization_code"]
    )
    client["response_types"] = [["code"], ["code", "id_token"], ["token"]][index % 3]
    host = f"app{index}.example.com"
    client.update(
        client_name=f"App {index}",
        client_uri=f"https://{host}",
        redirect_uris=[f"https://{host}/callback"],
        post_logout_redirect_uris=[f"https://{host}/logout"],
        allowed_cors_origins=[f"https://{host}"],
        scopes=["account.read"],
        logo_uri=f"https://{host}/logo.png",
        policy_uri=f"https://{host}/privacy",
        tos_uri=f"https://{host}/tos",
        created_at="2025-01-01T00:00:00Z",
        updated_at="2025-06-01T12:00:00Z",
    )
    if visibility == "public":
        client["promoted_at"] = "2026-05-13T12:00:00Z"
    client.update(overrides)
    return client


def make_account(rng: random.Random, name: str, clients: int, **options: Any) -> SimAccount:
    return SimAccount(
        id=account_id(rng),
        name=name,
        clients=[make_client(rng, i) for i in range(clients)],
        **options,
    )


def demo_accounts(seed: int = 2026) -> list[SimAccount]:
    """A few accounts, a few hundred clients, every value represented, and some faults."""
    rng = random.Random(seed)
    production = make_account(rng, "Acme Production", 160, type="enterprise")
    # Values the reference does not document: the exporter must keep them, not drop them.
    production.clients[0].update(
        token_endpoint_auth_method="private_key_jwt",  # noqa: S106 - an enum value
        grant_types=["authorization_code", "client_credentials"],
        client_uri_verification={"status": "expired"},
    )
    # Risky configurations, one per security finding, and one that only looks risky.
    risky = {
        1: {"redirect_uris": ["http://app1.example.com/callback"]},
        2: {"redirect_uris": ["https://*.app2.example.com/callback"]},
        3: {"allowed_cors_origins": ["*"]},
        4: {"post_logout_redirect_uris": ["http://[::1", "https://app4.example.com/logout"]},
        5: {"redirect_uris": ["http://127.0.0.1:53682/callback"]},  # loopback: fine (RFC 8252)
    }
    for index, fields in risky.items():
        production.clients[index].update(fields)
    staging = make_account(rng, "Acme Staging", 90)
    staging.faults.extend([Fault.html(503)])  # one bad gateway, then it recovers on retry
    # Names are user-written: the status page must show this as text, never run it.
    lab = make_account(rng, "<script>document.title='pwned'</script> Labs", 4)
    lab.clients[0].update(
        client_name='<img src=x onerror="document.body.dataset.pwned=1">',
        allowed_cors_origins=["null"],
    )
    legacy = make_account(
        rng, 'Globex "legacy" \\ eu 🚀', 3, paging="ignore", reported_total=2000
    )  # the reference's own example: total_count 2000 for a page that ignores paging
    denied = make_account(rng, "Initech (no OAuth permission)", 12)
    denied.fault = Fault.api_error(403, 10000, "Authentication error")
    return [production, staging, legacy, denied, lab]


def scale_accounts(accounts: int, clients: int, seed: int = 1) -> list[SimAccount]:
    rng = random.Random(seed)
    return [make_account(rng, f"Account {i}", clients) for i in range(accounts)]


# --- serving -------------------------------------------------------------------------------


def make_server(simulator: Simulator) -> uvicorn.Server:
    return EmbeddedServer(
        uvicorn.Config(simulator.app, log_config=None, access_log=False, lifespan="off")
    )


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}{BASE_PATH}"


def main(argv: list[str] | None = None) -> None:
    """`python -m exporter.simulator`: serve a simulated API, e.g. for the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m exporter.simulator")
    parser.add_argument("--listen", default="127.0.0.1:8788", help="HOST:PORT")
    parser.add_argument("--accounts", type=int, default=0, help="generated accounts (0: demo)")
    parser.add_argument("--clients", type=int, default=100, help="clients per generated account")
    parser.add_argument("--latency", default="0s", help="added to every answer, e.g. 20ms")
    parser.add_argument("--rate-limit", type=int, default=None, help="requests per window")
    parser.add_argument("--rate-window", default="5m", help="rate limit window")
    parser.add_argument(
        "--token", default=DEFAULT_TOKEN, help="accepted Bearer token(s), comma-separated"
    )
    args = parser.parse_args(argv)
    accounts = scale_accounts(args.accounts, args.clients) if args.accounts else demo_accounts()
    simulator = Simulator(
        accounts,
        tokens=args.token.split(","),
        latency=parse_duration(args.latency),
        rate_limit=args.rate_limit,
        rate_window=parse_duration(args.rate_window),
        cache_pages=True,
    )
    host, _, port = args.listen.rpartition(":")
    sock = bind_socket(host.strip("[]") or "127.0.0.1", int(port))
    print(f"simulator: {url_of(sock)} ({len(accounts)} accounts)", flush=True)
    uvicorn.Server(
        uvicorn.Config(simulator.app, log_config=None, access_log=False, lifespan="off")
    ).run(sockets=[sock])


if __name__ == "__main__":
    main()
