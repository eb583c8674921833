"""Every flag and variable, given a malformed value: exit 2 and one line naming it and the fix.

The table is the specification: each row is a value someone could type and the exact line the
exporter answers. It runs `cli.main` in this process (what the console script runs), so it is
fast; tests/test_cli.py checks a few of the same as a real process, traceback-free.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from exporter.cli import EXIT_CONFIG, main
from exporter.options import OPTIONS, Option
from exporter.settings import ConfigError, load_settings

TOKEN = {"CLOUDFLARE_API_TOKEN": "tok-1234567890abcdef"}  # a made-up credential
KEY = "k" * 37
PREFIX = "cloudflare-oauth-exporter: "
SPEC = "expected HOST:PORT such as :9878 or 127.0.0.1:9878"
URL_FIX = "give an http(s) URL such as https://api.cloudflare.com/client/v4"
ACCOUNT_FIX = (
    "an account id is 32 hexadecimal characters (see the dashboard URL or GET /accounts); "
    "leave it unset to export every account"
)
A64 = "a" * 64
LONG_HOST = ".".join(["a" * 60] * 5)  # labels of 60, 304 characters in all
NOT_IPV4 = "is not an IPv4 address (four numbers from 0 to 255, such as 127.0.0.1) nor a host name"
EMPTY_ITEM = "(two commas in a row, a comma at either end, or an empty value)"
EMPTY_ACCOUNT_FIX = "remove it, or leave it unset to export every account"
EMPTY_PATTERN_FIX = "remove it, or leave the list unset to filter nothing"
HASH_31 = "$2b$31$" + "x" * 53
HASH_10 = "$2b$10$" + "x" * 53  # the shape of a bcrypt hash


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """Malformed files: empty, spaced, not UTF-8, too big, a FIFO (opening one waits forever)."""
    made = {
        "empty": b"\n",
        "spaced": b"two words\n",
        "latin1": b"caf\xe9",
        "big": b"a" * (64 * 1024 + 1),
        "yaml": b": : :",
        "cost31": f"basic_auth_users:\n  prometheus: {HASH_31}\n".encode(),
        "cost3": b"basic_auth_users:\n  prometheus: $2b$03$" + b"x" * 53 + b"\n",
        # web configs of the wrong shape: nested 1,000 deep (2 KB), a list, number or mapping
        # where a string belongs and the other way round, user names HTTP cannot carry
        "deep": b"a: " + b"[" * 1000 + b"]" * 1000 + b"\n",
        "min_list": b"tls_server_config:\n  min_version: [1]\n",
        "max_list": b"tls_server_config:\n  max_version: [1]\n",
        "auth_list": b"tls_server_config:\n  client_auth_type: [1]\n",
        "auth_map": b"tls_server_config:\n  client_auth_type: {a: b}\n",
        "cert_list": b"tls_server_config:\n  cert_file: [a]\n  key_file: k\n",
        "key_number": b"tls_server_config:\n  cert_file: /etc/hostname\n  key_file: 5\n",
        "cert_nul": b'tls_server_config:\n  cert_file: "a\\0b"\n',
        "cert_long": b"tls_server_config:\n  cert_file: " + b"c" * 5000 + b"\n",
        "tls_text": b"tls_server_config: on\n",
        "users_5": b"basic_auth_users: 5\n",
        "users_list": b"basic_auth_users: [prometheus]\n",
        "user_newline": f'basic_auth_users:\n  "prom\\netheus": {HASH_10}\n'.encode(),
        "user_utf8": f"basic_auth_users:\n  prom\u00e9theus: {HASH_10}\n".encode(),
        "user_number": f"basic_auth_users:\n  123: {HASH_10}\n".encode(),
        "user_colon": f'basic_auth_users:\n  "prom:etheus": {HASH_10}\n'.encode(),
        "hash_list": b"basic_auth_users:\n  prometheus: [a]\n",
        "hash_digits": f"basic_auth_users:\n  prometheus: $2b$\u0661\u0660${'x' * 53}\n".encode(),
    }
    for name, content in made.items():
        (tmp_path / name).write_bytes(content)
    os.mkfifo(tmp_path / "fifo")
    return {name: str(tmp_path / name) for name in [*made, "fifo"]} | {"dir": str(tmp_path)}


# (argv, environ, the line after "cloudflare-oauth-exporter: "); <name> is a file from `files`.
CATASTROPHIC = r"(\w*)*x"  # refused only once the real 1 s timer has gone off
CASES: list[tuple[list[str], dict[str, str], str]] = [
    # --web.listen-address / EXPORTER_WEB_LISTEN_ADDRESS
    (["--web.listen-address", "9878"], TOKEN, f"--web.listen-address '9878': {SPEC}"),
    (["--web.listen-address", ":99999"], TOKEN,
     "--web.listen-address ':99999': port 99999 is above 65535"),
    (["--web.listen-address", ":-1"], TOKEN, f"--web.listen-address ':-1': {SPEC}"),
    (["--web.listen-address", "::1:80"], TOKEN,
     "--web.listen-address '::1:80': write an IPv6 host in brackets, e.g. [::1]:9878"),
    (["--web.listen-address", "[::zz]:80"], TOKEN, f"--web.listen-address '[::zz]:80': {SPEC}"),
    (["--web.listen-address", f"{A64}.example:80"], TOKEN,
     f"--web.listen-address '{A64}.example:80': the host has a label of 64 characters, the "
     f"most is 63; {SPEC}"),
    ([], {**TOKEN, "EXPORTER_WEB_LISTEN_ADDRESS": "a..b:80"},
     "EXPORTER_WEB_LISTEN_ADDRESS 'a..b:80': the host has an empty label (two dots in a row, or "
     f"a leading dot); {SPEC}"),
    (["--web.listen-address", "bad!host:80"], TOKEN,
     "--web.listen-address 'bad!host:80': the host label 'bad!host' holds a character a host "
     f"name cannot have; {SPEC}"),
    # --web.telemetry-path / EXPORTER_WEB_TELEMETRY_PATH
    (["--web.telemetry-path", "metrics"], TOKEN,
     "--web.telemetry-path 'metrics': give an absolute path such as /metrics"),
    ([], {**TOKEN, "EXPORTER_WEB_TELEMETRY_PATH": "/m\u00e9trics"},
     "EXPORTER_WEB_TELEMETRY_PATH '/m\u00e9trics': give an absolute path such as /metrics"),
    (["--web.telemetry-path", "/healthz"], TOKEN,
     "--web.telemetry-path '/healthz': that path is taken by the exporter itself; use e.g. "
     "/metrics"),
    # --web.max-connections / EXPORTER_WEB_MAX_CONNECTIONS
    (["--web.max-connections", "0"], TOKEN,
     "--web.max-connections 0: must be between 1 and 100000"),
    ([], {**TOKEN, "EXPORTER_WEB_MAX_CONNECTIONS": "lots"},
     "EXPORTER_WEB_MAX_CONNECTIONS 'lots': give a whole number"),
    # --web.config.file / EXPORTER_WEB_CONFIG_FILE
    (["--web.config.file", "/nonexistent/web.yml"], TOKEN,
     "--web.config.file '/nonexistent/web.yml': cannot read it (No such file or directory); "
     "check the path"),
    (["--web.config.file", "<fifo>"], TOKEN,
     "--web.config.file '<fifo>': not a regular file; give the file's path"),
    ([], {**TOKEN, "EXPORTER_WEB_CONFIG_FILE": "<yaml>"},
     "EXPORTER_WEB_CONFIG_FILE '<yaml>': not valid YAML at line 1; fix the file"),
    (["--web.config.file", "<cost31>"], TOKEN,
     "--web.config.file '<cost31>': basic_auth_users.prometheus has bcrypt cost 31; use 4 to 14 "
     "(10 is usual: each check takes 2^cost rounds); make one with: htpasswd -nBC 10 \"\" | "
     "tr -d ':\\n'"),
    (["--web.config.file", "<cost3>"], TOKEN,
     "--web.config.file '<cost3>': basic_auth_users.prometheus has bcrypt cost 3; use 4 to 14 "
     "(10 is usual: each check takes 2^cost rounds); make one with: htpasswd -nBC 10 \"\" | "
     "tr -d ':\\n'"),
    (["--web.config.file", "<deep>"], TOKEN,
     "--web.config.file '<deep>': nested deeper than 20 levels at line 1; the format needs 3, fix "
     "the file"),
    ([], {**TOKEN, "EXPORTER_WEB_CONFIG_FILE": "<deep>"},
     "EXPORTER_WEB_CONFIG_FILE '<deep>': nested deeper than 20 levels at line 1; the format "
     "needs 3, fix the file"),
    (["--web.config.file", "<min_list>"], TOKEN,
     "--web.config.file '<min_list>': tls_server_config.min_version is a list; use one of TLS10, "
     "TLS11, TLS12, TLS13"),
    (["--web.config.file", "<max_list>"], TOKEN,
     "--web.config.file '<max_list>' tls_server_config: unsupported key 'max_version'; "
     "supported: cert_file, client_auth_type, client_ca_file, key_file, min_version"),
    (["--web.config.file", "<auth_list>"], TOKEN,
     "--web.config.file '<auth_list>': tls_server_config.client_auth_type is a list; use one of "
     "NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
    (["--web.config.file", "<auth_map>"], TOKEN,
     "--web.config.file '<auth_map>': tls_server_config.client_auth_type is a mapping; use one "
     "of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
    (["--web.config.file", "<cert_list>"], TOKEN,
     "--web.config.file '<cert_list>': tls_server_config.cert_file is a list; give the path of a "
     "PEM file"),
    (["--web.config.file", "<key_number>"], TOKEN,
     "--web.config.file '<key_number>': tls_server_config.key_file is 5; give the path of a PEM "
     "file"),
    (["--web.config.file", "<cert_nul>"], TOKEN,
     "--web.config.file '<cert_nul>': tls_server_config.cert_file 'a\\x00b': a path cannot hold "
     "a NUL character"),
    (["--web.config.file", "<cert_long>"], TOKEN,
     f"--web.config.file '<cert_long>': tls_server_config.cert_file '{'c' * 298}…: cannot read it "
     "(File name too long); check the path"),
    (["--web.config.file", "<tls_text>"], TOKEN,
     "--web.config.file '<tls_text>': tls_server_config must be a mapping"),
    (["--web.config.file", "<users_5>"], TOKEN,
     "--web.config.file '<users_5>': basic_auth_users must map user names to bcrypt hashes"),
    (["--web.config.file", "<users_list>"], TOKEN,
     "--web.config.file '<users_list>': basic_auth_users must map user names to bcrypt hashes"),
    (["--web.config.file", "<user_newline>"], TOKEN,
     "--web.config.file '<user_newline>': basic_auth_users has an invalid user name "
     "'prom\\netheus': character 5 is not printable ASCII; use letters, digits, punctuation and "
     "spaces"),
    (["--web.config.file", "<user_utf8>"], TOKEN,
     "--web.config.file '<user_utf8>': basic_auth_users has an invalid user name "
     "'prom\u00e9theus': character 5 is not printable ASCII; use letters, digits, punctuation "
     "and spaces"),
    (["--web.config.file", "<user_number>"], TOKEN,
     "--web.config.file '<user_number>': basic_auth_users has an invalid user name 123: it is "
     "not text; put it in quotes"),
    (["--web.config.file", "<user_colon>"], TOKEN,
     "--web.config.file '<user_colon>': basic_auth_users has an invalid user name "
     "'prom:etheus': character 5 is ':', which basic auth cannot send; remove it"),
    (["--web.config.file", "<hash_list>"], TOKEN,
     "--web.config.file '<hash_list>': basic_auth_users.prometheus is not a bcrypt hash; make "
     "one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"),
    (["--web.config.file", "<hash_digits>"], TOKEN,
     "--web.config.file '<hash_digits>': basic_auth_users.prometheus is not a bcrypt hash; make "
     "one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"),
    # --cloudflare.api-url / CLOUDFLARE_API_URL
    (["--cloudflare.api-url", "api.cloudflare.com"], TOKEN,
     f"--cloudflare.api-url 'api.cloudflare.com': {URL_FIX}"),
    (["--cloudflare.api-url", "http://[::1"], TOKEN,
     f"--cloudflare.api-url 'http://[::1': not a URL; {URL_FIX}"),
    ([], {**TOKEN, "CLOUDFLARE_API_URL": "http://[::1"},
     f"CLOUDFLARE_API_URL 'http://[::1': not a URL; {URL_FIX}"),
    (["--cloudflare.api-url", "https://[::zz]/v4"], TOKEN,
     f"--cloudflare.api-url 'https://[::zz]/v4': not a URL; {URL_FIX}"),
    (["--cloudflare.api-url", "https://api.example.com:99999/v4"], TOKEN,
     "--cloudflare.api-url 'https://api.example.com:99999/v4': the port must be a number from 1 "
     "to 65535"),
    (["--cloudflare.api-url", "https://api.example.com:0/v4"], TOKEN,
     "--cloudflare.api-url 'https://api.example.com:0/v4': the port must be a number from 1 to "
     "65535"),
    (["--cloudflare.api-url", "https://api.example.com/v4?query#fragment"], TOKEN,
     "--cloudflare.api-url 'https://api.example.com/v4?query#fragment': a base URL has no "
     f"?query or #fragment; {URL_FIX}"),
    (["--cloudflare.api-url", "https://user:secret@api.example.com"], TOKEN,
     "--cloudflare.api-url: do not put credentials in the URL; use CLOUDFLARE_API_TOKEN"),
    (["--cloudflare.api-url", "ftp://api.example.com"], TOKEN,
     f"--cloudflare.api-url 'ftp://api.example.com': {URL_FIX}"),
    (["--cloudflare.api-url", "https://a..b/v4"], TOKEN,
     "--cloudflare.api-url 'https://a..b/v4': the host has an empty label (two dots in a row, or "
     f"a leading dot); {URL_FIX}"),
    (["--cloudflare.api-url", f"https://{A64}.com"], TOKEN,
     f"--cloudflare.api-url 'https://{A64}.com': the host has a label of 64 characters, the "
     f"most is 63; {URL_FIX}"),
    (["--cloudflare.api-url", "https://api.example.com/ v4"], TOKEN,
     "--cloudflare.api-url 'https://api.example.com/ v4': holds a space, a control or a "
     f"non-ASCII character; {URL_FIX}"),
    (["--cloudflare.api-url", "http://:80/v4"], TOKEN,
     f"--cloudflare.api-url 'http://:80/v4': the host is missing; {URL_FIX}"),
    # a host httpx refuses on every request is refused at start: an IPv4-looking host that is
    # not one (no top-level domain is a number), an IDNA label that does not decode
    (["--cloudflare.api-url", "http://999.1.1.1:1/v4"], TOKEN,
     f"--cloudflare.api-url 'http://999.1.1.1:1/v4': the host {NOT_IPV4}; {URL_FIX}"),
    ([], {**TOKEN, "CLOUDFLARE_API_URL": "http://999.1.1.1:1/v4"},
     f"CLOUDFLARE_API_URL 'http://999.1.1.1:1/v4': the host {NOT_IPV4}; {URL_FIX}"),
    (["--cloudflare.api-url", "http://1.2.3/v4"], TOKEN,
     f"--cloudflare.api-url 'http://1.2.3/v4': the host {NOT_IPV4}; {URL_FIX}"),
    ([], {**TOKEN, "CLOUDFLARE_API_URL": "http://api.example.123/v4"},
     f"CLOUDFLARE_API_URL 'http://api.example.123/v4': the host {NOT_IPV4}; {URL_FIX}"),
    (["--cloudflare.api-url", "http://xn--a.example/v4"], TOKEN,
     "--cloudflare.api-url 'http://xn--a.example/v4': not a URL (Codepoint U+0080 at position 1 "
     f"of '\\x80' not allowed); {URL_FIX}"),
    (["--cloudflare.api-url", "http://exa mple.com"], TOKEN,
     "--cloudflare.api-url 'http://exa mple.com': holds a space, a control or a non-ASCII "
     f"character; {URL_FIX}"),
    ([], {**TOKEN, "CLOUDFLARE_API_URL": f"https://{LONG_HOST}/v4"},
     f"CLOUDFLARE_API_URL 'https://{LONG_HOST}/v4': the host is longer than 253 characters; "
     f"{URL_FIX}"),
    # --cloudflare.account-id / CLOUDFLARE_ACCOUNT_IDS
    (["--cloudflare.account-id", "xyz"], TOKEN, f"--cloudflare.account-id 'xyz': {ACCOUNT_FIX}"),
    ([], {**TOKEN, "CLOUDFLARE_ACCOUNT_IDS": f"{'a' * 32},nope"},
     f"CLOUDFLARE_ACCOUNT_IDS 'nope': {ACCOUNT_FIX}"),
    # an empty item is refused, whether the list holds others or nothing else
    ([], {**TOKEN, "CLOUDFLARE_ACCOUNT_IDS": ",,"},
     f"CLOUDFLARE_ACCOUNT_IDS ',,': an empty account id {EMPTY_ITEM}; {EMPTY_ACCOUNT_FIX}"),
    ([], {**TOKEN, "CLOUDFLARE_ACCOUNT_IDS": f"{'a' * 32},,{'b' * 32}"},
     f"CLOUDFLARE_ACCOUNT_IDS '{'a' * 32},,{'b' * 32}': an empty account id {EMPTY_ITEM}; "
     f"{EMPTY_ACCOUNT_FIX}"),
    (["--cloudflare.account-id", ""], TOKEN,
     f"--cloudflare.account-id '': an empty account id {EMPTY_ITEM}; {EMPTY_ACCOUNT_FIX}"),
    # CLOUDFLARE_API_TOKEN: never quoted back
    ([], {"CLOUDFLARE_API_TOKEN": "tok\nen"},
     "CLOUDFLARE_API_TOKEN: the credential holds whitespace at character 4; copy it again "
     "without it"),
    ([], {"CLOUDFLARE_API_TOKEN": "t\u00f6ken"},
     "CLOUDFLARE_API_TOKEN: the credential holds a character that is not printable ASCII at "
     "character 2; copy it again without it"),
    # --cloudflare.api-token-file / CLOUDFLARE_API_TOKEN_FILE
    (["--cloudflare.api-token-file", "/nonexistent/token"], {},
     "--cloudflare.api-token-file '/nonexistent/token': cannot read it (No such file or "
     "directory); check the path"),
    (["--cloudflare.api-token-file", "<dir>"], {},
     "--cloudflare.api-token-file '<dir>': not a regular file; give the file's path"),
    (["--cloudflare.api-token-file", "/dev/zero"], {},
     "--cloudflare.api-token-file '/dev/zero': not a regular file; give the file's path"),
    ([], {"CLOUDFLARE_API_TOKEN_FILE": "<fifo>"},
     "CLOUDFLARE_API_TOKEN_FILE '<fifo>': not a regular file; give the file's path"),
    ([], {"CLOUDFLARE_API_TOKEN_FILE": "<empty>"},
     "CLOUDFLARE_API_TOKEN_FILE '<empty>': the file is empty; write the credential into it"),
    ([], {"CLOUDFLARE_API_TOKEN_FILE": "<spaced>"},
     "CLOUDFLARE_API_TOKEN_FILE '<spaced>': the credential holds whitespace at character 4; fix "
     "the file"),
    ([], {"CLOUDFLARE_API_TOKEN_FILE": "<latin1>"},
     "CLOUDFLARE_API_TOKEN_FILE '<latin1>': cannot read it (not UTF-8 text)"),
    ([], {"CLOUDFLARE_API_TOKEN_FILE": "<big>"},
     "CLOUDFLARE_API_TOKEN_FILE '<big>': larger than 65536 bytes; is it the right file?"),
    # --cloudflare.api-email / CLOUDFLARE_API_EMAIL
    (["--cloudflare.api-email", "ops example.com"], {"CLOUDFLARE_API_KEY": KEY},
     "--cloudflare.api-email: the email holds whitespace at character 4; give the account's "
     "email address"),
    ([], {"CLOUDFLARE_API_EMAIL": "nobody", "CLOUDFLARE_API_KEY": KEY},
     "CLOUDFLARE_API_EMAIL 'nobody': not an email address; give the account's email"),
    ([], {"CLOUDFLARE_API_EMAIL": "\u00f6ps@example.com", "CLOUDFLARE_API_KEY": KEY},
     "CLOUDFLARE_API_EMAIL: the email holds a character that is not printable ASCII at "
     "character 1; give the account's email address"),
    # an email next to a token is not a Global API key: the line says what was set
    ([], {**TOKEN, "CLOUDFLARE_API_EMAIL": "ops@example.com"},
     "an API token (CLOUDFLARE_API_TOKEN) and CLOUDFLARE_API_EMAIL are both set, but the email "
     "is only used with a Global API key: unset CLOUDFLARE_API_EMAIL (or unset the token and set "
     "CLOUDFLARE_API_KEY too)"),
    (["--cloudflare.api-email", "ops@example.com"], TOKEN,
     "an API token (CLOUDFLARE_API_TOKEN) and --cloudflare.api-email are both set, but the email "
     "is only used with a Global API key: unset --cloudflare.api-email (or unset the token and "
     "set CLOUDFLARE_API_KEY too)"),
    ([], {**TOKEN, "CLOUDFLARE_API_EMAIL": "ops@example.com", "CLOUDFLARE_API_KEY": KEY},
     "both an API token (CLOUDFLARE_API_TOKEN) and a Global API key "
     "(CLOUDFLARE_API_EMAIL/CLOUDFLARE_API_KEY) are set: keep only the token (recommended) or "
     "only the email and key"),
    # CLOUDFLARE_API_KEY, --cloudflare.api-key-file / CLOUDFLARE_API_KEY_FILE
    ([], {"CLOUDFLARE_API_EMAIL": "ops@example.com", "CLOUDFLARE_API_KEY": "k\x01k"},
     "CLOUDFLARE_API_KEY: the credential holds a character that is not printable ASCII at "
     "character 2; copy it again without it"),
    ([], {"CLOUDFLARE_API_EMAIL": "ops@example.com", "CLOUDFLARE_API_KEY": "k\u00e9y"},
     "CLOUDFLARE_API_KEY: the credential holds a character that is not printable ASCII at "
     "character 2; copy it again without it"),
    (["--cloudflare.api-key-file", "/nonexistent/key"], {"CLOUDFLARE_API_EMAIL": "o@example.com"},
     "--cloudflare.api-key-file '/nonexistent/key': cannot read it (No such file or directory); "
     "check the path"),
    ([], {"CLOUDFLARE_API_EMAIL": "o@example.com", "CLOUDFLARE_API_KEY_FILE": "<spaced>"},
     "CLOUDFLARE_API_KEY_FILE '<spaced>': the credential holds whitespace at character 4; fix "
     "the file"),
    # --refresh.interval / EXPORTER_REFRESH_INTERVAL
    (["--refresh.interval", "soon"], TOKEN,
     "--refresh.interval 'soon': not a duration; use e.g. 30s, 5m, 1h or plain seconds"),
    (["--refresh.interval", "0s"], TOKEN, "--refresh.interval '0s': must be at least 1s"),
    (["--refresh.interval", "9999999999999999999999s"], TOKEN,
     "--refresh.interval '9999999999999999999999s': must be at most 24h"),
    ([], {**TOKEN, "EXPORTER_REFRESH_INTERVAL": "25h"},
     "EXPORTER_REFRESH_INTERVAL '25h': must be at most 24h"),
    ([], {**TOKEN, "EXPORTER_REFRESH_INTERVAL": "-5s"},
     "EXPORTER_REFRESH_INTERVAL '-5s': not a duration; use e.g. 30s, 5m, 1h or plain seconds"),
    (["--refresh.interval", "inf"], TOKEN,
     "--refresh.interval 'inf': not a duration; use e.g. 30s, 5m, 1h or plain seconds"),
    # --cloudflare.concurrency, -rate-limit, -timeout, -page-size (and their variables)
    (["--cloudflare.concurrency", "0"], TOKEN,
     "--cloudflare.concurrency 0: must be between 1 and 64"),
    ([], {**TOKEN, "CLOUDFLARE_CONCURRENCY": "many"},
     "CLOUDFLARE_CONCURRENCY 'many': give a whole number"),
    (["--cloudflare.rate-limit", "-1"], TOKEN,
     "--cloudflare.rate-limit -1: must be between 0 and 1000000"),
    ([], {**TOKEN, "CLOUDFLARE_RATE_LIMIT": "9" * 5000},
     f"CLOUDFLARE_RATE_LIMIT '{'9' * 5000}': give a whole number"),
    (["--cloudflare.timeout", "0"], TOKEN, "--cloudflare.timeout '0': must be at least 1ms"),
    ([], {**TOKEN, "CLOUDFLARE_TIMEOUT": "10m"}, "CLOUDFLARE_TIMEOUT '10m': must be at most 5m"),
    (["--cloudflare.page-size", "1001"], TOKEN,
     "--cloudflare.page-size 1001: must be between 1 and 1000"),
    ([], {**TOKEN, "CLOUDFLARE_PAGE_SIZE": "1.5"},
     "CLOUDFLARE_PAGE_SIZE '1.5': give a whole number"),
    # --cloudflare.max-response-size / -max-clients-per-account (and their variables)
    (["--cloudflare.max-response-size", "lots"], TOKEN,
     "--cloudflare.max-response-size 'lots': not a size; use e.g. 256MiB, 1GiB or 500MB"),
    (["--cloudflare.max-response-size", "1KiB"], TOKEN,
     "--cloudflare.max-response-size '1KiB': must be between 64KiB and 64GiB"),
    ([], {**TOKEN, "CLOUDFLARE_MAX_RESPONSE_SIZE": "-5MiB"},
     "CLOUDFLARE_MAX_RESPONSE_SIZE '-5MiB': not a size; use e.g. 256MiB, 1GiB or 500MB"),
    ([], {**TOKEN, "CLOUDFLARE_MAX_RESPONSE_SIZE": "9" * 40},
     f"CLOUDFLARE_MAX_RESPONSE_SIZE '{'9' * 40}': not a size; use e.g. 256MiB, 1GiB or 500MB"),
    (["--cloudflare.max-clients-per-account", "0"], TOKEN,
     "--cloudflare.max-clients-per-account 0: must be between 1 and 100000000"),
    ([], {**TOKEN, "CLOUDFLARE_MAX_CLIENTS_PER_ACCOUNT": "1e6"},
     "CLOUDFLARE_MAX_CLIENTS_PER_ACCOUNT '1e6': give a whole number"),
    # --shard, --total-shards
    (["--shard", "-1"], TOKEN, "--shard -1: must be between 0 and 0"),
    (["--shard", "3", "--total-shards", "3"], TOKEN, "--shard 3: must be between 0 and 2"),
    ([], {**TOKEN, "EXPORTER_SHARD": "x"}, "EXPORTER_SHARD 'x': give a whole number"),
    (["--total-shards", "0"], TOKEN, "--total-shards 0: must be between 1 and 1000"),
    ([], {**TOKEN, "EXPORTER_TOTAL_SHARDS": "1e3"},
     "EXPORTER_TOTAL_SHARDS '1e3': give a whole number"),
    # --metrics.per-client, --metrics.per-client-limit
    ([], {**TOKEN, "EXPORTER_METRICS_PER_CLIENT": "maybe"},
     "EXPORTER_METRICS_PER_CLIENT 'maybe': use true or false"),
    (["--metrics.per-client-limit", "0"], TOKEN,
     "--metrics.per-client-limit 0: must be between 1 and 1000000"),
    (["--metrics.per-client=maybe"], TOKEN,
     "argument --metrics.per-client: ignored explicit argument 'maybe' (--metrics.per-client "
     "takes no value: write --metrics.per-client alone); see --help"),
    ([], {**TOKEN, "EXPORTER_METRICS_PER_CLIENT_LIMIT": "all"},
     "EXPORTER_METRICS_PER_CLIENT_LIMIT 'all': give a whole number"),
    # --metrics.allowlist / --metrics.denylist: invalid, too large, too slow
    (["--metrics.allowlist", "(unclosed"], TOKEN,
     "--metrics.allowlist '(unclosed': not a regular expression (missing ), unterminated "
     "subpattern at position 0); fix the pattern"),
    (["--metrics.allowlist", "a{4294967296}"], TOKEN,
     "--metrics.allowlist 'a{4294967296}': not a regular expression (too large to compile); fix "
     "the pattern"),
    ([], {**TOKEN, "EXPORTER_METRICS_ALLOWLIST": "(" * 1000 + ")" * 1000},
     "EXPORTER_METRICS_ALLOWLIST: a pattern of 2000 characters; the most is 256, so split it "
     "into several comma-separated patterns"),
    (["--metrics.denylist", CATASTROPHIC], TOKEN,
     r"--metrics.denylist '(\\w*)*x': takes longer than 1s to match the metric names (nested "
     "repeats such as (a*)* backtrack without end); simplify the pattern"),
    ([], {**TOKEN, "EXPORTER_METRICS_DENYLIST": "process_.*,[z-a]"},
     "EXPORTER_METRICS_DENYLIST '[z-a]': not a regular expression (bad character range z-a at "
     "position 1); fix the pattern"),
    (["--metrics.allowlist", "a", "--metrics.denylist", "b"], TOKEN,
     "--metrics.allowlist and --metrics.denylist are both set: use one of them"),
    (["--metrics.allowlist", ""], TOKEN,
     f"--metrics.allowlist '': an empty pattern {EMPTY_ITEM}; {EMPTY_PATTERN_FIX}"),
    ([], {**TOKEN, "EXPORTER_METRICS_ALLOWLIST": ","},
     f"EXPORTER_METRICS_ALLOWLIST ',': an empty pattern {EMPTY_ITEM}; {EMPTY_PATTERN_FIX}"),
    (["--metrics.denylist", "process_.*,"], TOKEN,
     f"--metrics.denylist 'process_.*,': an empty pattern {EMPTY_ITEM}; {EMPTY_PATTERN_FIX}"),
    # --log.level, --log.format
    (["--log.level", "loud"], TOKEN,
     "--log.level 'loud': choose one of debug, info, warn, error"),
    ([], {**TOKEN, "EXPORTER_LOG_LEVEL": "verbose"},
     "EXPORTER_LOG_LEVEL 'verbose': choose one of debug, info, warn, error"),
    (["--log.format", "text"], TOKEN, "--log.format 'text': choose one of logfmt, json"),
    ([], {**TOKEN, "EXPORTER_LOG_FORMAT": "xml"},
     "EXPORTER_LOG_FORMAT 'xml': choose one of logfmt, json"),
    # the command line itself
    (["--refresh.intreval", "30s"], TOKEN,
     "unknown flag --refresh.intreval; did you mean --refresh.interval? (see --help)"),
    (["--web.listen-adress=:9000"], TOKEN,
     "unknown flag --web.listen-adress; did you mean --web.listen-address? (see --help)"),
    (["--listen", ":9000"], TOKEN,
     "unknown flag --listen; did you mean --web.listen-address? (see --help)"),
    (["--frobnicate"], TOKEN, "unknown flag --frobnicate (see --help)"),
    (["--refresh.interval"], TOKEN,
     "argument --refresh.interval: expected one argument (write a value that starts with - as "
     "--flag=value); see --help"),
    (["--refresh.interval", "-5s"], TOKEN,
     "argument --refresh.interval: expected one argument (write a value that starts with - as "
     "--flag=value); see --help"),
    (["--refresh.interval=-5s"], TOKEN,
     "--refresh.interval '-5s': not a duration; use e.g. 30s, 5m, 1h or plain seconds"),
    (["5m"], TOKEN,
     "unexpected argument '5m': every setting is a flag followed by its value, e.g. "
     "--refresh.interval 5m; see --help"),
    # --demo, --once: switches
    (["--demo=yes"], {},
     "argument --demo: ignored explicit argument 'yes' (--demo takes no value: write --demo "
     "alone); see --help"),
    (["--once=1"], TOKEN,
     "argument --once: ignored explicit argument '1' (--once takes no value: write --once "
     "alone); see --help"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "environ", "line"),
    [pytest.param(*case, marks=pytest.mark.slow) if CATASTROPHIC in case[0] else case
     for case in CASES],
)  # fmt: skip
def test_a_malformed_value_is_one_line_and_exit_2(argv, environ, line, files, capsys):
    def fill(text: str) -> str:
        for name, path in files.items():
            text = text.replace(f"<{name}>", path)
        return text

    argv = [fill(arg) for arg in argv]
    environ = {key: fill(value) for key, value in environ.items()}
    assert main(argv, environ) == EXIT_CONFIG
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.err.count("\n") == 1  # one line
    assert captured.err == PREFIX + fill(line) + "\n"
    assert captured.out == ""


def documented_names() -> tuple[list[str], list[str]]:
    """The flags and the environment variables of README's Configuration table."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    flags: list[str] = []
    variables: list[str] = []
    for row in table.splitlines():
        cells = row.split("|")
        if not row.startswith("| `") and not row.startswith("| —"):
            continue
        flags += re.findall(r"`(--[a-z][a-z0-9.-]*)`", cells[1])
        variables += re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[2])
    return flags, variables


def _names(name: str, text: str) -> bool:
    return re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", text) is not None


def test_the_table_covers_every_flag_and_variable():
    # A row covers a name when it gives a value through that very flag or variable and the line
    # names it: a flag's row does not stand in for its variable's, nor the other way round.
    flags, variables = documented_names()
    assert {option.env for option in OPTIONS} <= set(variables)
    assert {option.flag for option in OPTIONS if option.flag} | {"--demo", "--once"} <= set(flags)
    missing = [
        name
        for name in [*flags, *variables]
        if not any(
            _names(name, line)
            and (
                any(arg == name or arg.startswith(f"{name}=") for arg in argv)
                if name.startswith("--")
                else name in environ
            )
            for argv, environ, line in CASES
        )
    ]
    assert missing == []


NASTY = [
    " ", "\x00", "\n\n", "\u00e9", "-1", "0", "1" * 30, "9" * 5000, "a..b", "http://[::1",
    ":", "[", "%s", "{}", "a{4294967296}", "((((", "/dev/zero", "*" * 300, "true", "\u202e",
    "999.1.1.1", "http://999.1.1.1:1/v4", "http://xn--a.example",
    ",", ",,", "a,",
]  # fmt: skip


def other_settings(option: Option[object]) -> dict[str, str]:
    """Enough for the rest of the configuration to be valid, leaving `option` alone."""
    if option.env.startswith("CLOUDFLARE_API_") and option.env != "CLOUDFLARE_API_URL":
        return {"CLOUDFLARE_API_EMAIL": "ops@example.com"} if "KEY" in option.env else {}
    return dict(TOKEN)


@pytest.mark.parametrize("option", OPTIONS, ids=lambda option: option.env)
def test_any_value_of_any_setting_is_accepted_or_refused_in_one_line(option):
    for value in NASTY:
        attempts: list[tuple[list[str], dict[str, str]]] = [
            ([], {**other_settings(option), option.env: value})
        ]
        if option.flag is not None and option.kind != "switch":
            attempts.append(([f"{option.flag}={value}"], other_settings(option)))
        for argv, environ in attempts:
            try:
                load_settings(argv, environ)
            except ConfigError as error:
                message = str(error)
                assert "\n" not in message, (option.env, value)
                if option.env in ("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_API_KEY") and len(value) > 3:
                    assert value not in message  # a credential is never quoted back


def test_off_the_main_thread_patterns_are_checked_without_a_timer():
    # Interval timers belong to the main thread; a library caller elsewhere still gets the
    # length and compile checks, and the (quick) match on every family name.
    from concurrent.futures import ThreadPoolExecutor

    from exporter.family_filter import compile_pattern

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(compile_pattern, "process_.*", "--x").result().pattern == "process_.*"
        with pytest.raises(ConfigError, match="the most is 256"):
            pool.submit(compile_pattern, "a" * 300, "--x").result()
