"""The fleet clock over several sieves: the slowest busy input partition rules."""

from __future__ import annotations

from streams.watermarks import Coverage, InputWatermarks


def test_a_tick_without_coverage_speaks_for_the_whole_input():
    assert InputWatermarks().report(5_000, None) == 5_000


def test_the_clock_waits_for_partitions_no_sieve_has_reported_yet():
    inputs = InputWatermarks()
    assert inputs.report(9_000, Coverage((0, 1), total=4)) == 0
    assert inputs.report(7_000, Coverage((2, 3), total=4)) == 7_000


def test_a_sieve_behind_holds_the_clock_back_until_it_catches_up():
    inputs = InputWatermarks()
    inputs.report(1_000, Coverage((0,), total=2))
    assert inputs.report(60_000, Coverage((1,), total=2)) == 1_000
    assert inputs.report(90_000, Coverage((1,), total=2)) == 1_000
    assert inputs.report(80_000, Coverage((0,), total=2)) == 80_000


def test_an_idle_sieve_holds_no_one_back_and_all_idle_keeps_the_newest():
    inputs = InputWatermarks()
    inputs.report(1_000, Coverage((0,), total=2, idle=True))
    assert inputs.report(60_000, Coverage((1,), total=2)) == 60_000
    assert inputs.report(60_000, Coverage((1,), total=2, idle=True)) == 60_000
    # Records again on partition 0: it holds the clock at what it has reached.
    assert inputs.report(2_000, Coverage((0,), total=2)) == 2_000


def test_a_new_owner_behind_its_predecessor_does_not_move_a_partition_back():
    inputs = InputWatermarks()
    inputs.report(50_000, Coverage((0, 1), total=2))
    assert inputs.report(40_000, Coverage((1,), total=2)) == 50_000


def test_a_dead_sieves_partitions_hold_the_clock_at_its_last_word():
    inputs = InputWatermarks()
    inputs.report(10_000, Coverage((0,), total=2))  # then its worker is killed
    for watermark in (20_000, 30_000, 40_000):
        assert inputs.report(watermark, Coverage((1,), total=2)) == 10_000
    assert inputs.report(45_000, Coverage((0, 1), total=2)) == 45_000  # the takeover
