"""Change detection: exact counts and audit lines, checked against a plain diff of two lists."""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.changes import (
    CHANGES,
    FIELDS,
    MAX_EVENTS,
    ByteBudget,
    ChangeDetector,
    ClientChange,
    Detected,
    NotListed,
    RecentChanges,
)
from exporter.findings import FINDINGS, client_findings
from exporter.model import OAuthClient, parse_oauth_client
from exporter.selection import shown_id
from exporter.simulator import Fault, Simulator, make_account, make_client
from exporter.status_page import render_status_page
from tests.support.exposition import sample, samples
from tests.support.refresh import Refresher
from tests.support.simulator import TOKEN


def detect(before: list[dict[str, Any]] | None, after: list[dict[str, Any]]) -> Detected:
    """What a refresh reading `after` finds against a baseline made from `before`."""
    baseline = None
    if before is not None:
        first = ChangeDetector(None)
        for raw in before:
            client = parse_oauth_client(raw)
            first.add(client, client_findings(client))
        baseline, nothing = first.finish()
        assert nothing.total == 0
    detector = ChangeDetector(baseline)
    for raw in after:
        client = parse_oauth_client(raw)
        detector.add(client, client_findings(client))
    return detector.finish()[1]


CLIENT = {"client_id": "c1", "visibility": "private", "client_name": "App",
          "redirect_uris": ["https://a.example.com/cb"], "grant_types": ["authorization_code"],
          "response_types": ["code"], "token_endpoint_auth_method": "client_secret_basic",
          "client_uri_verification": {"status": "verified", "text": "t"}}  # fmt: skip


def test_the_first_refresh_is_the_baseline_and_says_nothing():
    found = detect(None, [CLIENT])
    assert found.total == 0
    assert found.events == ()


# An edit of CLIENT, and the documented fields it changes: every field, and edits that are none.
FIELD_EDITS = [
    ({"visibility": "public"}, {"visibility"}),  # verified: public adds no finding
    ({"token_endpoint_auth_method": "none"}, {"token_endpoint_auth_method"}),
    ({"redirect_uris": ["https://b.example.com/cb"]}, {"redirect_uris"}),
    ({"redirect_uris": ["https://a.example.com/cb", "http://b.example.com/cb"]},
     {"redirect_uris", "findings"}),
    ({"post_logout_redirect_uris": ["https://a.example.com/bye"]},
     {"post_logout_redirect_uris"}),
    ({"allowed_cors_origins": ["*"]}, {"allowed_cors_origins", "findings"}),
    ({"grant_types": ["authorization_code", "refresh_token"]}, {"grant_types"}),
    ({"response_types": ["code", "token"]}, {"response_types", "findings"}),
    ({"scopes": ["account.read"]}, {"scopes"}),
    ({"client_uri": "https://a.example.com"}, {"client_uri"}),
    ({"client_uri_verification": {"status": "failed", "text": "t"}},
     {"client_uri_verification"}),
    ({"client_uri_verification": {"status": "verified", "text": "other"}},
     {"client_uri_verification"}),
    ({"has_rotated_secret": True}, {"has_rotated_secret"}),
    ({"client_name": "Renamed"}, {"client_name"}),
    ({"redirect_uris": list(reversed(["https://a.example.com/cb"]))}, set()),  # same set
    ({"logo_uri": "https://a.example.com/logo.png"}, set()),  # not a documented field here
]  # fmt: skip


def test_the_edits_cover_every_documented_field():
    assert set().union(*(fields for _, fields in FIELD_EDITS)) == set(FIELDS)


@pytest.mark.parametrize(("edit", "fields"), FIELD_EDITS)
def test_each_documented_field_counts_once_when_it_changes(edit, fields):
    found = detect([CLIENT], [{**CLIENT, **edit}])
    assert found.by_change == (Counter({"updated": 1}) if fields else Counter())
    assert set(found.by_field) == fields
    assert all(count == 1 for count in found.by_field.values())


def test_a_client_replaced_by_another_is_one_deleted_and_one_created():
    other = {**CLIENT, "client_id": "c2"}
    found = detect([CLIENT], [other])
    assert found.by_change == Counter({"created": 1, "deleted": 1})
    assert found.by_field == Counter()
    assert [(e.change, e.client_id) for e in found.events] == [("created", "c2"), ("deleted", "c1")]


def test_a_risky_client_replacing_a_risky_one_still_gains_the_finding():
    risky = {**CLIENT, "redirect_uris": ["http://a.example.com/cb"]}
    found = detect([risky], [{**risky, "client_id": "c2"}])
    assert found.findings_gained == Counter({"http_redirect_uri": 1})


def test_made_public_counts_only_a_change_to_public():
    found = detect([CLIENT, {**CLIENT, "client_id": "c2", "visibility": "public"}],
                   [{**CLIENT, "visibility": "public"}, {**CLIENT, "client_id": "c2"}])  # fmt: skip
    assert found.made_public == 1
    assert found.by_field["visibility"] == 2


def test_an_audit_line_says_what_changed_before_and_after():
    edited = {**CLIENT, "visibility": "public", "has_rotated_secret": True,
              "client_uri_verification": {"status": "pending"},
              "redirect_uris": ["http://evil.example.com/cb"],
              "response_types": ["code", "token"]}  # fmt: skip
    [event] = detect([CLIENT], [edited]).events
    assert event.change == "updated"
    assert (event.client_id, event.client_name) == ("c1", "App")
    assert dict(event.details) == {
        "visibility": "private -> public",
        "response_types": "code -> code,token",
        "redirect_uris_added": "http://evil.example.com/cb",
        "redirect_uris_removed": "https://a.example.com/cb",
        "findings_gained": "http_redirect_uri, implicit_grant, public_unverified",
        "secret": "rotated",
    }


def test_long_lists_in_an_audit_line_are_cut_with_a_count():
    many = {**CLIENT, "redirect_uris": [f"https://{n}.example.com/cb" for n in range(40)]}
    [event] = detect([CLIENT], [many]).events
    details = dict(event.details)
    assert details["redirect_uris_added"].count("https://") == 5  # the first kept, sorted
    assert details["redirect_uris_count"] == "1 -> 40"  # and how many there are now


def test_a_change_past_the_kept_values_is_still_seen():
    uris = [f"https://{n}.example.com/cb" for n in range(40)]
    many = {**CLIENT, "redirect_uris": uris}
    changed = {**CLIENT, "redirect_uris": [*uris[:-1], "https://new.example.com"]}
    found = detect([many], [changed])
    assert found.by_field == Counter({"redirect_uris": 1})
    long = {**CLIENT, "redirect_uris": ["https://a.example.com/" + "x" * 400]}
    longer = {**CLIENT, "redirect_uris": ["https://a.example.com/" + "x" * 400 + "y"]}
    assert detect([long], [longer]).by_field == Counter({"redirect_uris": 1})


@pytest.mark.parametrize(
    ("field", "before", "after"),
    [
        ("client_name", "A" * 200, "A" * 199 + "B"),  # past the 128 characters a line shows
        ("client_name", "App \ud800", "App \udfff"),  # both shown as U+FFFD
        ("visibility", "v" * 200, "v" * 199 + "w"),
        ("token_endpoint_auth_method", "m" * 200, "m" * 199 + "n"),
        ("redirect_uris", ["https://a.example.com/\ud800"], ["https://a.example.com/\udfff"]),
    ],
)
def test_a_change_the_audit_line_cannot_show_is_still_counted(field, before, after):
    found = detect([{**CLIENT, field: before}], [{**CLIENT, field: after}])
    assert found.by_field == Counter({field: 1})
    [event] = found.events
    assert all(len(text) < 400 for _, text in event.details)  # cut, with a digest of the whole


def test_a_cut_name_shows_the_same_digest_in_every_process():
    [event] = detect([CLIENT], [{**CLIENT, "client_name": "N" * 200}]).events
    # A CRC of the whole name, not hash() (which differs in every process): "#TGXi" in any
    # process, so the same name cut shows the same after a restart.
    assert event.client_name == "N" * 128 + "… #TGXi"


def test_a_name_only_ill_formed_is_not_said_to_be_cut():
    [event] = detect([CLIENT], [{**CLIENT, "client_name": "App \ud800"}]).events
    assert event.client_name.startswith("App \ufffd #")  # no "…": nothing was left out
    assert len(event.client_name) == len("App \ufffd #") + 4
    assert "…" not in event.client_name


def test_a_long_client_id_is_shown_as_its_per_client_series_shows_it():
    long_id = "i" * 400
    found = detect([CLIENT], [CLIENT, {**CLIENT, "client_id": long_id}])
    [event] = found.events
    assert event.client_id == shown_id(long_id)
    other = long_id[:-1] + "j"  # the same first 300 characters: still two clients
    found = detect(
        [CLIENT, {**CLIENT, "client_id": long_id}], [CLIENT, {**CLIENT, "client_id": other}]
    )
    assert found.by_change == Counter({"created": 1, "deleted": 1})
    assert {e.client_id for e in found.events} == {shown_id(long_id), shown_id(other)}


def test_a_burst_is_counted_in_full_and_listed_in_part():
    rng = random.Random(1)
    found = detect([], [make_client(rng, n) for n in range(10_000)])
    assert found.by_change == Counter({"created": 10_000})
    assert found.total == 10_000
    assert len(found.events) == MAX_EVENTS


def test_the_status_page_keeps_the_last_hundred_changes_newest_first():
    recent = RecentChanges()
    for refresh in range(30):  # 30 refreshes of 7 changes each: 210 in all
        changes = [ClientChange("created", f"r{refresh}c{n}", "", (), ()) for n in range(7)]
        recent.add(float(refresh), "acc", None, changes)
    assert len(recent.items) == 100
    assert [item[3] for item in recent.items[:8]] == [
        *(ClientChange("created", f"r29c{n}", "", (), ()) for n in reversed(range(7))),
        ClientChange("created", "r28c6", "", (), ()),
    ]
    assert recent.items[-1][3] == ClientChange("created", "r15c5", "", (), ())  # 110 let go


def test_the_changes_of_a_burst_not_listed_are_kept_as_a_count_after_those_listed():
    recent = RecentChanges()
    listed = [ClientChange("created", f"c{n}", "", (), ()) for n in range(3)]
    recent.add(5.0, "acc", "Acme", listed, not_listed=1234)
    recent.add(6.0, "other", None, [ClientChange("deleted", "d", "", (), ())])  # none more
    assert [item[3] for item in recent.items] == [
        ClientChange("deleted", "d", "", (), ()), NotListed(1234), *reversed(listed),
    ]  # fmt: skip
    assert recent.items[1] == (5.0, "acc", "Acme", NotListed(1234))
    page = render_status_page([], None, telemetry_path="/metrics", per_client=False,
                              changes=recent.items)  # fmt: skip
    assert "and 1,234 more changes in that refresh" in page


# --- property: counters against an independent diff ------------------------------------------


def _uris(rng: random.Random) -> list[str]:
    """0 to 8 URIs: more than an audit line lists, risky ones, one longer than it keeps."""
    pool = ["https://a.example.com/cb", "http://b.example.com/cb", "https://*.example.com/cb",
            "https://c.example.com/" + "x" * 400, "https://c.example.com/" + "x" * 399 + "y",
            *(f"https://{n}.example.com/cb" for n in range(6)), "not a uri"]  # fmt: skip
    return rng.sample(pool, rng.randrange(0, 9))


# A new value for each documented field (None: the field is left out).
NEW_VALUE = {
    "visibility": lambda rng: rng.choice(["public", "private", "internal"]),
    "token_endpoint_auth_method": lambda rng: rng.choice(
        ["none", "client_secret_basic", "client_secret_post", "m" * 200, None]
    ),
    "redirect_uris": _uris,
    "post_logout_redirect_uris": _uris,
    "allowed_cors_origins": lambda rng: rng.choice([["*"], ["https://x.example.com"], []]),
    "grant_types": lambda rng: rng.choice(
        [["authorization_code"], ["refresh_token"], ["authorization_code", "refresh_token"]]
    ),
    "response_types": lambda rng: rng.choice([["code"], ["code", "token"], ["id_token"], None]),
    "scopes": lambda rng: rng.choice([["account.read"], ["account.read", "zone.read"], None]),
    "client_uri": lambda rng: rng.choice(
        ["https://a.example.com", "http://b.example.com", "not a uri", None]
    ),
    "client_uri_verification": lambda rng: rng.choice(
        [
            {"status": "verified", "text": "t"},
            {"status": "verified", "text": "u"},
            {"status": "failed"},
            None,
        ]
    ),
    "has_rotated_secret": lambda rng: rng.choice([True, False, None]),
    "client_name": lambda rng: rng.choice(
        ["A", "B", "\ud800", "\udfff", "x" * 200, "x" * 199 + "y"]
    ),
}
EDITS = st.sampled_from(["create", "delete", "nothing", *NEW_VALUE])


def test_the_random_edits_reach_every_documented_field_but_findings():
    assert set(NEW_VALUE) == set(FIELDS) - {"findings"}  # findings follow from the others


def plain_diff(before: dict[str, OAuthClient], after: dict[str, OAuthClient]):
    """The diff as a person would write it: dicts of clients, compared field by field."""

    def values(c: OAuthClient) -> dict[str, object]:
        return {
            "visibility": c.visibility, "token_endpoint_auth_method": c.token_endpoint_auth_method,
            "redirect_uris": set(c.redirect_uris),
            "post_logout_redirect_uris": set(c.post_logout_redirect_uris),
            "allowed_cors_origins": set(c.allowed_cors_origins), "grant_types": c.grant_types,
            "response_types": c.response_types, "scopes": set(c.scopes),
            "client_uri": c.client_uri,
            "client_uri_verification": (c.verification_status, c.verification_text),
            "has_rotated_secret": c.has_rotated_secret, "client_name": c.client_name or "",
            "findings": client_findings(c),
        }  # fmt: skip

    changes: Counter[str] = Counter()
    fields: Counter[str] = Counter()
    gained: Counter[str] = Counter()
    made_public = 0
    changes["created"] = len(after.keys() - before.keys())
    changes["deleted"] = len(before.keys() - after.keys())
    for key in after.keys() - before.keys():
        gained.update(client_findings(after[key]))
    for key in before.keys() & after.keys():
        old, new = values(before[key]), values(after[key])
        differing = [f for f in FIELDS if old[f] != new[f]]
        if differing:
            changes["updated"] += 1
            fields.update(differing)
        gained.update(client_findings(after[key]) - client_findings(before[key]))
        made_public += old["visibility"] != "public" and new["visibility"] == "public"
    return +changes, fields, gained, made_public


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10**6), edits=st.lists(st.lists(EDITS, max_size=12), min_size=1, max_size=4)
)
def test_random_edits_are_counted_exactly_like_a_plain_diff(seed, edits):
    rng = random.Random(seed)
    clients = {
        c["client_id"]: c for c in (make_client(rng, n) for n in range(rng.randrange(0, 30)))
    }
    detector = ChangeDetector(None)
    for raw in clients.values():
        parsed = parse_oauth_client(raw)
        detector.add(parsed, client_findings(parsed))
    baseline, _ = detector.finish()
    for round_of_edits in edits:
        before = {k: parse_oauth_client(v) for k, v in clients.items()}
        for edit in round_of_edits:
            ids = sorted(clients)
            target = clients[rng.choice(ids)] if ids else None
            if edit == "create" or target is None:
                fresh = make_client(rng, rng.randrange(1000))
                clients[fresh["client_id"]] = fresh
            elif edit == "delete":
                del clients[target["client_id"]]
            elif edit != "nothing":
                value = NEW_VALUE[edit](rng)
                if value is None:
                    target.pop(edit, None)
                else:
                    target[edit] = value
        after = {k: parse_oauth_client(v) for k, v in clients.items()}
        detector = ChangeDetector(baseline)
        for client in after.values():
            detector.add(client, client_findings(client))
        baseline, found = detector.finish()
        expected_changes, expected_fields, gained, made_public = plain_diff(before, after)
        assert +found.by_change == expected_changes
        assert +found.by_field == +expected_fields
        assert +found.findings_gained == +gained
        assert found.made_public == made_public
        assert found.total == sum(expected_changes.values())


# --- through the refresh, over HTTP, with the simulator's write endpoints --------------------


@pytest.fixture
def living(serve_simulator):
    rng = random.Random(21)
    account = make_account(rng, "Acme", 5)
    simulator = Simulator([account])
    url = serve_simulator(simulator)
    refresher = Refresher(url, concurrency=2)
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"})
    yield simulator, account, refresher, http
    http.close()
    refresher.close()


def counter(refresher: Refresher, name: str, account_id: str, **labels: str) -> float | None:
    return sample(refresher.store.render(), name, account_id=account_id, **labels)


def test_every_documented_change_and_field_is_exported_from_the_first_read(living):
    _, account, refresher, _ = living
    assert refresher.refresh()
    found = samples(refresher.store.render())
    changes = {
        dict(k)["change"]: v for k, v in found["cloudflare_oauth_client_changes_total"].items()
    }
    fields = {
        dict(k)["field"]: v for k, v in found["cloudflare_oauth_client_field_changes_total"].items()
    }
    gained = {
        dict(k)["finding"]: v
        for k, v in found["cloudflare_oauth_client_findings_gained_total"].items()
    }
    assert changes == dict.fromkeys(CHANGES, 0)
    assert fields == dict.fromkeys(FIELDS, 0)
    assert gained == dict.fromkeys(FINDINGS, 0)
    assert counter(refresher, "cloudflare_oauth_client_made_public_total", account.id) == 0


def test_changes_made_through_the_api_are_counted_and_audited(living, caplog):
    _, account, refresher, http = living
    assert refresher.refresh()
    base = f"/accounts/{account.id}/oauth_clients"
    victim, edited = account.clients[0]["client_id"], account.clients[1]["client_id"]
    assert account.clients[1]["visibility"] == "private"
    assert not account.clients[1].get("has_rotated_secret", False)  # so rotating is a change
    for answer in (
        http.post(base, json={"client_name": "New", "redirect_uris": ["http://n.example.com"]}),
        http.delete(f"{base}/{victim}"),
        http.patch(f"{base}/{edited}", json={"visibility": "public", "client_name": "Edited"}),
        http.post(f"{base}/{edited}/rotate_secret"),
    ):
        assert answer.status_code == 200, answer.text
    with caplog.at_level(logging.INFO, logger="exporter.audit"):
        assert refresher.refresh()
    name = "cloudflare_oauth_client_changes_total"
    assert [counter(refresher, name, account.id, change=c) for c in CHANGES] == [1, 1, 1]
    field = "cloudflare_oauth_client_field_changes_total"
    assert counter(refresher, field, account.id, field="client_name") == 1
    assert counter(refresher, field, account.id, field="visibility") == 1
    assert counter(refresher, field, account.id, field="has_rotated_secret") == 1
    assert counter(refresher, "cloudflare_oauth_client_made_public_total", account.id) == 1
    assert counter(refresher, "cloudflare_oauth_client_findings_gained_total", account.id,
                   finding="http_redirect_uri") == 1  # fmt: skip
    events = {r.change: r for r in caplog.records if r.getMessage() == "oauth client changed"}
    assert set(events) == {"created", "deleted", "updated"}
    assert events["deleted"].client_id == victim
    assert events["updated"].client_name == "Edited"
    assert events["created"].account_name == "Acme"
    assert "client_name" in events["updated"].fields
    assert events["updated"].visibility == "private -> public"


@pytest.mark.parametrize(("edit", "fields"), FIELD_EDITS)
def test_each_field_changed_through_the_api_is_counted_exactly(living, edit, fields):
    _, account, refresher, http = living
    base = f"/accounts/{account.id}/oauth_clients"
    made = http.post(base, json={k: v for k, v in CLIENT.items() if k != "client_id"})
    assert made.status_code == 200, made.text
    client_id = made.json()["result"]["client_id"]
    assert refresher.refresh()  # the baseline, with the new client in it
    answer = http.patch(f"{base}/{client_id}", json=edit)
    assert answer.status_code == 200, answer.text
    assert refresher.refresh()
    name = "cloudflare_oauth_client_changes_total"
    changes = [counter(refresher, name, account.id, change=c) for c in CHANGES]
    assert changes == [0, 0, 1 if fields else 0]
    field = "cloudflare_oauth_client_field_changes_total"
    counted = {f: counter(refresher, field, account.id, field=f) for f in FIELDS}
    assert counted == {f: int(f in fields) for f in FIELDS}


def test_a_failed_refresh_detects_nothing_and_keeps_the_baseline(living):
    simulator, account, refresher, _ = living
    assert refresher.refresh()
    assert account.clients[1]["visibility"] == "private"
    simulator.update_client(account.id, account.clients[1]["client_id"], visibility="public")
    account.fault = Fault.html(503)
    assert not refresher.refresh()
    name = "cloudflare_oauth_client_changes_total"
    assert counter(refresher, name, account.id, change="updated") == 0
    account.fault = None
    assert refresher.refresh()
    assert counter(refresher, name, account.id, change="updated") == 1  # seen once, not lost
    assert refresher.refresh()
    assert counter(refresher, name, account.id, change="updated") == 1  # and not seen twice


def test_the_status_page_keeps_the_last_changes_newest_first(living):
    simulator, account, refresher, _ = living
    assert refresher.refresh()
    first = simulator.create_client(account.id, client_name="First")
    assert refresher.refresh()
    simulator.delete_client(account.id, first["client_id"])
    assert refresher.refresh()
    recent = refresher.store.recent_changes()
    shown = [(c.change, c.client_id) if isinstance(c, ClientChange) else c for *_, c in recent]
    assert shown == [
        ("deleted", first["client_id"]),
        ("created", first["client_id"]),
    ]
    assert all(name == "Acme" for _, _, name, _ in recent)


def test_an_account_past_the_limit_is_not_followed_and_keeps_nothing():
    rng = random.Random(4)
    clients = [parse_oauth_client(make_client(rng, n)) for n in range(30)]
    first = ChangeDetector(None, limit=20)
    for client in clients[:10]:
        first.add(client, client_findings(client))
    baseline, _ = first.finish()
    assert baseline is not None
    detector = ChangeDetector(baseline, limit=20)
    for client in clients:
        detector.add(client, client_findings(client))
    after, found = detector.finish()
    assert detector.overflowed
    assert after is None
    assert found.total == 0  # not "20 created": it was not compared at all
    assert len(detector._ids) == 0  # what it had kept is let go


def test_an_account_not_followed_says_so_in_a_gauge_and_once_each_time_it_stops(
    living, monkeypatch, caplog
):
    _, account, refresher, http = living
    stopped = "change detection is off for this account"

    def refresh(budget: int) -> tuple[float | None, int]:
        """The gauge after a refresh with `budget` bytes of fingerprints, and warnings said."""
        monkeypatch.setattr(refresher.poller, "_change_bytes", budget)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="exporter.poller"):
            assert refresher.refresh()
        said = sum(r.getMessage().startswith(stopped) for r in caplog.records)
        return counter(refresher, "cloudflare_oauth_account_changes_followed", account.id), said

    assert refresh(24 << 20) == (1, 0)
    assert refresh(0) == (0, 1)
    assert refresh(0) == (0, 0)  # said once while it stays off
    made = http.post(f"/accounts/{account.id}/oauth_clients", json={"client_name": "Unseen"})
    assert made.status_code == 200, made.text
    assert refresh(24 << 20) == (1, 0)  # a new baseline: what happened meanwhile is unknown
    assert counter(refresher, "cloudflare_oauth_client_changes_total", account.id,
                   change="created") == 0  # fmt: skip
    assert refresh(0) == (0, 1)  # it stopped again: said again


def test_a_refresh_in_which_everything_changed_reads_each_block_once(monkeypatch):
    from exporter import changes

    rng = random.Random(9)
    raw = [make_client(rng, n) for n in range(5000)]
    detector = ChangeDetector(None)
    for item in raw:
        client = parse_oauth_client(item)
        detector.add(client, client_findings(client))
    baseline, _ = detector.finish()
    decodes = 0
    unpack = changes._unpack

    def counting(block: bytes):
        nonlocal decodes
        decodes += 1
        return unpack(block)

    monkeypatch.setattr(changes, "_unpack", counting)
    survivors = [{**item, "client_name": "renamed"} for item in raw[1000:]]
    rng.shuffle(survivors)  # an API that answers in another order each time
    detector = ChangeDetector(baseline)
    for item in survivors:
        client = parse_oauth_client(item)
        detector.add(client, client_findings(client))
    _, found = detector.finish()
    assert found.by_change == Counter({"updated": 4000, "deleted": 1000})
    assert found.by_field == Counter({"client_name": 4000})
    blocks = -(-5000 // 256) + -(-4000 // 256)  # old blocks, then new ones
    assert decodes <= blocks + 1  # + the deleted clients listed (the first few)


def test_change_detection_lets_go_past_its_memory_budget():
    rng = random.Random(10)
    detector = ChangeDetector(None, max_bytes=64 * 1024)
    for n in range(5000):
        client = parse_oauth_client(make_client(rng, n))
        detector.add(client, client_findings(client))
    baseline, found = detector.finish()
    assert detector.overflowed
    assert baseline is None
    assert found.total == 0


def test_detectors_sharing_a_budget_hold_each_account_once_and_give_back_what_they_drop():
    rng = random.Random(12)
    clients = [parse_oauth_client(make_client(rng, n)) for n in range(600)]

    def build(previous, budget, count):
        detector = ChangeDetector(previous, budget=budget)
        for client in clients[:count]:
            detector.add(client, client_findings(client))
        return detector

    first = build(None, ByteBudget(), 300)
    baseline, _ = first.finish()
    assert baseline is not None
    kept = baseline.size()
    budget = ByteBudget(used=kept)  # a refresh starts counting the baselines kept
    same = build(baseline, budget, 300)
    assert budget.used == kept  # the same clients again: its own bytes, not twice
    assert same.finish()[0] is not None
    assert budget.used == kept
    grown = build(baseline, budget, 600)
    assert budget.used > kept  # it grew: the growth is drawn
    grown.cancel()  # the refresh failed: the previous baseline stays, counted
    assert budget.used == kept
    tight = ByteBudget(total=kept + 1000, used=kept)
    too_large = build(baseline, tight, 600)
    assert too_large.overflowed
    assert tight.used == 0  # not followed: the previous baseline is let go too
    assert too_large.finish()[0] is None
    assert tight.used == 0


def test_the_audit_line_as_written_says_before_and_after(living):
    import io
    import json as json_module

    from exporter.logs import configure_logging

    simulator, account, refresher, http = living
    target = account.clients[2]
    simulator.update_client(account.id, target["client_id"], has_rotated_secret=True,
                            grant_types=["authorization_code"])  # fmt: skip
    assert refresher.refresh()
    base = f"/accounts/{account.id}/oauth_clients/{target['client_id']}"
    patch = {
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "post_logout_redirect_uris": ["https://bye.example.com"], "allowed_cors_origins": ["*"],
    }  # fmt: skip
    assert http.patch(base, json=patch).status_code == 200
    assert http.delete(f"{base}/rotate_secret").status_code == 200
    lines = {}
    for log_format in ("json", "logfmt"):
        stream = io.StringIO()
        configure_logging("info", log_format, stream=stream)
        try:
            assert refresher.refresh()
        finally:
            configure_logging("info", "logfmt")
        [lines[log_format]] = [
            line for line in stream.getvalue().splitlines() if "oauth client changed" in line
        ]
        assert http.post(f"{base}/rotate_secret").status_code == 200  # the next change
    event = json_module.loads(lines["json"])
    assert event["logger"] == "exporter.audit"
    assert event["change"] == "updated"
    assert event["secret"] == "rotated secret deleted"
    assert event["grant_types"] == "authorization_code -> authorization_code,refresh_token"
    assert event["findings_gained"] == "wildcard_cors_origin"
    assert event["allowed_cors_origins_added"] == "*"
    assert event["post_logout_redirect_uris_added"] == "https://bye.example.com"
    assert event["post_logout_redirect_uris_removed"].startswith("https://")
    assert event["token_endpoint_auth_method"].endswith(" -> none")
    line = lines["logfmt"]
    assert line.split(" ", 1)[1].startswith(
        'level=info logger=exporter.audit msg="oauth client changed" account_id='
    )
    assert f"client_id={target['client_id']} " in line
    assert " change=updated fields=has_rotated_secret secret=rotated" in line


def test_a_burst_through_the_refresh_logs_a_bounded_number_of_lines(living, caplog):
    simulator, account, refresher, _ = living
    assert refresher.refresh()
    for n in range(MAX_EVENTS + 30):
        simulator.create_client(account.id, client_name=f"Burst {n}")
    with caplog.at_level(logging.INFO, logger="exporter.audit"):
        assert refresher.refresh()
    lines = [r for r in caplog.records if r.name == "exporter.audit"]
    assert len(lines) == MAX_EVENTS + 1
    summary = lines[-1]
    assert summary.not_listed == 30
    assert summary.clients_created == MAX_EVENTS + 30
    assert counter(refresher, "cloudflare_oauth_client_changes_total", account.id,
                   change="created") == MAX_EVENTS + 30  # fmt: skip
    recent = [change for _, _, _, change in refresher.store.recent_changes()]
    assert recent[0] == NotListed(30)  # newest first: the status page says it was cut
    page = render_status_page(
        [], None, telemetry_path="/metrics", per_client=False,
        changes=refresher.store.recent_changes(),
    )  # fmt: skip
    assert "and 30 more changes in that refresh" in page
