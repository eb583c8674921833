"""`--web.config.file`: TLS and basic auth for the HTTP endpoints, in the exporter-toolkit format.

    tls_server_config:
      cert_file: server.crt        # relative paths are relative to this file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      min_version: TLS12
    basic_auth_users:
      prometheus: $2y$10$...       # bcrypt, e.g. htpasswd -nBC 10 "" | tr -d ':\\n'

Everything is checked once at start: a file that cannot work stops the exporter with one line.
Every value's type is checked before it is used, so a list where a string belongs (say) is such a
line too, never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import bcrypt
import yaml

from exporter.config_files import read_small_file, regular_file
from exporter.errors import ConfigError

FLAG = "--web.config.file"
MAX_FILE_BYTES = 1024 * 1024
# bcrypt's cost is a power of two: 10 takes ~50 ms per check, 14 ~1 s, 31 days. Above 14 a scrape
# would time out waiting for its password check, so such a hash is refused at start.
MAX_BCRYPT_COST = 14
# [0-9], not \\d: \\d matches any Unicode digit, which int() reads but bcrypt does not.
_BCRYPT_HASH = re.compile(r"\$2[aby]\$([0-9][0-9])\$[./A-Za-z0-9]{53}")
# The format nests three levels deep. Composing YAML recurses once per level, so a file of ~1,000
# nested brackets (2 KB) would end in a RecursionError: deeper than this is refused instead.
MAX_NESTING = 20
_TLS_KEYS = frozenset(
    {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version"}
)
_TOP_KEYS = frozenset({"tls_server_config", "basic_auth_users"})
_MIN_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's RequestClientCert and RequireAnyClientCert accept certificates nobody verified; Python's
# TLS cannot, so they are refused rather than silently made stricter or looser.
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents nested deeper than MAX_NESTING."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise _TooDeep(event.start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


@dataclass(frozen=True)
class WebConfig:
    ssl_context: ssl.SSLContext | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)

    @cached_property
    def basic_auth(self) -> BasicAuth | None:
        return BasicAuth(self.users) if self.users else None


class BasicAuth:
    """Checks `Authorization: Basic` headers against bcrypt hashes.

    bcrypt is slow on purpose (tens of ms), so a credential that passed once is remembered by a
    SHA-256 of it: Prometheus sends the same one every scrape. The last 1000 that failed are
    remembered too, so repeating a wrong password costs no bcrypt either.
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._passed: set[bytes] = set()
        self._failed: dict[bytes, None] = {}  # oldest first
        self._failed_lock = threading.Lock()  # checks run on several threads
        # Checked against when the user is unknown, at the users' own cost, so a wrong user name
        # takes as long as a wrong password.
        cost = max((int(hashed[4:6]) for hashed in self._users.values()), default=10)
        self._decoy = bcrypt.hashpw(b"no such user", bcrypt.gensalt(rounds=cost))

    def remembered(self, header: str | None) -> bool | None:
        """True for a credential that passed before, False for a malformed header or one that
        failed before, else None (only `check` can tell, slowly)."""
        parsed = _credentials(header)
        if parsed is None:
            return False
        # Lookups that are atomic while `check` adds from a worker thread; the key is a SHA-256
        # over the bcrypt hash too, so its timing tells nothing about the password.
        fingerprint = self._fingerprint(*parsed)
        if fingerprint in self._passed:
            return True
        return False if fingerprint in self._failed else None

    def check(self, header: str | None) -> bool:
        parsed = _credentials(header)
        if parsed is None:
            return False
        user, password = parsed
        expected = self._users.get(user, self._decoy)
        try:
            ok = bcrypt.checkpw(password.encode(), expected) and user in self._users
        except ValueError:  # bcrypt refuses passwords over 72 bytes; so does Go's
            return False
        if ok and len(self._passed) < 1000:
            self._passed.add(self._fingerprint(user, password))
        elif not ok:
            with self._failed_lock:
                self._failed[self._fingerprint(user, password)] = None
                if len(self._failed) > 1000:
                    del self._failed[next(iter(self._failed))]
        return ok

    def _fingerprint(self, user: str, password: str) -> bytes:
        expected = self._users.get(user, self._decoy)
        return hashlib.sha256(b"\0".join((user.encode(), password.encode(), expected))).digest()


def _credentials(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def load_web_config(path: str, source: str = FLAG) -> WebConfig:
    """Read and check the file; raises ConfigError naming `source` (the flag or variable that
    gave the path), the key and the fix."""
    where = f"{source} {path!r}"
    text = read_small_file(path, source, MAX_FILE_BYTES)
    loader = _Loader(text)
    try:
        document = loader.get_single_data()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: not valid YAML{at}; fix the file") from None
    except _TooDeep as error:
        raise ConfigError(
            f"{where}: nested deeper than {MAX_NESTING} levels at line {error.line}; the format "
            "needs 3, fix the file"
        ) from None
    except RecursionError:  # only if called with most of the stack already in use
        raise ConfigError(f"{where}: nested too deeply; fix the file") from None
    finally:
        loader.dispose()
    if document is None:
        return WebConfig()
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: expected a mapping with tls_server_config/basic_auth_users")
    _no_unknown_keys(document, _TOP_KEYS, where)
    base = Path(path).resolve().parent
    context = None
    if document.get("tls_server_config") is not None:
        context = _tls_context(document["tls_server_config"], base, where)
    users = _users(document.get("basic_auth_users"), where)
    return WebConfig(ssl_context=context, users=users)


def _shown(value: object) -> str:
    """A value from the file for an error line: a scalar quoted (cut at 60 characters), a list
    or mapping only named (its repr could be huge: aliases make a small file a big structure)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | set):
        return "a list"
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:59] + "…"


def _no_unknown_keys(section: dict[object, object], known: frozenset[str], where: str) -> None:
    unknown = sorted(str(key) for key in section if key not in known)
    if unknown:
        raise ConfigError(
            f"{where}: unsupported key {_shown(unknown[0])}; supported: {', '.join(sorted(known))}"
        )


def _choice(
    section: dict[object, object], key: str, default: str, table: Mapping[str, object], where: str
) -> str:
    """The value of `key`, one of `table`'s names. The type first: a list or a mapping cannot
    even be looked up in a table."""
    value = section.get(key, default)
    if not isinstance(value, str):
        problem = f"is {_shown(value)}"
    elif value not in table:
        problem = f"{_shown(value)} is not supported"
    else:
        return value
    raise ConfigError(f"{where}: tls_server_config.{key} {problem}; use one of {', '.join(table)}")


def _tls_context(section: object, base: Path, where: str) -> ssl.SSLContext:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: tls_server_config must be a mapping")
    _no_unknown_keys(section, _TLS_KEYS, f"{where} tls_server_config")

    def file(key: str) -> str:
        value = section.get(key)
        if value is None or value == "":
            raise ConfigError(f"{where}: tls_server_config.{key} is required; give a PEM file")
        if not isinstance(value, str):
            raise ConfigError(
                f"{where}: tls_server_config.{key} is {_shown(value)}; give the path of a PEM file"
            )
        resolved = regular_file(value, f"{where}: tls_server_config.{key}", base)
        return str(resolved)

    version = _choice(section, "min_version", "TLS12", _MIN_VERSIONS, where)
    auth = _choice(section, "client_auth_type", "NoClientCert", _CLIENT_AUTH, where)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MIN_VERSIONS[version]
    cert_file, key_file = file("cert_file"), file("key_file")
    asked: list[bool] = []

    def no_passphrase() -> bytes:
        # Without a callback OpenSSL asks for the passphrase of an encrypted key on the
        # terminal, and waits; exporter-toolkit takes no passphrase either.
        asked.append(True)
        return b""

    try:
        context.load_cert_chain(cert_file, key_file, password=no_passphrase)
    except (ssl.SSLError, OSError) as error:
        if asked:
            raise ConfigError(
                f"{where}: tls_server_config.key_file is encrypted; give an unencrypted key "
                "(e.g. openssl pkey -in KEY -out KEY.plain)"
            ) from None
        raise ConfigError(
            f"{where}: cannot use cert_file and key_file ({error.strerror or error}); check that "
            "they are PEM and that the key matches the certificate"
        ) from None
    context.verify_mode = _CLIENT_AUTH[auth]
    if context.verify_mode != ssl.CERT_NONE:
        ca_file = file("client_ca_file")
        try:
            context.load_verify_locations(cafile=ca_file)
        except (ssl.SSLError, OSError) as error:
            raise ConfigError(
                f"{where}: cannot use tls_server_config.client_ca_file ({error.strerror or error})"
            ) from None
    return context


def _users(section: object, where: str) -> dict[str, bytes]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: basic_auth_users must map user names to bcrypt hashes")
    users: dict[str, bytes] = {}
    for user, hashed in section.items():
        if problem := user_name_problem(user):
            raise ConfigError(
                f"{where}: basic_auth_users has an invalid user name {_shown(user)}: {problem}"
            )
        fix = "make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"
        # Checked by its shape, not by bcrypt: checking costs 2^cost rounds, hours at cost 31.
        match = _BCRYPT_HASH.fullmatch(hashed) if isinstance(hashed, str) else None
        if match is None:
            raise ConfigError(f"{where}: basic_auth_users.{user} is not a bcrypt hash; {fix}")
        cost = int(match.group(1))
        if not 4 <= cost <= MAX_BCRYPT_COST:
            raise ConfigError(
                f"{where}: basic_auth_users.{user} has bcrypt cost {cost}; use 4 to "
                f"{MAX_BCRYPT_COST} (10 is usual: each check takes 2^cost rounds); {fix}"
            )
        users[user] = hashed.encode()
    return users


def user_name_problem(user: object) -> str | None:
    """Why `user` cannot be a basic-auth user name, or None if it can.

    A user name travels in the Authorization header, base64 of `user:password`: it cannot hold a
    colon. It is kept to printable ASCII (spaces included): a control character is a typo in the
    file, and a non-ASCII name depends on the client's encoding and Unicode normalization (é
    typed as one character or two), so it would fail to match without a word.
    """
    if not isinstance(user, str):
        return "it is not text; put it in quotes"
    if not user:
        return "it is empty"
    for position, char in enumerate(user, 1):
        if char == ":":
            return f"character {position} is ':', which basic auth cannot send; remove it"
        if not (char.isascii() and char.isprintable()):
            return (
                f"character {position} is not printable ASCII; use letters, digits, punctuation "
                "and spaces"
            )
    return None
