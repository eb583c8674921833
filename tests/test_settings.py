from __future__ import annotations

import pytest

from exporter.credentials import GlobalKeyAuth, Secret, TokenAuth
from exporter.settings import ConfigError, load_settings
from exporter.webconfig import WebConfig

TOKEN = "tok-1234567890abcdef"  # a made-up credential
ACCOUNT = "0123456789abcdef0123456789abcdef"


def load(argv=(), **environ):
    return load_settings(list(argv), environ)


def test_defaults_with_only_a_token():
    settings = load(CLOUDFLARE_API_TOKEN=TOKEN)
    assert settings.auth == TokenAuth(Secret(TOKEN))
    assert settings.web_config == WebConfig()
    assert (settings.shard, settings.total_shards) == (0, 1)
    assert (settings.per_client, settings.per_client_limit) == (False, 5000)
    assert (settings.allowlist, settings.denylist, settings.account_ids) == ((), (), ())
    assert (settings.log_level, settings.log_format) == ("info", "logfmt")
    assert (settings.page_size, settings.demo, settings.once) == (50, False, False)
    assert settings.listen_address == ":9878"
    assert settings.max_connections == 256
    assert settings.telemetry_path == "/metrics"
    assert settings.api_url == "https://api.cloudflare.com/client/v4"
    assert settings.refresh_interval == 300.0
    assert settings.rate_limit == 1000
    assert settings.timeout == 10.0
    assert settings.concurrency == 4
    assert settings.discovers_accounts


def test_a_flag_beats_its_environment_variable():
    settings = load(
        ["--refresh.interval", "30s", "--web.listen-address", "127.0.0.1:9000"],
        CLOUDFLARE_API_TOKEN=TOKEN,
        EXPORTER_REFRESH_INTERVAL="1h",
        EXPORTER_WEB_LISTEN_ADDRESS=":8000",
        CLOUDFLARE_RATE_LIMIT="600",
    )
    assert settings.refresh_interval == 30.0
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 9000)
    assert settings.rate_limit == 600


def test_every_documented_environment_variable_is_read():
    settings = load(
        CLOUDFLARE_API_TOKEN=TOKEN,
        EXPORTER_WEB_LISTEN_ADDRESS="[::1]:9100",
        EXPORTER_WEB_TELEMETRY_PATH="/probe/",
        CLOUDFLARE_API_URL="http://127.0.0.1:8788/client/v4/",
        CLOUDFLARE_ACCOUNT_IDS=f"{ACCOUNT}, {ACCOUNT.upper()},{'f' * 32}",
        EXPORTER_REFRESH_INTERVAL="90",
        CLOUDFLARE_CONCURRENCY="8",
        CLOUDFLARE_RATE_LIMIT="0",
        CLOUDFLARE_TIMEOUT="2.5s",
        CLOUDFLARE_PAGE_SIZE="100",
        EXPORTER_LOG_LEVEL="WARNING",
        EXPORTER_LOG_FORMAT="json",
    )
    assert (settings.listen_host, settings.listen_port) == ("::1", 9100)
    assert settings.listen_address == "[::1]:9100"
    assert settings.telemetry_path == "/probe"
    assert settings.api_url == "http://127.0.0.1:8788/client/v4"
    assert settings.account_ids == (ACCOUNT, "f" * 32)
    assert settings.refresh_interval == 90.0
    assert settings.concurrency == 8
    assert settings.rate_limit == 0
    assert settings.timeout == 2.5
    assert settings.page_size == 100
    assert settings.log_level == "warn"
    assert settings.log_format == "json"
    assert not settings.discovers_accounts


def test_account_flag_is_repeatable_and_replaces_the_environment_list():
    other = "a" * 32
    settings = load(
        ["--cloudflare.account-id", ACCOUNT, "--cloudflare.account-id", other],
        CLOUDFLARE_API_TOKEN=TOKEN,
        CLOUDFLARE_ACCOUNT_IDS="b" * 32,
    )
    assert settings.account_ids == (ACCOUNT, other)


def test_token_file_is_read_and_stripped(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    settings = load(["--cloudflare.api-token-file", str(token_file)])
    assert settings.auth == TokenAuth(Secret(TOKEN))
    settings = load(CLOUDFLARE_API_TOKEN_FILE=str(token_file))
    assert settings.auth == TokenAuth(Secret(TOKEN))


def test_token_file_flag_wins_over_token_variable(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file")
    settings = load(["--cloudflare.api-token-file", str(token_file)], CLOUDFLARE_API_TOKEN=TOKEN)
    assert settings.auth == TokenAuth(Secret("from-file"))


def test_legacy_email_and_key(tmp_path):
    settings = load(CLOUDFLARE_API_EMAIL="ops@example.com", CLOUDFLARE_API_KEY="k" * 37)
    assert settings.auth == GlobalKeyAuth("ops@example.com", Secret("k" * 37))
    key_file = tmp_path / "key"
    key_file.write_text("filed-key\n")
    settings = load(CLOUDFLARE_API_EMAIL="ops@example.com", CLOUDFLARE_API_KEY_FILE=str(key_file))
    assert settings.auth == GlobalKeyAuth("ops@example.com", Secret("filed-key"))


def test_demo_needs_no_credentials():
    settings = load(["--demo"])
    assert settings.demo
    assert settings.auth is None


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({}, ["CLOUDFLARE_API_TOKEN", "--demo"]),
        ({"CLOUDFLARE_API_EMAIL": "a@example.com"}, ["CLOUDFLARE_API_KEY"]),
        ({"CLOUDFLARE_API_KEY": "k"}, ["CLOUDFLARE_API_EMAIL"]),
        (
            {"CLOUDFLARE_API_TOKEN": TOKEN, "CLOUDFLARE_API_EMAIL": "a@example.com",
             "CLOUDFLARE_API_KEY": "k"},
            ["token", "CLOUDFLARE_API_KEY"],
        ),
        (
            {"CLOUDFLARE_API_TOKEN": TOKEN, "CLOUDFLARE_API_TOKEN_FILE": "/x"},
            ["CLOUDFLARE_API_TOKEN_FILE", "unset one"],
        ),
        (
            {"CLOUDFLARE_API_TOKEN_FILE": "/no/such/file"},
            ["CLOUDFLARE_API_TOKEN_FILE", "cannot read"],
        ),
    ],
)  # fmt: skip
def test_bad_credentials_name_the_variable_and_the_fix(environ, names):
    with pytest.raises(ConfigError) as raised:
        load_settings([], environ)
    message = str(raised.value)
    assert "\n" not in message
    for name in names:
        assert name in message


@pytest.mark.parametrize(
    ("argv", "environ", "names"),
    [
        (["--cloudflare.account-id", "abc"], {}, ["--cloudflare.account-id", "32 hexadecimal"]),
        ([], {"CLOUDFLARE_ACCOUNT_IDS": f"{ACCOUNT},nope"}, ["CLOUDFLARE_ACCOUNT_IDS", "'nope'"]),
        (["--refresh.interval", "5 minutes"], {}, ["--refresh.interval", "30s, 5m, 1h"]),
        ([], {"EXPORTER_REFRESH_INTERVAL": "fast"}, ["EXPORTER_REFRESH_INTERVAL"]),
        (["--refresh.interval", "0s"], {}, ["--refresh.interval", "at least"]),
        (["--cloudflare.timeout", "0"], {}, ["--cloudflare.timeout"]),
        (["--cloudflare.concurrency", "0"], {}, ["--cloudflare.concurrency", "between 1 and 64"]),
        (["--cloudflare.rate-limit", "-1"], {}, ["--cloudflare.rate-limit"]),
        (["--cloudflare.rate-limit", "lots"], {}, ["--cloudflare.rate-limit", "whole number"]),
        (["--log.format", "text"], {}, ["--log.format", "logfmt, json"]),
        (["--log.level", "loud"], {}, ["--log.level", "debug, info, warn, error"]),
        (["--web.listen-address", "9878"], {}, ["--web.listen-address", "HOST:PORT"]),
        (["--web.listen-address", ":99999"], {}, ["--web.listen-address", "65535"]),
        (["--web.listen-address", "::1:80"], {}, ["--web.listen-address", "brackets"]),
        (["--web.telemetry-path", "metrics"], {}, ["--web.telemetry-path", "absolute path"]),
        (["--web.telemetry-path", "/healthz"], {}, ["--web.telemetry-path", "taken"]),
        (["--cloudflare.api-url", "api.cloudflare.com"], {}, ["--cloudflare.api-url", "http"]),
        (["--cloudflare.api-url", "https://u:pw@api.example.com"], {}, ["credentials"]),
        (["--cloudflare.api-token-file", "/no/such/file"], {}, ["--cloudflare.api-token-file",
                                                                "cannot read"]),
    ],
)  # fmt: skip
def test_bad_flags_name_the_flag_and_the_fix(argv, environ, names):
    with pytest.raises(ConfigError) as raised:
        load_settings(argv, {"CLOUDFLARE_API_TOKEN": TOKEN, **environ})
    message = str(raised.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_empty_or_spaced_token_files_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        load(CLOUDFLARE_API_TOKEN_FILE=str(empty))
    spaced = tmp_path / "spaced"
    spaced.write_text("two words")
    with pytest.raises(ConfigError, match="whitespace"):
        load(CLOUDFLARE_API_TOKEN_FILE=str(spaced))


def test_an_unknown_flag_is_one_line_suggesting_the_closest(capsys):
    with pytest.raises(ConfigError) as raised:
        load(["--refresh.intreval", "30s"], CLOUDFLARE_API_TOKEN=TOKEN)
    assert str(raised.value) == (
        "unknown flag --refresh.intreval; did you mean --refresh.interval? (see --help)"
    )
    with pytest.raises(ConfigError, match=r"^unknown flag --no-such-flag \(see --help\)$"):
        load(["--no-such-flag"], CLOUDFLARE_API_TOKEN=TOKEN)
    assert capsys.readouterr().err == ""  # no usage: the CLI prints the one line


def test_secrets_never_show_in_reprs(tmp_path):
    settings = load(CLOUDFLARE_API_TOKEN=TOKEN)
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings)
    assert "**" in repr(settings.auth)
    legacy = load(CLOUDFLARE_API_EMAIL="ops@example.com", CLOUDFLARE_API_KEY="sekrit-key-value")
    assert "sekrit-key-value" not in repr(legacy)
    assert legacy.auth is not None
    assert "sekrit-key-value" not in f"{legacy.auth}"


def test_secret_refuses_to_be_pickled():
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret(TOKEN))


def test_per_client_metrics_are_opt_in():
    assert load(CLOUDFLARE_API_TOKEN=TOKEN).per_client is False
    assert load(["--metrics.per-client"], CLOUDFLARE_API_TOKEN=TOKEN).per_client is True
    settings = load(
        CLOUDFLARE_API_TOKEN=TOKEN,
        EXPORTER_METRICS_PER_CLIENT="true",
        EXPORTER_METRICS_PER_CLIENT_LIMIT="250",
    )
    assert (settings.per_client, settings.per_client_limit) == (True, 250)
    assert load(CLOUDFLARE_API_TOKEN=TOKEN).per_client_limit == 5000
    with pytest.raises(ConfigError, match="EXPORTER_METRICS_PER_CLIENT 'maybe': use true or"):
        load(CLOUDFLARE_API_TOKEN=TOKEN, EXPORTER_METRICS_PER_CLIENT="maybe")
    with pytest.raises(ConfigError, match=r"--metrics\.per-client-limit 0: must be between 1"):
        load(["--metrics.per-client-limit", "0"], CLOUDFLARE_API_TOKEN=TOKEN)


def test_allowlist_and_denylist_select_families():
    allow = load(
        ["--metrics.allowlist", "cloudflare_oauth_clients.*,cloudflare_oauth_account_up"],
        CLOUDFLARE_API_TOKEN=TOKEN,
    )
    assert allow.keeps("cloudflare_oauth_clients_by_visibility")
    assert allow.keeps("cloudflare_oauth_account_up")
    assert not allow.keeps("cloudflare_oauth_account_info")
    assert not allow.keeps("process_cpu_seconds_total")
    deny = load(CLOUDFLARE_API_TOKEN=TOKEN, EXPORTER_METRICS_DENYLIST="process_.*, python_.*")
    assert not deny.keeps("process_open_fds")
    assert deny.keeps("cloudflare_oauth_clients")
    everything = load(CLOUDFLARE_API_TOKEN=TOKEN)
    assert everything.keeps("anything_at_all")


def test_allowlist_and_denylist_are_exclusive_and_must_be_regexes():
    with pytest.raises(ConfigError, match="both set"):
        load(["--metrics.allowlist", "a", "--metrics.denylist", "b"], CLOUDFLARE_API_TOKEN=TOKEN)
    with pytest.raises(ConfigError, match=r"--metrics.denylist '\(unclosed': not a regular"):
        load(["--metrics.denylist", "(unclosed"], CLOUDFLARE_API_TOKEN=TOKEN)
