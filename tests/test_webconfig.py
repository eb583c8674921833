"""--web.config.file: the checks at start, basic auth, and real TLS handshakes (mTLS included)."""

from __future__ import annotations

import base64
import random
import secrets
import ssl
import subprocess
import threading
import time

import bcrypt
import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from exporter.settings import ConfigError
from exporter.simulator import Simulator, make_account
from exporter.webconfig import BasicAuth, load_web_config
from tests.support.process import ExporterProcess
from tests.support.simulator import TOKEN
from tests.support.tls import Pki, make_pki
from tests.support.tools import clean_environ, exporter_command

PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(tmp_path, text: str):
    path = tmp_path / "web-config.yml"
    path.write_text(text)
    return path


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (": : :", "not valid YAML at line 1"),
        ("- a list", "expected a mapping"),
        ("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
         "tls_server_config.cert_file 'nope.crt': cannot read it (No such file or directory)"),
        ("tls_server_config:\n  cert_file: .\n  key_file: k\n",
         "tls_server_config.cert_file '.': not a regular file"),  # a directory, relative to it
        ("tls_server_config:\n  key_file: k\n", "tls_server_config.cert_file is required"),
        ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice is not a bcrypt hash"),
        ("basic_auth_users:\n  alice: 42\n", "basic_auth_users.alice is not a bcrypt hash"),
        ("tls_config:\n  cert_file: x\n", "unsupported key 'tls_config'"),
        ("http_server_config:\n  http2: true\n", "unsupported key 'http_server_config'"),
        # the wrong type anywhere is a line, never a TypeError (tests/test_config_errors.py has
        # more, through the command line)
        ("tls_server_config:\n  min_version: {TLS12: 1}\n", "min_version is a mapping"),
        ("tls_server_config:\n  min_version: null\n", "min_version is null"),
        ("tls_server_config:\n  client_auth_type: [NoClientCert]\n",
         "client_auth_type is a list"),
        ("tls_server_config:\n  cert_file: 5\n  key_file: k\n", "cert_file is 5"),
        ("tls_server_config:\n  cert_file: {a: b}\n", "cert_file is a mapping"),
        ("tls_server_config: [cert_file]\n", "tls_server_config must be a mapping"),
        ("tls_server_config: &t {cert_file: *t}\n", "cert_file is a mapping"),
        ("basic_auth_users: alice\n", "basic_auth_users must map user names"),
        ("basic_auth_users:\n  null: x\n", "invalid user name null: it is not text"),
        ("basic_auth_users:\n  \"\": x\n", "invalid user name '': it is empty"),
        ("basic_auth_users:\n  \"a\\tb\": x\n", "character 2 is not printable ASCII"),
        ("basic_auth_users:\n  \"\\u2028\": x\n", "'\\u2028': character 1 is not printable"),
        ("basic_auth_users:\n  alice: {a: b}\n", "basic_auth_users.alice is not a bcrypt hash"),
        ("? [a]\n: b\n", "not valid YAML at line 1"),
        ("a: " + "{a: " * 21 + "1" + "}" * 21 + "\n", "nested deeper than 20 levels at line 1"),
        ("a:\n" + "".join("  " * depth + "- \n" for depth in range(25)),
         "nested deeper than 20 levels at line 21"),
        ("c" * 300 + ": d\n", f"unsupported key '{'c' * 58}…;"),
    ],
)  # fmt: skip
def test_bad_files_are_refused_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as raised:
        load_web_config(str(write(tmp_path, text)))
    assert message in str(raised.value)
    assert "--web.config.file" in str(raised.value)


def test_an_unreadable_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot read it"):
        load_web_config(str(tmp_path / "missing.yml"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  min_version: TLS99\n", "min_version 'TLS99'"),
        ("  client_auth_type: RequireAnyClientCert\n", "'RequireAnyClientCert' is not supported"),
        ("  client_auth_type: RequireAndVerifyClientCert\n", "client_ca_file is required"),
        ("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "unsupported key 'cipher_suites'"),
    ],
)
def test_bad_tls_settings_are_refused(tmp_path, pki, extra, message):
    text = f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    with pytest.raises(ConfigError, match=message):
        load_web_config(str(write(tmp_path, text + extra)))


def test_an_encrypted_key_is_refused_without_asking_for_its_passphrase(tmp_path, pki):
    # Without a passphrase callback OpenSSL asks on the terminal and waits for an answer.
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    text = f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {encrypted}\n"
    with pytest.raises(ConfigError, match="key_file is encrypted; give an unencrypted key"):
        load_web_config(str(write(tmp_path, text)))


def test_a_nested_config_named_by_the_variable_that_gave_it(tmp_path):
    path = write(tmp_path, "a: " + "[" * 1000 + "]" * 1000)
    with pytest.raises(ConfigError) as raised:
        load_web_config(str(path), "EXPORTER_WEB_CONFIG_FILE")
    assert str(raised.value) == (
        f"EXPORTER_WEB_CONFIG_FILE {str(path)!r}: nested deeper than 20 levels at line 1; the "
        "format needs 3, fix the file"
    )


def test_user_names_are_printable_ascii_without_a_colon(tmp_path):
    # spaces and punctuation are fine: basic auth carries them
    loaded = load_web_config(
        str(write(tmp_path, f'basic_auth_users:\n  "prom etheus!~": {HASH}\n'))
    )
    assert list(loaded.users) == ["prom etheus!~"]
    assert loaded.basic_auth is not None
    assert loaded.basic_auth.check(basic("prom etheus!~", PASSWORD)) is True


def test_a_key_that_does_not_match_the_certificate_is_refused(tmp_path, pki):
    text = f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.client_key}\n"
    with pytest.raises(ConfigError, match="the key matches the certificate"):
        load_web_config(str(write(tmp_path, text)))


def test_paths_are_relative_to_the_file(tmp_path, pki):
    config = pki.server_cert.parent / "web.yml"
    config.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    loaded = load_web_config(str(config))
    assert loaded.ssl_context is not None
    assert loaded.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_basic_auth_accepts_only_the_right_password():
    auth = BasicAuth({"prometheus": HASH.encode()})
    assert auth.remembered(basic("prometheus", PASSWORD)) is None  # not seen yet
    assert auth.check(basic("prometheus", PASSWORD)) is True
    assert auth.remembered(basic("prometheus", PASSWORD)) is True  # no second bcrypt
    assert auth.check(basic("prometheus", "wrong")) is False
    assert auth.remembered(basic("prometheus", "wrong")) is False  # repeating it: no bcrypt
    assert auth.check(basic("nobody", PASSWORD)) is False
    assert auth.check(basic("prometheus", "x" * 80)) is False  # bcrypt's 72-byte limit: no 500
    for header in (None, "", "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"nocolon")
                   .decode()):  # fmt: skip
        assert auth.check(header) is False
        assert auth.remembered(header) is False


@pytest.mark.slow
def test_a_bad_web_config_exits_2_with_one_line(tmp_path):
    path = write(tmp_path, "basic_auth_users:\n  alice: not-a-hash\n")
    result = subprocess.run(
        exporter_command("--web.config.file", str(path)),
        env=clean_environ(CLOUDFLARE_API_TOKEN=TOKEN), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "basic_auth_users.alice" in result.stderr


@pytest.fixture
def secured(tmp_path, pki, serve_simulator):
    """An exporter process behind TLS (client certificates optional) and basic auth."""

    def start(client_auth: str = "NoClientCert") -> ExporterProcess:
        account = make_account(random.Random(3), "Secure", 5)
        url = serve_simulator(Simulator([account]))
        config = write(tmp_path, (
            f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
            f"  client_auth_type: {client_auth}\n  client_ca_file: {pki.ca}\n"
            f"basic_auth_users:\n  prometheus: {HASH}\n"
        ))  # fmt: skip
        return ExporterProcess(
            "--cloudflare.api-url", url, "--web.config.file", str(config),
            CLOUDFLARE_API_TOKEN=TOKEN,
        )  # fmt: skip

    return start


def client(pki: Pki, *, cert: tuple[str, str] | None = None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(*cert)
    return httpx.Client(verify=context, timeout=10)


@pytest.mark.slow
def test_tls_and_basic_auth_guard_everything_but_the_probes(secured, pki):
    with secured() as exporter:
        base = exporter.url.replace("http://", "https://")
        with client(pki) as https:
            deadline = time.monotonic() + 20
            while https.get(f"{base}/readyz").status_code != 200:  # no credentials needed
                assert time.monotonic() < deadline, "never ready"
                time.sleep(0.05)
            assert https.get(f"{base}/healthz").status_code == 200
            for path in ("/metrics", "/"):
                refused = https.get(f"{base}{path}")
                assert refused.status_code == 401
                assert refused.headers["www-authenticate"].startswith("Basic realm=")
                wrong = https.get(f"{base}{path}", auth=("prometheus", "wrong"))
                assert wrong.status_code == 401
                right = https.get(f"{base}{path}", auth=("prometheus", PASSWORD))
                assert right.status_code == 200
                assert ("cloudflare_oauth_clients{" if path == "/metrics" else "Secure") in (
                    right.text
                )
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{exporter.url}/healthz", timeout=5)  # plain HTTP is not served


@pytest.mark.slow
def test_mutual_tls_requires_a_client_certificate_from_the_ca(secured, pki):
    with secured("RequireAndVerifyClientCert") as exporter:
        base = exporter.url.replace("http://", "https://")
        with client(pki, cert=(str(pki.client_cert), str(pki.client_key))) as trusted:
            assert trusted.get(f"{base}/healthz").status_code == 200
            metrics = trusted.get(f"{base}/metrics", auth=("prometheus", PASSWORD))
            assert metrics.status_code == 200
        for cert in (None, (str(pki.other_client_cert), str(pki.other_client_key))):
            with client(pki, cert=cert) as untrusted, pytest.raises(httpx.HTTPError):
                untrusted.get(f"{base}/healthz")


@pytest.mark.slow
def test_a_flood_of_wrong_passwords_cannot_lock_out_the_right_user(tmp_path, serve_simulator):
    # bcrypt at cost 10 (~50 ms a check), as htpasswd -nBC 10 makes: a flood saturates it.
    slow_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    config = write(tmp_path, f"basic_auth_users:\n  prometheus: {slow_hash}\n")
    url = serve_simulator(Simulator([make_account(random.Random(3), "Secure", 5)]))
    stop = threading.Event()
    flood_statuses: list[int] = []

    def flood(local_address: str, keep_alive: bool) -> None:
        transport = httpx.HTTPTransport(local_address=local_address)
        headers = {} if keep_alive else {"connection": "close"}
        with httpx.Client(transport=transport, timeout=10, headers=headers) as flooder:
            while not stop.is_set():
                wrong = ("prometheus", secrets.token_hex(8))  # never the same: no memory helps
                try:
                    response = flooder.get(f"{exporter.url}/metrics", auth=wrong)
                except httpx.TransportError:
                    continue  # a keep-alive connection closed under it: the flood goes on
                flood_statuses.append(response.status_code)

    with ExporterProcess(
        "--cloudflare.api-url", url, "--web.config.file", str(config), CLOUDFLARE_API_TOKEN=TOKEN
    ) as exporter:
        exporter.wait_ready()
        # keep-alive flooders share the right user's address; others open a connection per try
        flooders = [threading.Thread(target=flood, args=("127.0.0.1", True)) for _ in range(12)]
        flooders += [threading.Thread(target=flood, args=("127.0.0.2", False)) for _ in range(12)]
        for thread in flooders:
            thread.start()
        try:
            deadline = time.monotonic() + 10
            while 503 not in flood_statuses:  # saturated, or the test proves nothing
                assert time.monotonic() < deadline, f"never saturated: {set(flood_statuses)}"
                time.sleep(0.05)
            right: list[httpx.Response] = []
            started = time.monotonic()
            with httpx.Client(timeout=10) as scraper:  # a new connection, as a scrape
                while not right or right[-1].status_code != 200:
                    # the bound: the right user gets 200 within 5 s (measured: at once)
                    assert time.monotonic() - started < 5, [r.status_code for r in right]
                    right.append(
                        scraper.get(f"{exporter.url}/metrics", auth=("prometheus", PASSWORD))
                    )
                    if right[-1].status_code == 503:
                        assert right[-1].headers["retry-after"] == "1"
                        time.sleep(0.2)
        finally:
            stop.set()
            for thread in flooders:
                thread.join(timeout=15)
        assert 401 not in [r.status_code for r in right]  # never told its password is wrong
        assert set(flood_statuses) == {401, 503}  # wrong passwords stay 401 when checked
        assert httpx.get(f"{exporter.url}/metrics", auth=("prometheus", "nope")).status_code == 401
        assert (
            httpx.get(f"{exporter.url}/metrics", auth=("prometheus", PASSWORD)).status_code == 200
        )
