"""`PostUpdateBootLoop`: N crash boots within a window, soon after an install.

Pure: the episodes are derived from the device's crash boots and installs as
sets, so duplicates and delivery order within a device cannot change them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streams.boots import CrashBoot
from streams.catalog import BootLoopRule
from streams.device import Install


@dataclass(frozen=True, slots=True)
class BootLoop:
    """A loop as the evidence shows it now; `ends_ms` is 0 while it goes on."""

    first_ms: int
    starts_ms: int
    last_ms: int
    ends_ms: int
    install: Install
    stop_code: int


def boot_loops(
    crashes: Sequence[CrashBoot],
    installs: Sequence[Install],
    newest_ms: int,
    rule: BootLoopRule,
) -> list[BootLoop]:
    """Every loop in `crashes` (time-ordered), oldest first.

    A loop starts at the first of `min_crash_boots` crash boots that fit in
    `window_ms`, if the most recent install before that crash is at most
    `after_install_ms` older. `starts_ms` is the crash boot that completed the
    count. Later crashes closer than `stable_ms` to the previous one belong to
    the same loop; it ends `stable_ms` after its last crash, once the device's
    own event time (`newest_ms`) has got there.
    """
    needed = rule.min_crash_boots
    loops: list[BootLoop] = []
    index = 0
    while index + needed <= len(crashes):
        first, completing = crashes[index], crashes[index + needed - 1]
        install = _latest_install_before(installs, first.time_ms)
        if (
            completing.time_ms - first.time_ms > rule.window_ms
            or install is None
            or first.time_ms - install.time_ms > rule.after_install_ms
        ):
            index += 1
            continue
        last = index + needed - 1
        while last + 1 < len(crashes) and crashes[last + 1].time_ms - crashes[last].time_ms < rule.stable_ms:
            last += 1
        stable_at = crashes[last].time_ms + rule.stable_ms
        ends_ms = stable_at if newest_ms >= stable_at else 0
        loops.append(
            BootLoop(
                first_ms=first.time_ms,
                starts_ms=completing.time_ms,
                last_ms=crashes[last].time_ms,
                ends_ms=ends_ms,
                install=install,
                stop_code=_stop_code(crashes[index : index + needed]),
            )
        )
        if not ends_ms:
            break
        index = last + 1
    return loops


def _latest_install_before(installs: Sequence[Install], time_ms: int) -> Install | None:
    before = [install for install in installs if install.time_ms <= time_ms]
    return max(before, key=lambda install: (install.time_ms, install.kb)) if before else None


def _stop_code(crashes: Sequence[CrashBoot]) -> int:
    """The first recorded code of the loop's opening crashes (0 if none had one)."""
    return next((crash.stop_code for crash in crashes if crash.stop_code), 0)
