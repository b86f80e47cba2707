"""The sieve's memory of sent `seen` buckets: it may forget, it never invents."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from streams.seen_buckets import PREFIX, WINDOW, SeenBuckets, bucket_number

DEVICE = "pc-1"
START = datetime(2025, 4, 9, 9, 40, tzinfo=UTC)


def stamp(buckets_after_start: int, second: int = 0) -> str:
    moment = START + timedelta(minutes=10 * buckets_after_start, seconds=second)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_a_bucket_is_sent_once_per_device():
    memory = SeenBuckets()
    assert not memory.sent(DEVICE, stamp(0))
    memory.mark(DEVICE, stamp(0))
    assert memory.sent(DEVICE, stamp(0, second=599))
    assert not memory.sent(DEVICE, stamp(1))
    assert not memory.sent("pc-2", stamp(0))


def test_older_buckets_are_remembered_across_the_window_and_not_beyond():
    memory = SeenBuckets()
    memory.mark(DEVICE, stamp(0))
    memory.mark(DEVICE, stamp(WINDOW - 1))
    assert memory.sent(DEVICE, stamp(0))  # the oldest bucket the window holds
    assert not memory.sent(DEVICE, stamp(5))  # inside the window, never sent
    memory.mark(DEVICE, stamp(WINDOW))
    assert not memory.sent(DEVICE, stamp(0))  # fell out: sent again, which is harmless
    assert memory.sent(DEVICE, stamp(WINDOW - 1)) and memory.sent(DEVICE, stamp(WINDOW))


def test_a_bucket_older_than_the_window_is_not_remembered_and_changes_nothing():
    memory = SeenBuckets()
    memory.mark(DEVICE, stamp(1000))
    memory.mark(DEVICE, stamp(1000 - WINDOW))
    assert not memory.sent(DEVICE, stamp(1000 - WINDOW))
    assert memory.sent(DEVICE, stamp(1000))


def test_an_earlier_bucket_marked_late_is_remembered_and_keeps_the_newest():
    memory = SeenBuckets()
    memory.mark(DEVICE, stamp(30))
    memory.mark(DEVICE, stamp(10))  # another partition, hours behind
    assert memory.sent(DEVICE, stamp(10)) and memory.sent(DEVICE, stamp(30))
    assert not memory.sent(DEVICE, stamp(20))


def test_forgetting_lets_every_bucket_through_again():
    memory = SeenBuckets()
    memory.mark(DEVICE, stamp(0))
    memory.forget()
    assert not memory.sent(DEVICE, stamp(0))


def test_past_its_limit_the_memory_forgets_rather_than_grows():
    memory = SeenBuckets(max_tracked=3)
    for device in ("a", "b", "c", "d"):
        memory.mark(device, stamp(0))
    assert memory.sent("d", stamp(0))
    assert not memory.sent("a", stamp(0))


def test_text_that_is_not_a_time_is_never_remembered():
    memory = SeenBuckets()
    odd_texts = ("2025-04-09 banana", "2025-13-09T09:40Z", "2025-04-09T24:00Z", "2025-04-09T09:60Z", "x")
    for odd in odd_texts:
        memory.mark(DEVICE, odd)
        assert not memory.sent(DEVICE, odd)
        assert bucket_number(odd[:PREFIX]) is None


@given(st.datetimes(min_value=datetime(2010, 1, 1), max_value=datetime(2100, 1, 1)))
def test_bucket_numbers_count_ten_minutes_of_the_clock_face(moment: datetime) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    floored = moment.replace(minute=moment.minute - moment.minute % 10, second=0, microsecond=0)
    tens = (floored - datetime(2010, 1, 1)) // timedelta(minutes=10)
    assert bucket_number(text[:PREFIX]) == bucket_number("2010-01-01T00:0") + tens  # type: ignore[operator]
