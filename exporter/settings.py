"""Settings: one frozen object built from argv and an environ mapping, validated once.

A flag beats its environment variable, which beats the default (`exporter.options` holds them
all). Every error names the flag or variable that caused it and says how to fix it.
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from exporter import __version__, options
from exporter.credentials import Auth, GlobalKeyAuth, TokenAuth
from exporter.errors import ConfigError
from exporter.options import OPTIONS, Option
from exporter.webconfig import WebConfig

__all__ = ["ConfigError", "Settings", "build_parser", "load_settings"]

T = TypeVar("T")
DEMO_REFRESH_INTERVAL = "30s"  # --demo's default --refresh.interval


@dataclass(frozen=True)
class Settings:
    listen_host: str
    listen_port: int
    max_connections: int
    telemetry_path: str
    api_url: str
    account_ids: tuple[str, ...]
    auth: Auth | None
    refresh_interval: float
    concurrency: int
    rate_limit: int
    timeout: float
    page_size: int
    max_response_size: int
    max_clients_per_account: int
    log_level: str
    log_format: str
    shard: int
    total_shards: int
    per_client: bool
    per_client_limit: int
    allowlist: tuple[str, ...]
    denylist: tuple[str, ...]
    web_config: WebConfig
    demo: bool
    once: bool

    def keeps(self, family: str) -> bool:
        """Whether --metrics.allowlist/--metrics.denylist let a metric family through."""
        if self.allowlist:
            return any(re.fullmatch(pattern, family) for pattern in self.allowlist)
        return not any(re.fullmatch(pattern, family) for pattern in self.denylist)

    @property
    def discovers_accounts(self) -> bool:
        return not self.account_ids

    @property
    def listen_address(self) -> str:
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"{host}:{self.listen_port}"


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one ConfigError line instead of the usage and an exit."""

    def error(self, message: str) -> NoReturn:
        if message.endswith("expected one argument"):  # also for a value such as -5s
            message += " (write a value that starts with - as --flag=value)"
        elif "ignored explicit argument" in message:  # --demo=yes
            flag = message.removeprefix("argument ").partition(":")[0]
            message += f" ({flag} takes no value: write {flag} alone)"
        raise ConfigError(f"{message}; see --help")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cloudflare-oauth-exporter",
        description=(
            "Export counts of the OAuth clients of Cloudflare accounts to Prometheus. "
            "Credentials come from the environment: CLOUDFLARE_API_TOKEN (or "
            "CLOUDFLARE_API_TOKEN_FILE), or CLOUDFLARE_API_EMAIL with CLOUDFLARE_API_KEY "
            "(or CLOUDFLARE_API_KEY_FILE). Every flag also has an environment variable; "
            "the flag wins."
        ),
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    for option in OPTIONS:
        if option.flag is None:
            continue
        if option.kind == "switch":
            parser.add_argument(
                option.flag, dest=option.dest, action="store_const", const="true",
                help=option.describe(),
            )  # fmt: skip
        else:
            parser.add_argument(
                option.flag,
                dest=option.dest,
                metavar=option.metavar,
                help=option.describe(),
                action="append" if option.kind == "list" else "store",
            )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run against a built-in Cloudflare API simulator: no credentials, no network",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="refresh once, print the metrics to stdout and exit (1 if any account failed)",
    )
    return parser


class _Resolver:
    """Looks a setting up in the flags, then the environment, then its default."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str]) -> None:
        self.args = args
        self.environ = environ

    def raw(self, option: Option[T]) -> tuple[str | None, str]:
        """The text given, if any, and where it came from (the flag or variable to name)."""
        value = getattr(self.args, option.dest, None) if option.flag else None
        if value is not None:
            return (",".join(value) if isinstance(value, list) else value), option.source
        env_value = self.environ.get(option.env, "").strip()
        if env_value:
            return env_value, option.env
        return None, option.source

    def given(self, option: Option[T]) -> T | None:
        """The parsed value if the flag or variable is set, else None (defaults ignored)."""
        value, source = self.raw(option)
        return None if value is None else option.parse(value, source)

    def value(self, option: Option[T], default: str | None = None) -> T:
        """The parsed value, or the parsed default (`default` instead of the option's own)."""
        value, source = self.raw(option)
        if value is None:
            value = default or option.default
            if value is None:
                raise AssertionError(f"{option.env} has no default")
        return option.parse(value, source)

    def source(self, option: Option[T]) -> str:
        return self.raw(option)[1]


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Parse and validate; raises ConfigError, one line naming the flag or variable and the fix.

    (`--help` and `--version` print and exit 0, as argparse does.)
    """
    parser = build_parser()
    args, unknown = parser.parse_known_args(list(argv))
    if unknown:
        raise ConfigError(_unknown_argument(parser, unknown[0]))
    resolve = _Resolver(args, environ)
    host, port = resolve.value(options.LISTEN_ADDRESS)
    total_shards = resolve.value(options.TOTAL_SHARDS)
    shard = resolve.value(options.SHARD)
    if not 0 <= shard < total_shards:
        raise ConfigError(
            f"{resolve.source(options.SHARD)} {shard}: must be between 0 and {total_shards - 1}"
        )
    allowlist = resolve.given(options.ALLOWLIST) or ()
    denylist = resolve.given(options.DENYLIST) or ()
    if allowlist and denylist:
        raise ConfigError(
            "--metrics.allowlist and --metrics.denylist are both set: use one of them"
        )
    return Settings(
        listen_host=host,
        listen_port=port,
        max_connections=resolve.value(options.MAX_CONNECTIONS),
        telemetry_path=resolve.value(options.TELEMETRY_PATH),
        api_url=resolve.value(options.API_URL),
        account_ids=resolve.given(options.ACCOUNT_IDS) or (),
        auth=None if args.demo else _auth(resolve),
        # The demo's accounts change now and then: refreshing often shows it happen.
        refresh_interval=resolve.value(
            options.REFRESH_INTERVAL, DEMO_REFRESH_INTERVAL if args.demo else None
        ),
        concurrency=resolve.value(options.CONCURRENCY),
        rate_limit=resolve.value(options.RATE_LIMIT),
        timeout=resolve.value(options.TIMEOUT),
        page_size=resolve.value(options.PAGE_SIZE),
        max_response_size=resolve.value(options.MAX_RESPONSE_SIZE),
        max_clients_per_account=resolve.value(options.MAX_CLIENTS_PER_ACCOUNT),
        log_level=resolve.value(options.LOG_LEVEL),
        log_format=resolve.value(options.LOG_FORMAT),
        shard=shard,
        total_shards=total_shards,
        per_client=resolve.value(options.PER_CLIENT),
        per_client_limit=resolve.value(options.PER_CLIENT_LIMIT),
        allowlist=allowlist,
        denylist=denylist,
        web_config=resolve.given(options.WEB_CONFIG_FILE) or WebConfig(),
        demo=args.demo,
        once=args.once,
    )


def _unknown_argument(parser: argparse.ArgumentParser, argument: str) -> str:
    if not argument.startswith("-"):
        return (
            f"unexpected argument {argument!r}: every setting is a flag followed by its value, "
            "e.g. --refresh.interval 5m; see --help"
        )
    flag = argument.partition("=")[0]
    known = [name for action in parser._actions for name in action.option_strings]
    close = difflib.get_close_matches(flag, known, n=1, cutoff=0.7)
    word = flag.lstrip("-")
    if not close and len(word) >= 3:  # a part of a flag: --listen, --api-url
        close = [name for name in known if word in name][:2]
    hint = f"; did you mean {close[0]}?" if len(close) == 1 else ""
    return f"unknown flag {flag}{hint} (see --help)"


def _auth(resolve: _Resolver) -> Auth:
    token, _ = resolve.raw(options.API_TOKEN)
    token_file, token_file_source = resolve.raw(options.API_TOKEN_FILE)
    email, email_source = resolve.raw(options.API_EMAIL)
    key, _ = resolve.raw(options.API_KEY)
    key_file, key_file_source = resolve.raw(options.API_KEY_FILE)

    if token and token_file and token_file_source == options.API_TOKEN_FILE.env:
        raise ConfigError(
            "CLOUDFLARE_API_TOKEN and CLOUDFLARE_API_TOKEN_FILE are both set: unset one of them"
        )
    if key and key_file and key_file_source == options.API_KEY_FILE.env:
        raise ConfigError(
            "CLOUDFLARE_API_KEY and CLOUDFLARE_API_KEY_FILE are both set: unset one of them"
        )
    has_token = bool(token or token_file)
    has_key_part = bool(email or key or key_file)
    if has_token and has_key_part:
        # Named exactly as given: an email left over next to a token is not a Global API key.
        token_names = [options.API_TOKEN.env] if token else []
        token_names += [token_file_source] if token_file else []
        key_names = [email_source] if email else []
        key_names += [options.API_KEY.env] if key else []
        key_names += [key_file_source] if key_file else []
        given = f"an API token ({' and '.join(token_names)})"
        if key or key_file:
            raise ConfigError(
                f"both {given} and a Global API key ({'/'.join(key_names)}) are set: keep only "
                "the token (recommended) or only the email and key"
            )
        raise ConfigError(
            f"{given} and {email_source} are both set, but the email is only used with a Global "
            f"API key: unset {email_source} (or unset the token and set CLOUDFLARE_API_KEY too)"
        )
    if token_file:
        return TokenAuth(options.secret_file(token_file, token_file_source))
    if token:
        return TokenAuth(options.API_TOKEN.parse(token, options.API_TOKEN.env))
    if has_key_part:
        if not email:
            raise ConfigError(
                "CLOUDFLARE_API_KEY is set but CLOUDFLARE_API_EMAIL is not: the Global API key "
                "needs the account email too (or use CLOUDFLARE_API_TOKEN instead)"
            )
        if not (key or key_file):
            raise ConfigError(
                f"{email_source} is set but CLOUDFLARE_API_KEY is not: set the Global API key "
                "(CLOUDFLARE_API_KEY or CLOUDFLARE_API_KEY_FILE), or use CLOUDFLARE_API_TOKEN"
            )
        secret = (
            options.secret_file(key_file, key_file_source)
            if key_file
            else options.API_KEY.parse(key or "", options.API_KEY.env)
        )
        return GlobalKeyAuth(email=options.API_EMAIL.parse(email, email_source), key=secret)
    raise ConfigError(
        "no Cloudflare credentials: set CLOUDFLARE_API_TOKEN (or CLOUDFLARE_API_TOKEN_FILE / "
        "--cloudflare.api-token-file) to a token with the 'OAuth Client Read' permission, "
        "or try --demo"
    )
