"""Crash boots, not records (domain.md §2)."""

from streams.boots import crash_boots
from streams.device import Marker
from streams.signals import SignalKind
from tests.builders import T0, minutes


def marker(at: int, kind: SignalKind, code: int = 0, key: str = "") -> Marker:
    return Marker(at, kind, code, key or f"{kind.value}@{at}")


def test_one_crash_leaves_several_records_but_counts_once():
    markers = [
        marker(T0, SignalKind.BOOT_START),
        marker(T0 + 2000, SignalKind.DIRTY_BOOT, 0x18B),
        marker(T0 + minutes(3), SignalKind.BUGCHECK, 0x18B),
    ]
    boots = crash_boots(markers)
    assert len(boots) == 1
    assert boots[0].time_ms == T0 + 2000
    assert boots[0].stop_code == 0x18B


def test_fast_loop_without_boot_records_still_counts_every_crash():
    markers = []
    for index in range(4):
        at = T0 + index * 40_000  # a restart every 40 s, no Kernel-General 12 shipped
        markers += [marker(at, SignalKind.DIRTY_BOOT, 395), marker(at + 15_000, SignalKind.BUGCHECK, 395)]
    assert len(crash_boots(markers)) == 4


def test_forced_power_off_is_not_a_crash_boot():
    markers = [marker(T0, SignalKind.BOOT_START), marker(T0 + 2000, SignalKind.FORCED_OFF)]
    assert crash_boots(markers) == []


def test_a_dump_beside_a_power_button_record_is_still_a_crash():
    markers = [
        marker(T0, SignalKind.BOOT_START),
        marker(T0 + 2000, SignalKind.FORCED_OFF),
        marker(T0 + 30_000, SignalKind.BUGCHECK, 0xEF),
    ]
    assert [boot.stop_code for boot in crash_boots(markers)] == [0xEF]


def test_clean_boots_are_not_crash_boots():
    assert crash_boots([marker(T0 + i * minutes(30), SignalKind.BOOT_START) for i in range(5)]) == []


def test_bugcheck_long_after_its_boot_start_opens_a_new_boot():
    markers = [
        marker(T0, SignalKind.BOOT_START),
        marker(T0 + 2000, SignalKind.DIRTY_BOOT, 395),
        marker(T0 + minutes(40), SignalKind.BUGCHECK, 395),
    ]
    assert len(crash_boots(markers)) == 2


def test_grouping_does_not_depend_on_input_order():
    markers = [
        marker(T0, SignalKind.BOOT_START),
        marker(T0 + 2000, SignalKind.DIRTY_BOOT, 395),
        marker(T0 + 20_000, SignalKind.BUGCHECK, 395),
        marker(T0 + 60_000, SignalKind.BOOT_START),
        marker(T0 + 62_000, SignalKind.FORCED_OFF),
    ]
    assert crash_boots(markers) == crash_boots(list(reversed(markers)))
