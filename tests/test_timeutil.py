import pytest

from streams.timeutil import BadTimestamp, parse_event_time, to_rfc3339

NOW = parse_event_time("2026-01-01T00:00:00Z", 2**62)


def test_winlogbeat_seven_fraction_digits_are_read():
    millis = parse_event_time("2019-11-07T10:37:04.2260925Z", NOW)
    assert to_rfc3339(millis) == "2019-11-07T10:37:04.226Z"


def test_offsets_are_converted_to_utc():
    assert parse_event_time("2025-04-09T09:41:12+02:00", NOW) == parse_event_time("2025-04-09T07:41:12Z", NOW)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2025-04-09T09:41:12", "no UTC offset"),
        ("yesterday at noon", "unreadable"),
        ("1601-01-01T00:00:00Z", "before 2010"),
        ("2031-01-01T00:00:00Z", "in the future"),
        (1744191672, "not a string"),
    ],
)
def test_unusable_times_are_refused_with_a_reason(text, why):
    with pytest.raises(BadTimestamp, match=why):
        parse_event_time(text, NOW)


def test_rfc3339_round_trip_keeps_milliseconds():
    assert parse_event_time(to_rfc3339(1744191672123), NOW) == 1744191672123
