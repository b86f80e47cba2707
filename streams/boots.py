"""Crash boots from boot records: one crash leaves several records, count it once.

A crash leaves, in the boot that follows it, a Kernel-General 12 (OS start),
a Kernel-Power 41 (dirty reboot, with the stop code in decimal) and, once WER
has read the dump, a BugCheck 1001 (stop code in hex). The records of one boot
are grouped here; the grouping is a function of the set of markers, never of
the order they arrived in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from streams.device import Marker
from streams.signals import SignalKind
from streams.timeutil import MINUTE_MS

# How long after its start a boot can still write its crash records when no
# Kernel-General 12 marks the next boot: 1001 waits for WER, which can take
# minutes. Loops restart every 30 s to several minutes, and a second 41 or 1001
# always opens a new boot, so a long span cannot merge two crashes.
BOOT_SPAN_MS = 15 * MINUTE_MS

_KIND_ORDER = {SignalKind.BOOT_START: 0, SignalKind.DIRTY_BOOT: 1, SignalKind.FORCED_OFF: 1}


@dataclass(frozen=True, slots=True)
class CrashBoot:
    """A boot that followed a crash; `time_ms` is its earliest crash record."""

    time_ms: int
    stop_code: int


@dataclass(slots=True)
class _Boot:
    start_ms: int
    power_record: bool = False  # a Kernel-Power 41 was seen for this boot
    forced: bool = False
    dirty_ms: int | None = None
    dirty_code: int = 0
    bugcheck_ms: int | None = None
    bugcheck_code: int = 0

    def crash(self) -> CrashBoot | None:
        """The crash this boot records, if any.

        A dump (1001 with a code) is a crash even beside a forced-off 41;
        otherwise a held power button cancels it.
        """
        if self.bugcheck_ms is not None and self.bugcheck_code:
            times = [self.bugcheck_ms] + ([self.dirty_ms] if self.dirty_ms is not None else [])
            return CrashBoot(min(times), self.dirty_code or self.bugcheck_code)
        if self.dirty_ms is not None and not self.forced:
            return CrashBoot(self.dirty_ms, self.dirty_code)
        return None


def crash_boots(markers: Iterable[Marker]) -> list[CrashBoot]:
    """The device's crash boots in time order."""
    ordered = sorted(markers, key=lambda m: (m.time_ms, _KIND_ORDER.get(m.kind, 2), m))
    boots: list[_Boot] = []
    for marker in ordered:
        current = boots[-1] if boots else None
        if marker.kind is SignalKind.BOOT_START:
            boots.append(_Boot(marker.time_ms))
        elif marker.kind in (SignalKind.DIRTY_BOOT, SignalKind.FORCED_OFF):
            if current is None or current.power_record or _outside(current, marker):
                current = _Boot(marker.time_ms)
                boots.append(current)
            current.power_record = True
            if marker.kind is SignalKind.FORCED_OFF:
                current.forced = True
            else:
                current.dirty_ms, current.dirty_code = marker.time_ms, marker.stop_code
        elif marker.kind is SignalKind.BUGCHECK:
            if current is None or current.bugcheck_ms is not None or _outside(current, marker):
                current = _Boot(marker.time_ms)
                boots.append(current)
            current.bugcheck_ms, current.bugcheck_code = marker.time_ms, marker.stop_code
    return [crash for boot in boots if (crash := boot.crash()) is not None]


def _outside(boot: _Boot, marker: Marker) -> bool:
    return marker.time_ms - boot.start_ms > BOOT_SPAN_MS
