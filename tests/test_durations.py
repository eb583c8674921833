from __future__ import annotations

import pytest

from exporter.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("250us", 0.00025),
        ("2d", 172800.0),
        ("300", 300.0),
        ("2.5", 2.5),
        (" 10s ", 10.0),
        ("1m0.5s", 60.5),
    ],
)
def test_parse_duration_accepts_go_durations_and_plain_seconds(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5 minutes", "5M", "m", "1h-5m", "inf", "nan", "1s2", "-"])
def test_parse_duration_rejects_anything_else(text):
    with pytest.raises(DurationError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(300, "5m"), (30, "30s"), (5400, "1h30m"), (3600, "1h"), (0.25, "250ms"), (90.5, "1m30.5s")],
)
def test_format_duration_is_the_shortest_go_style_text(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
