"""The fleet clock: the newest time a quorum of devices has reached, minus the lateness."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.clock import FleetClock, quorum
from streams.timeutil import HOUR_MS, MINUTE_MS

DAY_MS = 24 * HOUR_MS

T0 = 1_743_000_000_000  # 2025-03-26


def test_the_quorum_grows_with_the_fleet_but_never_outvotes_a_pair():
    assert [quorum(n) for n in (0, 1, 2, 3, 4, 5, 6, 999, 1000, 100_000)] == [1, 1, 1, 2, 2, 3, 3, 3, 4, 103]


def test_one_device_moves_the_clock_alone():
    clock = FleetClock(allowed_lateness_ms=5 * MINUTE_MS)
    clock.observe(T0, "pc-1")
    clock.observe(T0 + 30 * MINUTE_MS, "pc-1")
    assert clock.newest_ms == T0 + 30 * MINUTE_MS
    assert clock.watermark_ms == T0 + 25 * MINUTE_MS


def test_a_device_days_fast_in_a_backlog_does_not_move_the_fleet_clock():
    clock = FleetClock(allowed_lateness_ms=0)
    for number in range(10):
        clock.observe(T0 + number * MINUTE_MS, f"pc-{number}")
    assert clock.newest_ms == T0 + 7 * MINUTE_MS  # the third newest device
    clock.observe(T0 + 3 * DAY_MS, "fast")  # no worker clock to bound it: a backlog read late
    clock.observe(T0 + 3 * DAY_MS + MINUTE_MS, "fast")
    clock.observe(T0 + 2 * DAY_MS, "also-fast")
    # Two devices days ahead take the first two places: the clock is at the newest honest one.
    assert clock.newest_ms == T0 + 9 * MINUTE_MS
    clock.observe(T0 + 2 * DAY_MS, "third-fast")  # three devices there now: the fleet is
    assert clock.newest_ms == T0 + 2 * DAY_MS


def test_the_clock_follows_the_third_newest_device_of_a_fleet_reporting_in_rounds():
    clock = FleetClock(allowed_lateness_ms=0)
    devices = [f"pc-{number}" for number in range(20)]
    newest: dict[str, int] = {}
    for round_ms in range(0, 60 * MINUTE_MS, 10 * MINUTE_MS):
        for number, device in enumerate(devices):
            newest[device] = T0 + round_ms + number * 1000
            clock.observe(newest[device], device)
            if round_ms:  # the whole fleet known: the quorum is three
                assert clock.newest_ms == sorted(newest.values())[-3]


def test_a_time_ahead_of_the_worker_counts_for_no_quorum():
    clock = FleetClock(allowed_lateness_ms=0)
    for device in ("a", "b", "c"):
        clock.observe(T0 + DAY_MS, device, now_ms=T0)
    assert clock.newest_ms == 0


observations = st.lists(
    st.tuples(st.integers(min_value=0, max_value=12), st.integers(min_value=1, max_value=50)), max_size=300
)


@given(observations)
def test_the_clock_is_never_ahead_of_what_a_quorum_of_devices_had_reached(seen: list[tuple[int, int]]):
    """Against a model that keeps every device's newest time and sorts them at each step."""
    clock = FleetClock(allowed_lateness_ms=0)
    newest: dict[str, int] = {}
    bound = 0  # the latest time a quorum had reached, at any step so far
    for number, time_ms in seen:
        device = f"pc-{number}"
        clock.observe(time_ms, device)
        newest[device] = max(newest.get(device, 0), time_ms)
        ranked = sorted(newest.values(), reverse=True)
        need = quorum(len(ranked))
        if len(ranked) >= need:
            bound = max(bound, ranked[need - 1])
        assert clock.newest_ms <= bound


@given(st.lists(st.integers(min_value=1, max_value=10_000), min_size=5, max_size=40), st.randoms())
def test_once_each_device_of_a_settled_fleet_reports_again_the_clock_is_exact(times: list[int], rng):
    """Devices reporting in time order per device: the clock is the quorum-th newest device."""
    clock = FleetClock(allowed_lateness_ms=0)
    devices = [f"pc-{number}" for number in range(len(times))]
    for device in devices:
        clock.observe(1, device)  # the fleet as first seen: the quorum is set
    order = list(zip(devices, times, strict=True))
    rng.shuffle(order)
    for device, time_ms in order:
        clock.observe(1 + time_ms, device)
    assert clock.newest_ms == sorted(1 + time_ms for time_ms in times)[-quorum(len(times))]
