"""`PostUpdateBootLoop`: N crash boots within a window, soon after an install.

Pure: findings are derived from the device's crash boots and installs as sets,
so duplicates and delivery order within a device cannot change them.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.boots import CrashBoot
from streams.catalog import BootLoopRule
from streams.device import Install
from streams.rules.bursts import Burst, attributed_install, find_bursts
from streams.rules.findings import Finding, burst_finding


def loops(crashes: Sequence[CrashBoot], newest_ms: int, rule: BootLoopRule) -> list[Burst]:
    """Every run of `min_crash_boots` crash boots within `window_ms`, attributed or not."""
    times = [crash.time_ms for crash in crashes]
    return find_bursts(times, rule.min_crash_boots, rule.window_ms, rule.stable_ms, newest_ms)


def boot_loops(
    crashes: Sequence[CrashBoot],
    installs: Sequence[Install],
    newest_ms: int,
    rule: BootLoopRule,
) -> list[Finding]:
    """The loops whose first crash came at most `after_install_ms` after an install.

    The loop is attributed to the most recent install before its first crash;
    `starts_ms` is the crash boot that completed the count; it ends
    `stable_ms` after its last crash boot, in the device's own event time.
    """
    findings: list[Finding] = []
    for burst in loops(crashes, newest_ms, rule):
        install = attributed_install(installs, burst.first_ms, rule.after_install_ms)
        if install is None:
            continue
        stop_code = _stop_code(crashes[burst.first_index : burst.completing_index + 1])
        findings.append(burst_finding(rule.alertname, burst, install, stop_code=stop_code))
    return findings


def background_loops(
    crashes: Sequence[CrashBoot], installs: Sequence[Install], newest_ms: int, rule: BootLoopRule
) -> list[Burst]:
    """Loops with no install in the `after_install_ms` before them: the fleet's baseline."""
    return [
        burst
        for burst in loops(crashes, newest_ms, rule)
        if not any(0 <= burst.first_ms - install.time_ms <= rule.after_install_ms for install in installs)
    ]


def _stop_code(crashes: Sequence[CrashBoot]) -> int:
    """The first recorded code of the loop's opening crashes (0 if none had one)."""
    return next((crash.stop_code for crash in crashes if crash.stop_code), 0)
