"""The metric table, checked against literal exposition text."""

from __future__ import annotations

import pytest

from exporter.aggregation import ClientRecord, count_clients
from exporter.metrics import ACCOUNT_FAMILIES, ExpositionStore, render_account
from exporter.model import OAuthClient
from exporter.snapshot import AccountSnapshot
from tests.support.exposition import samples

A = "a" * 32
B = "b" * 32

COUNTS = count_clients(
    [
        OAuthClient(
            client_id="c1",
            visibility="public",
            token_endpoint_auth_method="none",
            verification_status="verified",
            grant_types=frozenset({"authorization_code", "refresh_token"}),
            response_types=frozenset({"code"}),
        ),
        OAuthClient(
            client_id="c2",
            visibility="private",
            token_endpoint_auth_method="client_secret_post",
            verification_status="failed",
            has_rotated_secret=True,
            grant_types=frozenset({"authorization_code"}),
            response_types=frozenset({"code", "token"}),
            redirect_uris=("https://app.example.com/cb",),
        ),
    ]
)
GOOD = AccountSnapshot(
    account_id=A,
    account_name="Acme",
    up=True,
    counts=COUNTS,
    last_success=1767225600.5,
    refresh_duration=0.25,
)


def family_text(snapshot: AccountSnapshot, name: str) -> str:
    index = [family.name for family in ACCOUNT_FAMILIES].index(name)
    return render_account(snapshot)[index].decode()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cloudflare_oauth_clients", f'cloudflare_oauth_clients{{account_id="{A}"}} 2\n'),
        (
            "cloudflare_oauth_clients_by_visibility",
            f'cloudflare_oauth_clients_by_visibility{{account_id="{A}",visibility="public"}} 1\n'
            f'cloudflare_oauth_clients_by_visibility{{account_id="{A}",visibility="private"}} 1\n',
        ),
        (
            "cloudflare_oauth_clients_by_auth_method",
            f'cloudflare_oauth_clients_by_auth_method{{account_id="{A}",auth_method="none"}} 1\n'
            f'cloudflare_oauth_clients_by_auth_method{{account_id="{A}",auth_method="client_secret_basic"}} 0\n'
            f'cloudflare_oauth_clients_by_auth_method{{account_id="{A}",auth_method="client_secret_post"}} 1\n'
            f'cloudflare_oauth_clients_by_auth_method{{account_id="{A}",auth_method="unspecified"}} 0\n',
        ),
        (
            "cloudflare_oauth_clients_by_verification_status",
            f'cloudflare_oauth_clients_by_verification_status{{account_id="{A}",status="pending"}} 0\n'
            f'cloudflare_oauth_clients_by_verification_status{{account_id="{A}",status="in_progress"}} 0\n'
            f'cloudflare_oauth_clients_by_verification_status{{account_id="{A}",status="verified"}} 1\n'
            f'cloudflare_oauth_clients_by_verification_status{{account_id="{A}",status="failed"}} 1\n'
            f'cloudflare_oauth_clients_by_verification_status{{account_id="{A}",status="none"}} 0\n',
        ),
        (
            "cloudflare_oauth_clients_rotated_secret_pending",
            f'cloudflare_oauth_clients_rotated_secret_pending{{account_id="{A}"}} 1\n',
        ),
        (
            "cloudflare_oauth_clients_by_grant_type",
            f'cloudflare_oauth_clients_by_grant_type{{account_id="{A}",grant_type="authorization_code"}} 2\n'
            f'cloudflare_oauth_clients_by_grant_type{{account_id="{A}",grant_type="refresh_token"}} 1\n',
        ),
        (
            "cloudflare_oauth_clients_by_response_type",
            f'cloudflare_oauth_clients_by_response_type{{account_id="{A}",response_type="code"}} 2\n'
            f'cloudflare_oauth_clients_by_response_type{{account_id="{A}",response_type="token"}} 1\n'
            f'cloudflare_oauth_clients_by_response_type{{account_id="{A}",response_type="id_token"}} 0\n',
        ),
        ("cloudflare_oauth_account_up", f'cloudflare_oauth_account_up{{account_id="{A}"}} 1\n'),
        (
            "cloudflare_oauth_account_last_success_timestamp_seconds",
            f'cloudflare_oauth_account_last_success_timestamp_seconds{{account_id="{A}"}} 1767225600.5\n',
        ),
        (
            "cloudflare_oauth_account_refresh_duration_seconds",
            f'cloudflare_oauth_account_refresh_duration_seconds{{account_id="{A}"}} 0.25\n',
        ),
        (
            "cloudflare_oauth_account_info",
            f'cloudflare_oauth_account_info{{account_id="{A}",account_name="Acme"}} 1\n',
        ),
    ],
)
def test_each_family_renders_exactly(name, expected):
    assert family_text(GOOD, name) == expected


def test_an_account_never_read_has_up_and_duration_but_no_counts():
    never = AccountSnapshot(
        account_id=A, account_name=None, up=False, counts=None, last_success=None,
        refresh_duration=1.5, last_error="HTTP 403 code 10000: Authentication error",
    )  # fmt: skip
    rendered = dict(zip([f.name for f in ACCOUNT_FAMILIES], render_account(never), strict=True))
    assert rendered.pop("cloudflare_oauth_account_up") == (
        f'cloudflare_oauth_account_up{{account_id="{A}"}} 0\n'.encode()
    )
    assert rendered.pop("cloudflare_oauth_account_refresh_duration_seconds") == (
        f'cloudflare_oauth_account_refresh_duration_seconds{{account_id="{A}"}} 1.5\n'.encode()
    )
    assert set(rendered.values()) == {b""}


def test_a_failed_account_keeps_its_last_good_counts():
    failed = GOOD.failed("HTTP 500: boom", 2.0, None)
    assert failed.account_name == "Acme"
    assert family_text(failed, "cloudflare_oauth_clients") == family_text(
        GOOD, "cloudflare_oauth_clients"
    )
    assert family_text(failed, "cloudflare_oauth_account_up").endswith(" 0\n")
    assert family_text(failed, "cloudflare_oauth_account_last_success_timestamp_seconds") == (
        family_text(GOOD, "cloudflare_oauth_account_last_success_timestamp_seconds")
    )


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ('say "hi"', 'say \\"hi\\"'),
        ("back\\slash", "back\\\\slash"),
        ("two\nlines", "two\\nlines"),
        ("emoji 🚀", "emoji 🚀"),
        ("x" * 400, "x" * 400),
    ],
)
def test_label_values_are_escaped(name, escaped):
    snapshot = AccountSnapshot(A, name, True, COUNTS, 1.0, 0.1)
    assert family_text(snapshot, "cloudflare_oauth_account_info") == (
        f'cloudflare_oauth_account_info{{account_id="{A}",account_name="{escaped}"}} 1\n'
    )


def test_lone_surrogates_cannot_break_utf8():
    snapshot = AccountSnapshot(A, "bad \ud800 half", True, COUNTS, 1.0, 0.1)
    line = family_text(snapshot, "cloudflare_oauth_account_info").encode()
    assert line.decode("utf-8") == (
        f'cloudflare_oauth_account_info{{account_id="{A}",account_name="bad ? half"}} 1\n'
    )


def test_store_groups_every_family_once_with_accounts_in_order():
    store = ExpositionStore(discovering=True, refresh_interval=300, process_metrics=False)
    store.put(AccountSnapshot(B, "Beta", True, COUNTS, 2.0, 0.2))
    store.put(GOOD)
    body = store.render()
    assert body.count(b"# TYPE cloudflare_oauth_clients gauge\n") == 1
    totals = body.split(b"# TYPE cloudflare_oauth_clients gauge\n")[1].split(b"# HELP")[0]
    assert (
        totals
        == (
            f'cloudflare_oauth_clients{{account_id="{A}"}} 2\n'
            f'cloudflare_oauth_clients{{account_id="{B}"}} 2\n'
        ).encode()
    )
    # every HELP says where the numbers come from
    for family in ACCOUNT_FAMILIES[:7]:
        assert "background refresh" in family.help


def test_store_forgets_accounts_that_are_gone():
    store = ExpositionStore(discovering=True, refresh_interval=300, process_metrics=False)
    store.put(GOOD)
    store.put(AccountSnapshot(B, "Beta", True, COUNTS, 2.0, 0.2))
    assert B.encode() in store.render()
    store.retain({A})
    body = store.render()
    assert B.encode() not in body
    assert A.encode() in body


def test_store_process_wide_series():
    store = ExpositionStore(
        discovering=True, refresh_interval=90.0, process_metrics=False, version="9.9.9"
    )
    body = samples(store.render())
    assert "cloudflare_oauth_discovery_up" not in body  # unknown until the first discovery
    assert body["cloudflare_oauth_exporter_build_info"] == {(("version", "9.9.9"),): 1.0}
    assert body["cloudflare_oauth_exporter_refresh_interval_seconds"] == {(): 90.0}
    assert body["cloudflare_oauth_exporter_shard_info"] == {
        (("shard", "0"), ("total_shards", "1")): 1.0
    }
    assert body["cloudflare_oauth_exporter_total_shards"] == {(): 1.0}
    store.set_discovery_up(False)
    store.count_request("/accounts", "200")
    store.count_request("/accounts", "200")
    store.count_request("/accounts/{account_id}/oauth_clients", "timeout")
    body = samples(store.render())
    assert body["cloudflare_oauth_discovery_up"] == {(): 0.0}
    assert body["cloudflare_oauth_api_requests_total"] == {
        (("code", "200"), ("endpoint", "/accounts")): 2.0,
        (("code", "timeout"), ("endpoint", "/accounts/{account_id}/oauth_clients")): 1.0,
    }


def test_discovery_up_is_absent_with_a_fixed_account_list():
    store = ExpositionStore(discovering=False, refresh_interval=300, process_metrics=False)
    assert b"cloudflare_oauth_discovery_up" not in store.render()


def test_process_metrics_are_included_and_cached_for_a_second():
    now = [100.0]
    store = ExpositionStore(discovering=False, refresh_interval=300, monotonic=lambda: now[0])
    first = store.render()
    assert b"process_cpu_seconds_total" in first or b"python_info" in first
    assert store.render() == first  # within the second: the same bytes
    now[0] += 1.0
    assert b"python_info" in store.render()


def test_scrapes_reuse_the_rendered_bytes_until_something_changes():
    store = ExpositionStore(discovering=True, refresh_interval=300, process_metrics=False)
    store.put(GOOD)
    first = store.render()
    assert store.render() is first  # no copy, no re-render, between refreshes
    store.count_request("/accounts", "200")
    second = store.render()
    assert second != first
    assert store.render() is second
    store.set_discovery_up(True)
    third = store.render()
    assert b"cloudflare_oauth_discovery_up 1\n" in third
    store.put(GOOD.failed("HTTP 500", 0.3, None))
    assert store.render() != third


def test_findings_family_lists_every_finding():
    assert family_text(GOOD, "cloudflare_oauth_clients_with_finding") == (
        f'cloudflare_oauth_clients_with_finding{{account_id="{A}",finding="http_redirect_uri"}} 0\n'
        f'cloudflare_oauth_clients_with_finding{{account_id="{A}",finding="wildcard_redirect_uri"}} 0\n'
        f'cloudflare_oauth_clients_with_finding{{account_id="{A}",finding="wildcard_cors_origin"}} 0\n'
        f'cloudflare_oauth_clients_with_finding{{account_id="{A}",finding="implicit_grant"}} 1\n'
        f'cloudflare_oauth_clients_with_finding{{account_id="{A}",finding="public_unverified"}} 0\n'
        f'cloudflare_oauth_clients_with_finding{{account_id="{A}",finding="invalid_uri"}} 0\n'
    )


RISKY = ClientRecord(
    client_id="c9", client_name='App "9"', visibility="public", auth_method="none",
    verification_status="pending", rotated_secret_pending=True,
    created_at="2025-01-01T00:00:00Z", updated_at="not a time", promoted_at=None,
    findings=frozenset({"public_unverified", "implicit_grant"}),
)  # fmt: skip
CLEAN = RISKY._replace(client_id="c1", client_name="", rotated_secret_pending=False,
                       created_at=None, findings=frozenset())  # fmt: skip
PER_CLIENT = AccountSnapshot(A, "Acme", True, COUNTS, 1.0, 0.1, clients=(RISKY, CLEAN),
                             dropped_client_series=7)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "cloudflare_oauth_client_info",
            f'cloudflare_oauth_client_info{{account_id="{A}",client_id="c9",client_name="App \\"9\\"",visibility="public",auth_method="none",verification_status="pending"}} 1\n'
            f'cloudflare_oauth_client_info{{account_id="{A}",client_id="c1",client_name="",visibility="public",auth_method="none",verification_status="pending"}} 1\n',
        ),
        (
            "cloudflare_oauth_client_created_timestamp_seconds",
            f'cloudflare_oauth_client_created_timestamp_seconds{{account_id="{A}",client_id="c9"}} 1735689600.0\n',
        ),
        ("cloudflare_oauth_client_updated_timestamp_seconds", ""),  # unreadable: left out
        ("cloudflare_oauth_client_promoted_timestamp_seconds", ""),
        (
            "cloudflare_oauth_client_rotated_secret_pending",
            f'cloudflare_oauth_client_rotated_secret_pending{{account_id="{A}",client_id="c9"}} 1\n'
            f'cloudflare_oauth_client_rotated_secret_pending{{account_id="{A}",client_id="c1"}} 0\n',
        ),
        (
            "cloudflare_oauth_client_finding",
            f'cloudflare_oauth_client_finding{{account_id="{A}",client_id="c9",finding="implicit_grant"}} 1\n'
            f'cloudflare_oauth_client_finding{{account_id="{A}",client_id="c9",finding="public_unverified"}} 1\n',
        ),
        (
            "cloudflare_oauth_per_client_series_dropped",
            f'cloudflare_oauth_per_client_series_dropped{{account_id="{A}"}} 7\n',
        ),
    ],
)
def test_per_client_families_render_exactly(name, expected):
    assert family_text(PER_CLIENT, name) == expected


def test_per_client_series_counts_what_a_client_would_add_as_exported():
    store = ExpositionStore(
        discovering=False, refresh_interval=300, process_metrics=False, per_client=True
    )
    assert store.per_client_series(RISKY) == 2 + 1 + 2  # info, rotated; a readable time; 2 findings
    assert store.per_client_series(CLEAN) == 2
    no_findings = ExpositionStore(
        discovering=False, refresh_interval=300, process_metrics=False, per_client=True,
        keep=lambda name: name != "cloudflare_oauth_client_finding",
    )  # fmt: skip
    assert no_findings.per_client_series(RISKY) == 3  # denied families are not "dropped"


def test_per_client_families_only_appear_when_enabled():
    off = ExpositionStore(discovering=False, refresh_interval=300, process_metrics=False)
    off.put(PER_CLIENT)
    assert b"cloudflare_oauth_client_info" not in off.render()
    assert b"cloudflare_oauth_per_client_series_dropped" not in off.render()
    on = ExpositionStore(
        discovering=False, refresh_interval=300, process_metrics=False, per_client=True
    )
    on.put(PER_CLIENT)
    body = samples(on.render())
    assert body["cloudflare_oauth_per_client_series_dropped"] == {(("account_id", A),): 7.0}
    assert len(body["cloudflare_oauth_client_info"]) == 2


def test_allow_and_deny_filter_every_family_by_name():
    def only_clients(name: str) -> bool:
        return name.startswith("cloudflare_oauth_clients")

    store = ExpositionStore(discovering=True, refresh_interval=300, keep=only_clients)
    store.put(GOOD)
    store.count_request("/accounts", "200")
    store.set_discovery_up(True)
    names = set(samples(store.render()))
    assert names
    assert all(name.startswith("cloudflare_oauth_clients") for name in names)
    assert b"# HELP cloudflare_oauth_account_up" not in store.render()

    def no_process(name: str) -> bool:
        return not name.startswith(("process_", "python_"))

    store = ExpositionStore(discovering=False, refresh_interval=300, keep=no_process)
    store.put(GOOD)
    names = set(samples(store.render()))
    assert "cloudflare_oauth_exporter_build_info" in names
    assert not any(name.startswith(("process_", "python_")) for name in names)
