"""Command line entry point: settings, logging, then serve, refresh once, or run the demo."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping, Sequence

import uvicorn

from exporter import __version__
from exporter.credentials import Secret, TokenAuth
from exporter.exposition import ExpositionStore
from exporter.listener import Listener
from exporter.logs import configure_logging
from exporter.service import ExporterService
from exporter.serving import GuardedServer, address_of, bind_socket
from exporter.settings import ConfigError, Settings, load_settings

log = logging.getLogger("exporter")
_PROG = "cloudflare-oauth-exporter"

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    try:
        settings = load_settings(
            sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ
        )
    except ConfigError as error:
        print(f"cloudflare-oauth-exporter: {error}", file=sys.stderr)
        return EXIT_CONFIG
    secrets = settings.auth.secrets() if settings.auth is not None else ()
    configure_logging(settings.log_level, settings.log_format, secrets=secrets)
    if settings.once:
        return asyncio.run(refresh_once(settings))
    try:
        listener = listen(settings)
    except ConfigError as error:
        print(f"cloudflare-oauth-exporter: {error}", file=sys.stderr)
        return EXIT_CONFIG
    asyncio.run(serve(settings, listener))
    return EXIT_OK


def listen(settings: Settings) -> socket.socket:
    try:
        return bind_socket(settings.listen_host, settings.listen_port)
    except (OSError, UnicodeError) as error:  # UnicodeError: a name the resolver cannot encode
        if isinstance(error, UnicodeError):
            error = OSError(errno.EINVAL, "not a host name this machine can resolve")
        reason = {
            errno.EADDRINUSE: "the port is in use; stop the other process or choose another port",
            errno.EACCES: "permission denied; choose a port above 1023",
            errno.EADDRNOTAVAIL: "no interface has that address; use :PORT for every interface",
        }.get(error.errno or 0, error.strerror or str(error))
        raise ConfigError(
            f"--web.listen-address (EXPORTER_WEB_LISTEN_ADDRESS) {settings.listen_address!r}: "
            f"{reason}"
        ) from None


async def refresh_once(settings: Settings) -> int:
    async with demo_api(settings) as effective:
        service = ExporterService(effective, process_metrics=False)
        try:
            ok = await service.poller.refresh()
        finally:
            await service.api.aclose()
        sys.stdout.buffer.write(service.store.render())
        sys.stdout.flush()
        print(once_summary(service.store, demo=settings.demo), file=sys.stderr, flush=True)
        return EXIT_OK if ok else EXIT_FAILED


def once_summary(store: ExpositionStore, *, demo: bool = False) -> str:
    """The last line of --once: what was refreshed and what failed, on one line."""
    accounts = store.snapshots()
    status = store.refresh_status
    failure = status.discovery_failure if status is not None else None
    down = sorted(
        (a for a in accounts if not a.up), key=lambda a: (a.account_name or "", a.account_id)
    )
    if failure is None and not down:
        plural = "s" if len(accounts) != 1 else ""
        return f"{_PROG}: refreshed {len(accounts)} account{plural}, none failed"
    failed: list[str] = []
    if failure is not None:
        hint = f"; usually {failure.hint}" if failure.hint else ""
        failed.append(f"account discovery ({_one_line(str(failure))}{hint})")
    if down:
        listed = ", ".join(
            f"{_one_line(a.account_name or a.account_id)} "
            f"({_one_line(str(a.last_error) if a.last_error else 'failed')})"
            for a in down[:3]
        )
        more = f" and {len(down) - 3} more" if len(down) > 3 else ""
        failed.append(f"{len(down)} of {len(accounts)} accounts: {listed}{more}")
    line = f"{_PROG}: refresh failed: {'; '.join(failed)}"
    if demo:
        line += (
            " — on purpose: the demo's simulator refuses that account to show a token without "
            "the OAuth Client Read permission, so exit status 1 is expected"
        )
    return line


def _one_line(text: str, limit: int = 120) -> str:
    """API text on one terminal line: control characters escaped, long text cut."""
    printable = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return printable if len(printable) <= limit else printable[: limit - 1] + "…"


async def serve(settings: Settings, listener: socket.socket) -> None:
    async with demo_api(settings) as effective:
        service = ExporterService(effective)
        # The context was built (and its files checked) with the settings.
        ssl_context = effective.web_config.ssl_context
        accepting = Listener(
            listener, max_connections=settings.max_connections, ssl_context=ssl_context
        )
        config = uvicorn.Config(
            accepting.track(service.app),
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
            timeout_keep_alive=5,  # an idle keep-alive connection is closed after 5 s
            # No proxy in front is trusted: the client address is the peer's (basic auth's
            # flood protection ranks clients by it).
            proxy_headers=False,
        )
        config.load()
        config.ssl = ssl_context  # uvicorn's protocols read it for the scheme
        server = GuardedServer(config, accepting)
        loop = asyncio.get_running_loop()

        def shut_down(signum: int) -> None:
            log.info("shutting down", extra={"signal": signal.Signals(signum).name})
            server.should_exit = True

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, shut_down, signum)
        host, port = address_of(listener)
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if ssl_context is not None else "http"
        log.info(
            "listening",
            extra={
                "address": f"{shown}:{port}",
                "tls": effective.web_config.ssl_context is not None,
                "basic_auth": bool(effective.web_config.users),
                "telemetry_path": effective.telemetry_path,
                "version": __version__,
                "accounts": ",".join(settings.account_ids) or "discover",
            },
        )
        if settings.demo:
            where, local = _where(listener)
            base = f"{scheme}://{local}:{port}"
            print(
                f"demo: {where}; metrics at {base}{effective.telemetry_path}, status page at "
                f"{base}/ (simulated Cloudflare API at {effective.api_url}); Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
        await server.serve(sockets=[listener])


def _where(listener: socket.socket) -> tuple[str, str]:
    """Where the socket listens, said plainly, and a host that reaches it from this machine."""
    host, port = address_of(listener)
    if host == "0.0.0.0":
        return f"listening on every IPv4 interface, port {port}", "127.0.0.1"
    if host == "::":
        v6_only = listener.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        interfaces = "every IPv6 interface" if v6_only else "every interface"
        return f"listening on {interfaces}, port {port}", "[::1]" if v6_only else "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"listening on {shown}:{port}", shown


@contextlib.asynccontextmanager
async def demo_api(settings: Settings) -> AsyncIterator[Settings]:
    """With --demo, a simulated Cloudflare API on loopback in this event loop; else a no-op."""
    if not settings.demo:
        yield settings
        return
    from exporter import simulator  # noqa: PLC0415 - only the demo needs it

    sim_socket = bind_socket("127.0.0.1", 0)
    accounts = simulator.demo_accounts()
    api = simulator.Simulator(accounts)
    server = simulator.make_server(api)
    task = asyncio.create_task(server.serve(sockets=[sim_socket]))
    # "Acme Staging" lives: a client created, changed or deleted now and then, so the demo's
    # change counters, audit lines and status page have something to show.
    living = asyncio.create_task(simulator.change_now_and_then(api, accounts[1].id, every=20))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield dataclasses.replace(
            settings,
            api_url=simulator.url_of(sim_socket),
            auth=TokenAuth(Secret(simulator.DEFAULT_TOKEN)),
        )
    finally:
        living.cancel()
        server.should_exit = True
        await task
        sim_socket.close()
