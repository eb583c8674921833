"""Per-client records and the per-client cap: which clients keep their series."""

from __future__ import annotations

from exporter.model import MAX_LABEL_LENGTH, OAuthClient
from exporter.selection import ClientSelection, client_record


def client(n: int = 0, **fields) -> OAuthClient:
    return OAuthClient(**{"client_id": f"c{n}", "visibility": "private", **fields})


def test_client_record_keeps_what_per_client_metrics_need():
    long_name = "n" * 300
    record = client_record(
        client(
            7, client_name=long_name, has_rotated_secret=True, created_at="2025-01-01T00:00:00Z"
        ),
        frozenset({"implicit_grant"}),
    )
    assert record.client_id == "c7"
    assert record.client_name == "n" * MAX_LABEL_LENGTH
    assert (record.auth_method, record.verification_status) == ("unspecified", "none")
    assert record.rotated_secret_pending is True
    assert record.created_at == "2025-01-01T00:00:00Z"
    assert record.findings == frozenset({"implicit_grant"})


def test_the_per_client_cap_keeps_clients_with_findings_first_then_by_id():
    records = [
        client_record(client(n), frozenset({"implicit_grant"}) if n in (5, 9) else frozenset())
        for n in (3, 9, 1, 5, 7, 2)
    ]
    selection = ClientSelection(3, cost=lambda record: int(record.client_id[1:]))
    for record in records:
        selection.add(record)
    assert [r.client_id for r in selection.kept()] == ["c5", "c9", "c1"]
    assert selection.dropped == 3 + 7 + 2  # the costs of c3, c7 and c2


def test_the_selection_never_holds_more_than_its_limit():
    selection = ClientSelection(10, cost=lambda record: 1)
    for n in range(10_000):
        selection.add(client_record(client(n), frozenset()))
        assert len(selection._worst_first) <= 10
    assert len(selection.kept()) == 10
    assert selection.dropped == 9_990
    assert [r.client_id for r in selection.kept()] == sorted(f"c{n}" for n in range(10_000))[:10]


def test_a_zero_limit_keeps_nothing():
    selection = ClientSelection(0, cost=lambda record: 2)
    selection.add(client_record(client(1), frozenset({"implicit_grant"})))
    assert selection.kept() == ()
    assert selection.dropped == 2


def test_long_ids_stay_distinct_series_within_the_label_limit():
    first = client_record(client(client_id="x" * 300 + "a"), frozenset())
    second = client_record(client(client_id="x" * 300 + "b"), frozenset())
    assert first.client_id != second.client_id
    assert len(first.client_id) == len(second.client_id) == MAX_LABEL_LENGTH
    assert client_record(client(client_id="short"), frozenset()).client_id == "short"
