"""`python -m exporter.simulator`: serve a simulated Cloudflare API, e.g. for the benchmark or to
point an exporter at by hand (`--cloudflare.api-url` with `CLOUDFLARE_API_TOKEN=simulator-token`).
"""

from __future__ import annotations

import argparse
from typing import get_args

import uvicorn

from exporter.durations import format_duration, parse_duration
from exporter.ratelimit import RATE_WINDOW
from exporter.serving import bind_socket
from exporter.simulator.app import DEFAULT_TOKEN, Simulator, url_of
from exporter.simulator.data import Paging, demo_accounts, scale_accounts


def build_parser() -> argparse.ArgumentParser:
    """The command line; its --help describes every option with its default."""
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator",
        description=(
            "Serve a simulated Cloudflare v4 API (GET /accounts and "
            "GET /accounts/{id}/oauth_clients) on loopback, with the demo's accounts or "
            "generated ones. Point the exporter at the URL it prints with "
            f"--cloudflare.api-url and CLOUDFLARE_API_TOKEN={DEFAULT_TOKEN}."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--listen", default="127.0.0.1:8788", help="HOST:PORT to serve on")
    parser.add_argument(
        "--accounts", type=int, default=0, help="accounts to generate; 0 serves the demo's five"
    )
    parser.add_argument("--clients", type=int, default=100, help="clients per generated account")
    parser.add_argument(
        "--paging", choices=get_args(Paging), default="pages",
        help="how generated accounts answer GET /accounts/{id}/oauth_clients (see data.py)",
    )  # fmt: skip
    parser.add_argument("--latency", default="0s", help="added to every answer, e.g. 20ms")
    parser.add_argument(
        "--rate-limit", type=int, default=None,
        help="requests per token per window before 429s; unset: no limit",
    )  # fmt: skip
    parser.add_argument(
        "--rate-window", default=format_duration(RATE_WINDOW), help="rate limit window"
    )
    parser.add_argument(
        "--token", default=DEFAULT_TOKEN, help="accepted Bearer token(s), comma-separated"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    accounts = (
        scale_accounts(args.accounts, args.clients, paging=args.paging)
        if args.accounts
        else demo_accounts()
    )
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
