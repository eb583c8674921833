"""Settings: one frozen object built from argv and an environ mapping, validated once.

A flag beats its environment variable, which beats the default. Every error names the flag or
variable that caused it and says how to fix it.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from exporter import __version__
from exporter.durations import DurationError, format_duration, parse_duration
from exporter.errors import ConfigError
from exporter.webconfig import WebConfig, load_web_config

__all__ = ["ConfigError", "Settings", "load_settings"]

DEFAULT_PORT = 9878
DEFAULT_LISTEN_ADDRESS = f":{DEFAULT_PORT}"
DEFAULT_API_URL = "https://api.cloudflare.com/client/v4"
DEFAULT_REFRESH_INTERVAL = "5m"
DEFAULT_CONCURRENCY = 4
DEFAULT_RATE_LIMIT = 1000
DEFAULT_TIMEOUT = "10s"
DEFAULT_PAGE_SIZE = 50
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("logfmt", "json")
RESERVED_PATHS = ("/", "/healthz", "/readyz")

_ACCOUNT_ID = re.compile(r"[0-9a-f]{32}")


class Secret:
    """A credential that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class TokenAuth:
    """`Authorization: Bearer <API token>`, the scheme Cloudflare recommends."""

    token: Secret


@dataclass(frozen=True)
class GlobalKeyAuth:
    """Legacy `X-Auth-Email` + `X-Auth-Key` (Global API key)."""

    email: str
    key: Secret


Auth = TokenAuth | GlobalKeyAuth


@dataclass(frozen=True)
class Settings:
    listen_host: str = ""
    listen_port: int = DEFAULT_PORT
    telemetry_path: str = "/metrics"
    api_url: str = DEFAULT_API_URL
    account_ids: tuple[str, ...] = ()
    auth: Auth | None = None
    refresh_interval: float = 300.0
    concurrency: int = DEFAULT_CONCURRENCY
    rate_limit: int = DEFAULT_RATE_LIMIT
    timeout: float = 10.0
    page_size: int = DEFAULT_PAGE_SIZE
    log_level: str = "info"
    log_format: str = "logfmt"
    shard: int = 0
    total_shards: int = 1
    per_client: bool = False
    per_client_limit: int = 5000
    allowlist: tuple[str, ...] = ()
    denylist: tuple[str, ...] = ()
    web_config: WebConfig = field(default_factory=WebConfig)
    demo: bool = False
    once: bool = False

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


@dataclass(frozen=True)
class Option:
    """A setting that has a flag (maybe) and an environment variable (always)."""

    dest: str
    flag: str | None
    env: str
    metavar: str
    help: str
    default: str | None = None

    def describe(self) -> str:
        default = f", default {self.default}" if self.default else ""
        return f"{self.help} (env {self.env}{default})"


OPTIONS = (
    Option("listen_address", "--web.listen-address", "EXPORTER_WEB_LISTEN_ADDRESS", "HOST:PORT",
           "address to serve on", DEFAULT_LISTEN_ADDRESS),
    Option("telemetry_path", "--web.telemetry-path", "EXPORTER_WEB_TELEMETRY_PATH", "PATH",
           "path of the metrics", "/metrics"),
    Option("api_url", "--cloudflare.api-url", "CLOUDFLARE_API_URL", "URL",
           "Cloudflare API base URL", DEFAULT_API_URL),
    Option("account_ids", "--cloudflare.account-id", "CLOUDFLARE_ACCOUNT_IDS", "ID",
           "account to export, repeatable; env: comma-separated; unset: every account the "
           "credentials can list"),
    Option("api_token", None, "CLOUDFLARE_API_TOKEN", "", "API token"),
    Option("api_token_file", "--cloudflare.api-token-file", "CLOUDFLARE_API_TOKEN_FILE", "FILE",
           "file holding the API token"),
    Option("api_email", "--cloudflare.api-email", "CLOUDFLARE_API_EMAIL", "EMAIL",
           "email for the legacy Global API key"),
    Option("api_key", None, "CLOUDFLARE_API_KEY", "", "legacy Global API key"),
    Option("api_key_file", "--cloudflare.api-key-file", "CLOUDFLARE_API_KEY_FILE", "FILE",
           "file holding the legacy Global API key"),
    Option("refresh_interval", "--refresh.interval", "EXPORTER_REFRESH_INTERVAL", "DURATION",
           "how often to read every account, e.g. 30s, 5m, 1h", DEFAULT_REFRESH_INTERVAL),
    Option("concurrency", "--cloudflare.concurrency", "CLOUDFLARE_CONCURRENCY", "N",
           "max API requests in flight", str(DEFAULT_CONCURRENCY)),
    Option("rate_limit", "--cloudflare.rate-limit", "CLOUDFLARE_RATE_LIMIT", "N",
           "max API requests in any 5 minutes, retries included; 0 = no client-side limit "
           "(Cloudflare allows 1200)", str(DEFAULT_RATE_LIMIT)),
    Option("timeout", "--cloudflare.timeout", "CLOUDFLARE_TIMEOUT", "DURATION",
           "timeout of one API request", DEFAULT_TIMEOUT),
    Option("page_size", "--cloudflare.page-size", "CLOUDFLARE_PAGE_SIZE", "N",
           "OAuth clients asked for per page", str(DEFAULT_PAGE_SIZE)),
    Option("shard", "--shard", "EXPORTER_SHARD", "N",
           "this replica's shard, 0 to --total-shards - 1: it exports only the accounts that hash "
           "to it", "0"),
    Option("total_shards", "--total-shards", "EXPORTER_TOTAL_SHARDS", "N",
           "number of replicas the accounts are split across", "1"),
    Option("per_client", "--metrics.per-client", "EXPORTER_METRICS_PER_CLIENT", "",
           "also export one series set per OAuth client (client_info, timestamps, findings)",
           "false"),
    Option("per_client_limit", "--metrics.per-client-limit", "EXPORTER_METRICS_PER_CLIENT_LIMIT",
           "N", "max clients per account with per-client series; clients with findings first",
           "5000"),
    Option("allowlist", "--metrics.allowlist", "EXPORTER_METRICS_ALLOWLIST", "REGEX",
           "export only metric families matching one of these comma-separated regexes"),
    Option("denylist", "--metrics.denylist", "EXPORTER_METRICS_DENYLIST", "REGEX",
           "leave out metric families matching one of these comma-separated regexes"),
    Option("web_config_file", "--web.config.file", "EXPORTER_WEB_CONFIG_FILE", "FILE",
           "TLS and basic auth (exporter-toolkit format); /healthz and /readyz stay open"),
    Option("log_level", "--log.level", "EXPORTER_LOG_LEVEL", "LEVEL",
           "debug, info, warn or error", "info"),
    Option("log_format", "--log.format", "EXPORTER_LOG_FORMAT", "FORMAT", "logfmt or json",
           "logfmt"),
)  # fmt: skip
_BY_DEST = {option.dest: option for option in OPTIONS}
_LISTS = frozenset({"account_ids", "allowlist", "denylist"})  # repeatable, comma-separated


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
        if option.dest == "per_client":
            parser.add_argument(
                option.flag, dest=option.dest, action="store_const", const="true",
                help=option.describe(),
            )  # fmt: skip
            continue
        parser.add_argument(
            option.flag,
            dest=option.dest,
            metavar=option.metavar,
            help=option.describe(),
            action="append" if option.dest in _LISTS else "store",
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
    """Looks a setting up in the flags, then the environment, and remembers which it was."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str]) -> None:
        self.args = args
        self.environ = environ

    def get(self, dest: str) -> tuple[str | None, str]:
        """The raw text and where it came from (the flag or variable to name in errors)."""
        option = _BY_DEST[dest]
        value = getattr(self.args, dest, None) if option.flag else None
        if value is not None:
            if isinstance(value, list):
                value = ",".join(value)
            return value, option.flag or option.env
        env_value = self.environ.get(option.env, "").strip()
        if env_value:
            return env_value, option.env
        return None, option.flag or option.env

    def text(self, dest: str) -> tuple[str, str]:
        value, source = self.get(dest)
        default = _BY_DEST[dest].default
        assert default is not None
        return (value if value is not None else default), source


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Parse and validate; raises ConfigError (argparse itself exits 2 on unknown flags)."""
    args = build_parser().parse_args(list(argv))
    resolve = _Resolver(args, environ)
    host, port = parse_listen_address(*resolve.text("listen_address"))
    total_shards = _integer(*resolve.text("total_shards"), minimum=1, maximum=1000)
    shard, shard_source = resolve.text("shard")
    allowlist = _patterns(*resolve.get("allowlist"))
    denylist = _patterns(*resolve.get("denylist"))
    if allowlist and denylist:
        raise ConfigError(
            "--metrics.allowlist and --metrics.denylist are both set: use one of them"
        )
    web_config, _ = resolve.get("web_config_file")
    return Settings(
        listen_host=host,
        listen_port=port,
        telemetry_path=_telemetry_path(*resolve.text("telemetry_path")),
        api_url=_api_url(*resolve.text("api_url")),
        account_ids=_account_ids(*resolve.get("account_ids")),
        auth=None if args.demo else _auth(resolve),
        refresh_interval=_duration(*resolve.text("refresh_interval"), minimum=1.0),
        concurrency=_integer(*resolve.text("concurrency"), minimum=1, maximum=64),
        rate_limit=_integer(*resolve.text("rate_limit"), minimum=0, maximum=1_000_000),
        timeout=_duration(*resolve.text("timeout"), minimum=0.001),
        page_size=_integer(*resolve.text("page_size"), minimum=1, maximum=1000),
        log_level=_choice(*resolve.text("log_level"), LOG_LEVELS, {"warning": "warn"}),
        log_format=_choice(*resolve.text("log_format"), LOG_FORMATS),
        shard=_integer(shard, shard_source, minimum=0, maximum=total_shards - 1),
        total_shards=total_shards,
        per_client=_boolean(*resolve.text("per_client")),
        per_client_limit=_integer(*resolve.text("per_client_limit"), minimum=1, maximum=1_000_000),
        allowlist=allowlist,
        denylist=denylist,
        web_config=load_web_config(web_config) if web_config else WebConfig(),
        demo=args.demo,
        once=args.once,
    )


def parse_listen_address(text: str, source: str) -> tuple[str, int]:
    """`host:port`, `:port` (every interface) or `[v6]:port`."""
    fix = (
        f"{source} {text!r}: expected HOST:PORT such as {DEFAULT_LISTEN_ADDRESS} or 127.0.0.1:9878"
    )
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(fix)
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"{source} {text!r}: port {port} is above 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(fix) from None
    elif ":" in host:
        raise ConfigError(f"{source} {text!r}: write an IPv6 host in brackets, e.g. [::1]:9878")
    return host, port


def _telemetry_path(path: str, source: str) -> str:
    if not path.startswith("/") or any(c in path for c in "?# \t\n"):
        raise ConfigError(f"{source} {path!r}: give an absolute path such as /metrics")
    path = path.rstrip("/") or "/"
    if path in RESERVED_PATHS:
        raise ConfigError(
            f"{source} {path!r}: that path is taken by the exporter itself; use e.g. /metrics"
        )
    return path


def _api_url(url: str, source: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{source} {url!r}: give an http(s) URL such as {DEFAULT_API_URL}")
    if parts.username or parts.password:
        raise ConfigError(f"{source}: do not put credentials in the URL; use CLOUDFLARE_API_TOKEN")
    return url.strip().rstrip("/")


def _account_ids(raw: str | None, source: str) -> tuple[str, ...]:
    ids: dict[str, None] = {}
    for item in (raw or "").split(","):
        candidate = item.strip().lower()
        if not candidate:
            continue
        if not _ACCOUNT_ID.fullmatch(candidate):
            raise ConfigError(
                f"{source} {item.strip()!r}: an account id is 32 hexadecimal characters "
                "(see the dashboard URL or GET /accounts); leave it unset to export every account"
            )
        ids[candidate] = None
    return tuple(ids)


def _patterns(raw: str | None, source: str) -> tuple[str, ...]:
    patterns = tuple(item.strip() for item in (raw or "").split(",") if item.strip())
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConfigError(
                f"{source} {pattern!r}: not a regular expression ({error}); fix the pattern"
            ) from None
    return patterns


def _boolean(text: str, source: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{source} {text!r}: use true or false")


def _duration(text: str, source: str, *, minimum: float) -> float:
    try:
        seconds = parse_duration(text)
    except DurationError:
        raise ConfigError(
            f"{source} {text!r}: not a duration; use e.g. 30s, 5m, 1h or plain seconds"
        ) from None
    if seconds < minimum:
        raise ConfigError(f"{source} {text!r}: must be at least {format_duration(minimum)}")
    return seconds


def _integer(text: str, source: str, *, minimum: int, maximum: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError(f"{source} {text!r}: give a whole number") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{source} {value}: must be between {minimum} and {maximum}")
    return value


def _choice(
    text: str, source: str, choices: tuple[str, ...], aliases: Mapping[str, str] | None = None
) -> str:
    value = text.strip().lower()
    value = (aliases or {}).get(value, value)
    if value not in choices:
        raise ConfigError(f"{source} {text!r}: choose one of {', '.join(choices)}")
    return value


def _read_secret_file(path: str, source: str) -> Secret:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"{source} {path!r}: cannot read it ({reason}); check the path") from None
    if not value:
        raise ConfigError(f"{source} {path!r}: the file is empty; write the credential into it")
    if any(c.isspace() for c in value):
        raise ConfigError(
            f"{source} {path!r}: holds whitespace inside the credential; fix the file"
        )
    return Secret(value)


def _auth(resolve: _Resolver) -> Auth:
    token, _ = resolve.get("api_token")
    token_file, token_file_source = resolve.get("api_token_file")
    email, email_source = resolve.get("api_email")
    key, _ = resolve.get("api_key")
    key_file, key_file_source = resolve.get("api_key_file")

    if token and token_file and token_file_source == "CLOUDFLARE_API_TOKEN_FILE":  # noqa: S105
        raise ConfigError(
            "CLOUDFLARE_API_TOKEN and CLOUDFLARE_API_TOKEN_FILE are both set: unset one of them"
        )
    if key and key_file and key_file_source == "CLOUDFLARE_API_KEY_FILE":
        raise ConfigError(
            "CLOUDFLARE_API_KEY and CLOUDFLARE_API_KEY_FILE are both set: unset one of them"
        )
    has_token = bool(token or token_file)
    has_key_part = bool(email or key or key_file)
    if has_token and has_key_part:
        raise ConfigError(
            "both an API token and a Global API key (CLOUDFLARE_API_EMAIL/CLOUDFLARE_API_KEY) are "
            "set: keep only the token (recommended) or only the email and key"
        )
    if token_file:
        return TokenAuth(_read_secret_file(token_file, token_file_source))
    if token:
        return TokenAuth(Secret(token))
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
        secret = _read_secret_file(key_file, key_file_source) if key_file else Secret(key or "")
        return GlobalKeyAuth(email=email, key=secret)
    raise ConfigError(
        "no Cloudflare credentials: set CLOUDFLARE_API_TOKEN (or CLOUDFLARE_API_TOKEN_FILE / "
        "--cloudflare.api-token-file) to a token with the 'OAuth Client Read' permission, "
        "or try --demo"
    )
