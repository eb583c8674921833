"""The simulated Cloudflare v4 API as a Starlette app: endpoints, auth, paging and rate limit."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from exporter.ratelimit import RATE_WINDOW
from exporter.serving import EmbeddedServer
from exporter.simulator.data import SimAccount
from exporter.simulator.faults import Fault

BASE_PATH = "/client/v4"
DEFAULT_TOKEN = "simulator-token"  # noqa: S105 - a made-up credential the simulator accepts


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
        rate_window: float = RATE_WINDOW,
        rate_block: float = RATE_WINDOW,
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
        self._created = 0
        self._sent: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._lock = threading.Lock()
        clients = f"{BASE_PATH}/accounts/{{account_id}}/oauth_clients"
        self.app = Starlette(
            routes=[
                Route(f"{BASE_PATH}/accounts", self._list_accounts),
                Route(clients, self._list_clients, methods=["GET"]),
                # The API's own write endpoints: tests and the demo change clients through them.
                Route(clients, self._write, methods=["POST"]),
                Route(f"{clients}/{{client_id}}", self._write, methods=["GET", "PATCH", "DELETE"]),
                Route(
                    f"{clients}/{{client_id}}/rotate_secret",
                    self._write,
                    methods=["POST", "DELETE"],
                ),
            ]
        )
        self.app.add_exception_handler(404, self._no_route)

    def add(self, account: SimAccount) -> SimAccount:
        self.accounts[account.id] = account
        return account

    # --- run-time control: what the API's write endpoints do, also callable directly ---------

    def create_client(self, account_id: str, **fields: Any) -> dict[str, Any]:
        """A new client with a fresh id (and `fields`), as POST .../oauth_clients makes one."""
        account = self.accounts[account_id]
        self._created += 1
        client_id = f"{self._created:08x}{account_id[:8]}{random.getrandbits(64):016x}"
        client = {"client_id": client_id, "visibility": "private", **fields}
        with self._lock:
            account.clients.append(client)
            self._forget_pages(account_id)
        return client

    def update_client(self, account_id: str, client_id: str, **fields: Any) -> dict[str, Any]:
        """Set `fields` on the client (None removes one), as PATCH does."""
        client = self._client(account_id, client_id)
        with self._lock:
            for name, value in fields.items():
                if value is None:
                    client.pop(name, None)
                else:
                    client[name] = value
            self._forget_pages(account_id)
        return client

    def delete_client(self, account_id: str, client_id: str) -> None:
        account = self.accounts[account_id]
        client = self._client(account_id, client_id)
        with self._lock:
            account.clients.remove(client)
            self._forget_pages(account_id)

    def _client(self, account_id: str, client_id: str) -> dict[str, Any]:
        for client in self.accounts[account_id].clients:
            if client.get("client_id") == client_id:
                return client
        raise KeyError(client_id)

    def _forget_pages(self, account_id: str) -> None:
        if self._page_cache:
            self._page_cache = {k: v for k, v in self._page_cache.items() if k[0] != account_id}

    # --- endpoints -------------------------------------------------------------------------

    async def _list_accounts(self, request: Request) -> Response:
        return await self._serve(request, self._accounts_answer)

    async def _list_clients(self, request: Request) -> Response:
        return await self._serve(request, self._clients_answer)

    async def _write(self, request: Request) -> Response:
        return await self._serve(request, self._write_answer)

    async def _write_answer(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        client_id = request.path_params.get("client_id")
        if account_id not in self.accounts:
            return _error_response(404, 7003, "Could not route to /accounts/...")
        if client_id is not None and not any(
            c.get("client_id") == client_id for c in self.accounts[account_id].clients
        ):
            return _error_response(404, 7003, "OAuth client not found")
        method, rotate = request.method, request.url.path.endswith("/rotate_secret")
        if method == "GET":
            return _envelope(self._client(account_id, client_id or ""), None)
        if method == "DELETE" and not rotate:
            self.delete_client(account_id, client_id or "")
            return _envelope({"client_id": client_id}, None)
        if rotate:  # POST makes a new secret and keeps the old one; DELETE deletes the old one
            updated = self.update_client(account_id, client_id or "",
                                         has_rotated_secret=method == "POST")  # fmt: skip
            return _envelope(updated, None)
        try:
            fields = await request.json()
        except ValueError:
            return _error_response(400, 6008, "Invalid request parameters")
        if not isinstance(fields, dict) or "client_id" in fields:
            return _error_response(400, 6008, "Invalid request parameters")
        if method == "POST":
            return _envelope(self.create_client(account_id, **fields), None)
        return _envelope(self.update_client(account_id, client_id or "", **fields), None)

    async def _no_route(self, request: Request, _: Exception) -> Response:
        return _error_response(404, 7000, "No route for that URI")

    async def _accounts_answer(self, request: Request) -> Response:
        fault = self._next_fault(self.accounts_faults, self.accounts_fault)
        return await self._faulted(fault, lambda: self._accounts_page(request))

    def _accounts_page(self, request: Request) -> Response:
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
        return await self._faulted(fault, lambda: self._clients_page(request, account))

    def _clients_page(self, request: Request, account: SimAccount) -> Response:
        clients = account.clients
        mode = account.paging
        query = request.query_params
        total = account.reported_total if account.reported_total is not None else len(clients)
        if mode == "strict" and query:
            return _error_response(400, 6008, "Invalid request parameters")
        if mode in ("spec", "strict"):
            key = (account.id, 0, 0)
            if self._page_cache is not None and key in self._page_cache:
                return Response(self._page_cache[key], media_type="application/json")
            info = {"page": 1, "per_page": len(clients), "count": len(clients),
                    "total_count": total}  # fmt: skip
            response = _envelope(clients, info)
            if self._page_cache is not None:
                self._page_cache[key] = bytes(response.body)
            return response
        if mode == "single":
            return _envelope(clients, None)
        page, per_page = _paging(request, default=20, minimum=1, maximum=self.max_page_size)
        if mode == "ignore":
            info = {"page": page, "per_page": 20, "count": len(clients), "total_count": total}
            return _envelope(clients, info)
        if mode == "endless":
            invented = [_invented_client(account.id, page, n) for n in range(per_page)]
            info = {"page": page, "per_page": per_page, "count": per_page,
                    "total_count": (page + 1) * per_page}  # fmt: skip
            return _envelope(invented, info)
        if mode == "cursor":
            return self._cursor_page(query.get("cursor", ""), per_page, clients)
        if mode == "max_per_page":
            if "per_page" in query and per_page > account.max_per_page:
                return _error_response(
                    400, 8000024,
                    "Invalid list options provided. Review the `page` or `per_page` parameter.",
                )  # fmt: skip
            if "per_page" not in query:
                per_page = 20
        asked = per_page
        if mode in ("fixed", "fixed_echo", "fixed_bare"):
            per_page = account.fixed_page_size
        key = (account.id, page, per_page)
        if self._page_cache is not None and key in self._page_cache:
            return Response(self._page_cache[key], media_type="application/json")
        chunk = clients[(page - 1) * per_page : page * per_page]
        reported_per_page = asked if mode == "fixed_echo" else per_page
        info = {"page": page, "per_page": reported_per_page, "count": len(chunk),
                "total_count": total}  # fmt: skip
        response = _envelope(chunk, None if mode == "fixed_bare" else info)
        if self._page_cache is not None:
            self._page_cache[key] = bytes(response.body)
        return response

    def _cursor_page(self, cursor: str, per_page: int, clients: list[dict[str, Any]]) -> Response:
        """Cursors are opaque to the client: here, the offset of the next page, disguised."""
        try:
            start = int(cursor.removeprefix("c-"), 16) if cursor else 0
        except ValueError:
            return _error_response(400, 6008, "Invalid request parameters")
        chunk = clients[start : start + per_page]
        following = start + per_page
        info: dict[str, object] = {
            "count": len(chunk),
            "per_page": per_page,
            "cursor": f"c-{following:x}" if following < len(clients) else "",
        }
        return _envelope(chunk, info)

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

    @classmethod
    async def _faulted(cls, fault: Fault | None, answer: Callable[[], Response]) -> Response:
        """The fault's answer; or, for a fault without a status, the normal answer after the
        fault's delay and with its headers."""
        if fault is None:
            return answer()
        if fault.status:
            return await cls._fault_response(fault)
        await asyncio.sleep(fault.delay)
        response = answer()
        response.headers.update(fault.headers)
        return response

    @staticmethod
    async def _fault_response(fault: Fault) -> Response:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        response: Response
        if fault.stream is not None:
            response = StreamingResponse(  # an Iterator is read in a thread, not on the loop
                fault.stream(), status_code=fault.status, media_type=fault.content_type
            )
        elif fault.body is not None:
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


def _invented_client(account_id: str, page: int, n: int) -> dict[str, Any]:
    """A client no earlier page had: the "endless" mode's supply never runs out."""
    return {"client_id": f"{account_id[:8]}-{page:08x}-{n:04x}", "visibility": "private"}


def _envelope(result: object, result_info: Mapping[str, object] | None) -> Response:
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


def make_server(simulator: Simulator) -> uvicorn.Server:
    return EmbeddedServer(
        uvicorn.Config(simulator.app, log_config=None, access_log=False, lifespan="off")
    )


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}{BASE_PATH}"


async def change_now_and_then(
    simulator: Simulator,
    account_id: str,
    every: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """The demo's living account: one realistic change every `every` seconds, for ever."""
    rng = random.Random(account_id)
    made: list[str] = []
    step = 0
    while True:
        await sleep(every)
        clients = simulator.accounts[account_id].clients
        target = rng.choice(clients)["client_id"] if clients else None
        kind = step % 5
        step += 1
        if kind == 0 or target is None:
            host = f"demo{step}.example.com"
            made.append(simulator.create_client(
                account_id, client_name=f"Demo app {step}", redirect_uris=[f"https://{host}/cb"],
                token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - an enum value
            )["client_id"])  # fmt: skip
        elif kind == 1:  # a new redirect URI, over plain http: a risky finding gained
            client = next(c for c in clients if c.get("client_id") == target)
            uris = [*client.get("redirect_uris", []), f"http://insecure{step}.example.com/cb"]
            simulator.update_client(account_id, target, redirect_uris=uris[-3:])
        elif kind == 2:  # made public, or (when none is private any more) private again
            private = [c["client_id"] for c in clients if c.get("visibility") != "public"]
            if private:
                simulator.update_client(account_id, rng.choice(private), visibility="public")
            else:
                simulator.update_client(account_id, target, visibility="private")
        elif kind == 3:  # a secret rotated, or an old one deleted
            kept = [c["client_id"] for c in clients if not c.get("has_rotated_secret")]
            chosen = rng.choice(kept or [target])
            simulator.update_client(account_id, chosen, has_rotated_secret=bool(kept))
        elif made:
            simulator.delete_client(account_id, made.pop(0))
