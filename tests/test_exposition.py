"""The exposition store: what a scrape gets, what changes it, and what the filters keep."""

from __future__ import annotations

import gzip

from exporter.exposition import ExpositionStore
from exporter.families import ACCOUNT_FAMILIES
from exporter.refresh_status import ApiFailure
from exporter.snapshot import AccountSnapshot
from tests.support.exposition import samples
from tests.support.snapshots import CLEAN, COUNTS, GOOD, PER_CLIENT, RISKY, A, B


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
    first = store.render_parts()
    again = store.render_parts()
    assert all(a is b for a, b in zip(first, again, strict=True))  # no re-render between refreshes
    assert store.render_gzip() is store.render_gzip()
    store.count_request("/accounts", "200")
    second = store.render_parts()
    assert second[0] is first[0]  # the account part is untouched by a request counted
    assert second[1] != first[1]
    assert store.render() == b"".join(second)
    store.set_discovery_up(True)
    third = store.render()
    assert b"cloudflare_oauth_discovery_up 1\n" in third
    zipped = store.render_gzip()
    store.put(GOOD.failed(ApiFailure(500, None, "boom"), 0.3, None))
    assert store.render() != third
    assert gzip.decompress(store.render_gzip()) == store.render() != gzip.decompress(zipped)


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
