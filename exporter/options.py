"""Every setting's flag, environment variable, default and parser, in one table.

A default is written once, as a user would type it, and goes through the same parser as any
given value, so the help text, the README and the running exporter cannot disagree. A parser
takes the text and where it came from (the flag or variable to name in an error) and returns a
typed value or raises ConfigError with the fix.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar
from urllib.parse import urlsplit

import httpx

from exporter.config_files import read_small_file
from exporter.credentials import Secret
from exporter.durations import DurationError, format_duration, parse_duration
from exporter.errors import ConfigError
from exporter.family_filter import compile_pattern
from exporter.ratelimit import RATE_WINDOW
from exporter.webconfig import WebConfig, load_web_config

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Parser = Callable[[str, str], T]
# value: takes one argument; list: repeatable flag, comma-separated variable; switch: a flag
# without an argument (its variable takes true/false).
Kind = Literal["value", "list", "switch"]

LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("logfmt", "json")
RESERVED_PATHS = ("/", "/healthz", "/readyz")
DEFAULT_PORT = 9878  # the exporter's own, so the instance label stays stable
ACCOUNT_ID = re.compile(r"[0-9a-f]{32}")
# A host name label (RFC 1123): letters, digits and inner hyphens (underscores too, which some
# internal names carry), 1 to 63 of them; a whole name at most 253 characters.
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")
_NUMBER = re.compile(r"[0-9]+")
MAX_SECRET_FILE_BYTES = 64 * 1024  # a token or key is ~40 characters; a bigger file is a mistake


@dataclass(frozen=True)
class Option(Generic[T_co]):
    """A setting with an environment variable and (usually) a flag."""

    flag: str | None
    env: str
    metavar: str
    help: str
    parse: Callable[[str, str], T_co]
    default: str | None = None
    kind: Kind = "value"

    @property
    def dest(self) -> str:
        """The argparse attribute: the variable's name, which every option has."""
        return self.env.lower()

    @property
    def source(self) -> str:
        """What an error names when the value came from nowhere (the default): the flag."""
        return self.flag or self.env

    def describe(self) -> str:
        default = f", default {self.default}" if self.default else ""
        return f"{self.help} (env {self.env}{default})"


# --- parsers -------------------------------------------------------------------------------


def listen_address(value: str, source: str) -> tuple[str, int]:
    """`host:port`, `:port` (every interface) or `[v6]:port`."""
    fix = (
        f"{source} {value!r}: expected HOST:PORT such as :{DEFAULT_PORT} or "
        f"127.0.0.1:{DEFAULT_PORT}"
    )
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not _PORT.fullmatch(port_text):
        raise ConfigError(fix)
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"{source} {value!r}: port {port} is above 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(fix) from None
    elif ":" in host:
        raise ConfigError(
            f"{source} {value!r}: write an IPv6 host in brackets, e.g. [::1]:{DEFAULT_PORT}"
        )
    elif host and (problem := host_name_problem(host)):
        raise ConfigError(f"{source} {value!r}: the host {problem}; {fix.partition(': ')[2]}")
    return host, port


def host_name_problem(host: str) -> str | None:
    """Why `host` (a name or an IPv4 address) cannot be a host name, or None if it can."""
    if not host:
        return "is missing"
    if len(host) > 253:
        return "is longer than 253 characters"
    for label in host.removesuffix(".").split("."):
        if not label:
            return "has an empty label (two dots in a row, or a leading dot)"
        if len(label) > 63:
            return f"has a label of {len(label)} characters, the most is 63"
        if not _HOST_LABEL.fullmatch(label):
            return f"label {label!r} holds a character a host name cannot have"
    return None


def telemetry_path(path: str, source: str) -> str:
    if (
        not path.startswith("/")
        or len(path) > 256
        or any(c in path for c in "?# ")
        or not (path.isascii() and path.isprintable())
    ):
        raise ConfigError(f"{source} {path!r}: give an absolute path such as /metrics")
    path = path.rstrip("/") or "/"
    if path in RESERVED_PATHS:
        raise ConfigError(
            f"{source} {path!r}: that path is taken by the exporter itself; use e.g. /metrics"
        )
    return path


def api_url(url: str, source: str) -> str:
    """`http(s)://host[:port][/path]`: refused here if anything would only fail at run time."""
    text = url.strip()
    fix = f"give an http(s) URL such as {API_URL.default}"
    if "@" in text.partition("//")[2].partition("/")[0]:
        # checked first, and the URL never echoed: it may hold a password
        raise ConfigError(f"{source}: do not put credentials in the URL; use CLOUDFLARE_API_TOKEN")
    if not text.isascii() or not text.isprintable() or " " in text:
        raise ConfigError(
            f"{source} {text!r}: holds a space, a control or a non-ASCII character; {fix}"
        )
    try:
        parts = urlsplit(text)
    except ValueError:  # unbalanced brackets, mostly
        raise ConfigError(f"{source} {text!r}: not a URL; {fix}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{source} {text!r}: {fix}")
    if "?" in text or "#" in text:
        raise ConfigError(f"{source} {text!r}: a base URL has no ?query or #fragment; {fix}")
    if parts.netloc.startswith("["):
        host, _, port_text = parts.netloc[1:].partition("]")
        port_text = port_text.removeprefix(":")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{source} {text!r}: [{host}] is not an IPv6 address") from None
    else:
        host, _, port_text = parts.netloc.partition(":")
        if problem := host_name_problem(host):
            raise ConfigError(f"{source} {text!r}: the host {problem}; {fix}")
        if _NUMBER.fullmatch(host.removesuffix(".").rpartition(".")[2]):
            # No top-level domain is a number: httpx (as browsers do) reads such a host as an
            # IPv4 address and refuses it on every request unless it is a valid one.
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ConfigError(
                    f"{source} {text!r}: the host is not an IPv4 address (four numbers from 0 to "
                    f"255, such as 127.0.0.1) nor a host name; {fix}"
                ) from None
    if port_text and (not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535):
        raise ConfigError(f"{source} {text!r}: the port must be a number from 1 to 65535")
    base = text.rstrip("/")
    try:
        # What the API client does with it on every request, done once here: a URL httpx
        # refuses would otherwise fail every refresh with a traceback.
        httpx.Request("GET", f"{base}/accounts?page=1")
    except (httpx.InvalidURL, ValueError, TypeError) as error:
        raise ConfigError(f"{source} {text!r}: not a URL ({_first_line(error)}); {fix}") from None
    return base


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:120] if text else type(error).__name__


def _items(raw: str, source: str, what: str, fix: str) -> list[str]:
    """The items of a comma-separated list (or of a repeated flag, joined with commas).

    An empty one is refused: `a,,b`, a comma at either end or an empty flag value is a typo or a
    template's leftover, and a list of nothing but empty items would silently mean "unset".
    """
    items = [item.strip() for item in raw.split(",")]
    if "" in items:
        raise ConfigError(
            f"{source} {raw!r}: an empty {what} (two commas in a row, a comma at either end, or "
            f"an empty value); {fix}"
        )
    return items


def account_ids(raw: str, source: str) -> tuple[str, ...]:
    ids: dict[str, None] = {}
    for item in _items(
        raw, source, "account id", "remove it, or leave it unset to export every account"
    ):
        candidate = item.lower()
        if not ACCOUNT_ID.fullmatch(candidate):
            raise ConfigError(
                f"{source} {item!r}: an account id is 32 hexadecimal characters "
                "(see the dashboard URL or GET /accounts); leave it unset to export every account"
            )
        ids[candidate] = None
    return tuple(ids)


def patterns(raw: str, source: str) -> tuple[str, ...]:
    found = tuple(
        _items(raw, source, "pattern", "remove it, or leave the list unset to filter nothing")
    )
    for pattern in found:
        compile_pattern(pattern, source)
    return found


def boolean(value: str, source: str) -> bool:
    word = value.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{source} {value!r}: use true or false")


def duration(*, minimum: float, maximum: float) -> Parser[float]:
    def parse(value: str, source: str) -> float:
        try:
            seconds = parse_duration(value)
        except DurationError:
            raise ConfigError(
                f"{source} {value!r}: not a duration; use e.g. 30s, 5m, 1h or plain seconds"
            ) from None
        if seconds < minimum:
            raise ConfigError(f"{source} {value!r}: must be at least {format_duration(minimum)}")
        if seconds > maximum:  # inf too: a huge number of seconds is a typo, not a schedule
            raise ConfigError(f"{source} {value!r}: must be at most {format_duration(maximum)}")
        return seconds

    return parse


def whole_number(value: str, source: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ConfigError(f"{source} {value!r}: give a whole number") from None


def integer(*, minimum: int, maximum: int) -> Parser[int]:
    def parse(value: str, source: str) -> int:
        number = whole_number(value, source)
        if not minimum <= number <= maximum:
            raise ConfigError(f"{source} {number}: must be between {minimum} and {maximum}")
        return number

    return parse


_SIZE = re.compile(r"\s*(\d+)\s*([KMGT]i?B|B)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}  # fmt: skip


def byte_size(*, minimum: int, maximum: int) -> Parser[int]:
    """Bytes: a whole number with an optional unit, e.g. 256MiB, 500MB, 1048576."""

    def parse(value: str, source: str) -> int:
        match = _SIZE.fullmatch(value)
        if match is None or len(value) > 32:
            raise ConfigError(f"{source} {value!r}: not a size; use e.g. 256MiB, 1GiB or 500MB")
        size = int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()]
        if not minimum <= size <= maximum:
            raise ConfigError(
                f"{source} {value!r}: must be between {minimum >> 10}KiB and {maximum >> 30}GiB"
            )
        return size

    return parse


def choice(choices: tuple[str, ...], aliases: Mapping[str, str] | None = None) -> Parser[str]:
    def parse(value: str, source: str) -> str:
        word = value.strip().lower()
        word = (aliases or {}).get(word, word)
        if word not in choices:
            raise ConfigError(f"{source} {value!r}: choose one of {', '.join(choices)}")
        return word

    return parse


def credential_problem(value: str) -> str | None:
    """Why `value` cannot be sent as a token, key or email header, or None if it can.

    The answer never quotes the value: it may be a secret.
    """
    for position, char in enumerate(value, 1):
        if char.isspace():
            return f"holds whitespace at character {position}"
        if not (char.isascii() and char.isprintable()):
            return f"holds a character that is not printable ASCII at character {position}"
    return None


def secret(value: str, source: str) -> Secret:
    if problem := credential_problem(value):
        raise ConfigError(f"{source}: the credential {problem}; copy it again without it")
    return Secret(value)


def email(value: str, source: str) -> str:
    local, at, domain = value.strip().rpartition("@")
    if problem := credential_problem(value.strip()):
        raise ConfigError(f"{source}: the email {problem}; give the account's email address")
    if not (local and at and domain):
        raise ConfigError(f"{source} {value!r}: not an email address; give the account's email")
    return value.strip()


def secret_file(path: str, source: str) -> Secret:
    value = read_small_file(path, source, MAX_SECRET_FILE_BYTES).strip()
    if not value:
        raise ConfigError(f"{source} {path!r}: the file is empty; write the credential into it")
    if problem := credential_problem(value):
        raise ConfigError(f"{source} {path!r}: the credential {problem}; fix the file")
    return Secret(value)


def web_config(path: str, source: str) -> WebConfig:
    return load_web_config(path, source)


# --- the table -----------------------------------------------------------------------------

LISTEN_ADDRESS = Option(
    "--web.listen-address", "EXPORTER_WEB_LISTEN_ADDRESS", "HOST:PORT", "address to serve on",
    listen_address, f":{DEFAULT_PORT}",
)  # fmt: skip
MAX_CONNECTIONS = Option(
    "--web.max-connections", "EXPORTER_WEB_MAX_CONNECTIONS", "N",
    "max open HTTP connections; past it the oldest connection still waiting for a request is "
    "closed, or a new one refused if none is", integer(minimum=1, maximum=100_000), "256",
)  # fmt: skip
TELEMETRY_PATH = Option(
    "--web.telemetry-path", "EXPORTER_WEB_TELEMETRY_PATH", "PATH", "path of the metrics",
    telemetry_path, "/metrics",
)  # fmt: skip
API_URL = Option(
    "--cloudflare.api-url", "CLOUDFLARE_API_URL", "URL", "Cloudflare API base URL",
    api_url, "https://api.cloudflare.com/client/v4",
)  # fmt: skip
ACCOUNT_IDS = Option(
    "--cloudflare.account-id", "CLOUDFLARE_ACCOUNT_IDS", "ID",
    "account to export, repeatable; env: comma-separated; unset: every account the credentials "
    "can list", account_ids, kind="list",
)  # fmt: skip
API_TOKEN = Option(None, "CLOUDFLARE_API_TOKEN", "", "API token", secret)
API_TOKEN_FILE = Option(
    "--cloudflare.api-token-file", "CLOUDFLARE_API_TOKEN_FILE", "FILE",
    "file holding the API token", secret_file,
)  # fmt: skip
API_EMAIL = Option(
    "--cloudflare.api-email", "CLOUDFLARE_API_EMAIL", "EMAIL",
    "email for the legacy Global API key", email,
)  # fmt: skip
API_KEY = Option(None, "CLOUDFLARE_API_KEY", "", "legacy Global API key", secret)
API_KEY_FILE = Option(
    "--cloudflare.api-key-file", "CLOUDFLARE_API_KEY_FILE", "FILE",
    "file holding the legacy Global API key", secret_file,
)  # fmt: skip
REFRESH_INTERVAL = Option(
    "--refresh.interval", "EXPORTER_REFRESH_INTERVAL", "DURATION",
    "how often to read every account, e.g. 30s, 5m, 1h", duration(minimum=1.0, maximum=86400.0),
    "5m",
)  # fmt: skip
CONCURRENCY = Option(
    "--cloudflare.concurrency", "CLOUDFLARE_CONCURRENCY", "N", "max API requests in flight",
    integer(minimum=1, maximum=64), "4",
)  # fmt: skip
RATE_LIMIT = Option(
    "--cloudflare.rate-limit", "CLOUDFLARE_RATE_LIMIT", "N",
    f"max API requests in any {format_duration(RATE_WINDOW)}, retries included; 0 = no "
    "client-side limit (Cloudflare allows 1200)", integer(minimum=0, maximum=1_000_000), "1000",
)  # fmt: skip
TIMEOUT = Option(
    "--cloudflare.timeout", "CLOUDFLARE_TIMEOUT", "DURATION", "timeout of one API request",
    duration(minimum=0.001, maximum=300.0), "10s",
)  # fmt: skip
PAGE_SIZE = Option(
    "--cloudflare.page-size", "CLOUDFLARE_PAGE_SIZE", "N", "OAuth clients asked for per page",
    integer(minimum=1, maximum=1000), "50",
)  # fmt: skip
MAX_RESPONSE_SIZE = Option(
    "--cloudflare.max-response-size", "CLOUDFLARE_MAX_RESPONSE_SIZE", "SIZE",
    "largest API answer read, counted after decompression, e.g. 256MiB; a larger one fails the "
    "account", byte_size(minimum=64 << 10, maximum=64 << 30), "256MiB",
)  # fmt: skip
MAX_CLIENTS_PER_ACCOUNT = Option(
    "--cloudflare.max-clients-per-account", "CLOUDFLARE_MAX_CLIENTS_PER_ACCOUNT", "N",
    "most distinct OAuth clients one account may list in a refresh; more fails the account",
    integer(minimum=1, maximum=100_000_000), "1000000",
)  # fmt: skip
SHARD = Option(
    "--shard", "EXPORTER_SHARD", "N",
    "this replica's shard, 0 to --total-shards - 1: it exports only the accounts that hash to it",
    whole_number, "0",  # its range depends on --total-shards: checked where both are known
)  # fmt: skip
TOTAL_SHARDS = Option(
    "--total-shards", "EXPORTER_TOTAL_SHARDS", "N",
    "number of replicas the accounts are split across", integer(minimum=1, maximum=1000), "1",
)  # fmt: skip
PER_CLIENT = Option(
    "--metrics.per-client", "EXPORTER_METRICS_PER_CLIENT", "",
    "also export one series set per OAuth client (client_info, timestamps, findings)",
    boolean, "false", kind="switch",
)  # fmt: skip
PER_CLIENT_LIMIT = Option(
    "--metrics.per-client-limit", "EXPORTER_METRICS_PER_CLIENT_LIMIT", "N",
    "max clients per account with per-client series; clients with findings first",
    integer(minimum=1, maximum=1_000_000), "5000",
)  # fmt: skip
ALLOWLIST = Option(
    "--metrics.allowlist", "EXPORTER_METRICS_ALLOWLIST", "REGEX",
    "export only metric families matching one of these comma-separated regexes", patterns,
    kind="list",
)  # fmt: skip
DENYLIST = Option(
    "--metrics.denylist", "EXPORTER_METRICS_DENYLIST", "REGEX",
    "leave out metric families matching one of these comma-separated regexes", patterns,
    kind="list",
)  # fmt: skip
WEB_CONFIG_FILE = Option(
    "--web.config.file", "EXPORTER_WEB_CONFIG_FILE", "FILE",
    "TLS and basic auth (exporter-toolkit format); /healthz and /readyz stay open", web_config,
)  # fmt: skip
LOG_LEVEL = Option(
    "--log.level", "EXPORTER_LOG_LEVEL", "LEVEL", "debug, info, warn or error",
    choice(LOG_LEVELS, {"warning": "warn"}), "info",
)  # fmt: skip
LOG_FORMAT = Option(
    "--log.format", "EXPORTER_LOG_FORMAT", "FORMAT", "logfmt or json", choice(LOG_FORMATS),
    "logfmt",
)  # fmt: skip

OPTIONS: tuple[Option[object], ...] = (
    LISTEN_ADDRESS, MAX_CONNECTIONS, TELEMETRY_PATH, API_URL, ACCOUNT_IDS, API_TOKEN,
    API_TOKEN_FILE, API_EMAIL, API_KEY, API_KEY_FILE, REFRESH_INTERVAL, CONCURRENCY, RATE_LIMIT,
    TIMEOUT, PAGE_SIZE, MAX_RESPONSE_SIZE, MAX_CLIENTS_PER_ACCOUNT, SHARD, TOTAL_SHARDS,
    PER_CLIENT, PER_CLIENT_LIMIT, ALLOWLIST, DENYLIST, WEB_CONFIG_FILE, LOG_LEVEL, LOG_FORMAT,
)  # fmt: skip
