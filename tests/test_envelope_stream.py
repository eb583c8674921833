"""The streamed envelope parser agrees with json.loads, however the text is cut into pieces."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.envelope_stream import EnvelopeError, EnvelopeStream, Members

MAX = 1 << 20

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
members = st.dictionaries(
    st.sampled_from(["success", "errors", "messages", "result_info", "other", "result"]),
    json_values,
)


def parse(text: str, cuts: list[int]) -> tuple[list[object], Members]:
    stream = EnvelopeStream(max_value_size=MAX)
    items: list[object] = []
    start = 0
    for cut in sorted(cuts):
        items += stream.feed(text[start:cut])
        start = cut
    items += stream.feed(text[start:])
    items += stream.finish()
    return items, stream.members


@settings(max_examples=300, deadline=None)
@given(
    envelope=members,
    result=st.one_of(st.none(), st.lists(json_values, max_size=6)),
    indent=st.sampled_from([None, 0, 2]),
    data=st.data(),
)
def test_any_envelope_cut_anywhere_parses_like_json_loads(envelope, result, indent, data):
    if "result" in envelope:
        envelope["result"] = result  # a list or null, as the spec allows
    text = json.dumps(envelope, indent=indent)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(text)), max_size=8))
    items, found = parse(text, cuts)
    expected = json.loads(text)
    assert items == (expected.get("result") or [])
    for key in ("success", "errors", "result_info"):
        assert found.values.get(key, "absent") == expected.get(key, "absent")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "ends before the JSON object does"),
        ("<html>502 Bad Gateway</html>", "not JSON"),
        ("[]", "expected a JSON object"),
        ('{"success": true, "result": {}}', "'result' is not a list"),
        ('{"success": true, "result": "all"}', "'result' is not a list"),
        ('{"a": 1,}', "expected a member name"),
        ('{"a": 1} trailing', "text follows"),
        ('{"result": [1, ]}', "not JSON"),
        ('{"result": [1 2]}', "',' or ']'"),
        ('{"a": tru}', "not JSON"),
        ('{"success": true', "ends before"),
        ('{"result": [' + "9" * 5000 + "]}", "4300 digits"),
        ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ('{"result": [1], "result": [2]}', "appears twice"),
        ('{"success": true, "success": false}', "appears twice"),
    ],
)
def test_what_is_not_an_envelope_is_one_clear_error(text, message):
    with pytest.raises(EnvelopeError, match=message.replace("[", r"\[")):
        parse(text, list(range(0, len(text), 7)))


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999", "-0"])
def test_odd_numbers_are_values_not_crashes(value):
    items, members = parse(
        f'{{"result_info": {{"total_count": {value}}}, "result": [{value}]}}', [9]
    )
    assert len(items) == 1
    info = members.values["result_info"]
    assert isinstance(info, dict)
    assert "total_count" in info


def test_a_number_cut_at_a_piece_boundary_waits_for_the_rest():
    items, _ = parse('{"result": [12345, 1.5e3, -7]}', [15, 20, 25, 28])
    assert items == [12345, 1500.0, -7]


def test_an_item_larger_than_the_cap_is_refused_without_holding_more():
    stream = EnvelopeStream(max_value_size=1000)
    stream.feed('{"result": [{"client_id": "' + "x" * 900)
    with pytest.raises(EnvelopeError, match="larger than 1000"):
        stream.feed("y" * 200)


def test_whitespace_never_accumulates():
    stream = EnvelopeStream(max_value_size=1000)
    stream.feed('{"result": [')
    for _ in range(1000):
        assert stream.feed(" " * 10_000) == []
    assert len(stream._buffer) - stream._pos < 20_000


def test_a_large_item_in_tiny_reads_is_decoded_a_bounded_number_of_times(monkeypatch):
    # Each attempt decodes the unfinished item from its start: one per read would be quadratic
    # (a 1 MiB item in 256-character reads: 4096 attempts over 2 GB of text).
    from exporter import envelope_stream

    attempts = 0
    decode = envelope_stream._decode

    def counting(text: str, pos: int) -> tuple[object, int]:
        nonlocal attempts
        attempts += 1
        return decode(text, pos)

    monkeypatch.setattr(envelope_stream, "_decode", counting)
    large = {"client_id": "c1", "blob": "x" * (MAX - 100)}
    text = json.dumps({"success": True, "result": [large, {"client_id": "c2"}], "errors": []})
    items, found = parse(text, list(range(256, len(text), 256)))
    assert items == [large, {"client_id": "c2"}]
    assert found.values == {"success": True, "errors": []}
    assert attempts < 40
