"""`DeviceSilentAfterUpdate`: restarted for an update, then nothing.

A device that crashes before the event log service starts writes nothing at
all, so silence after an update's restart is itself the signal. Judged
against the fleet clock (the event time the fleet as a whole has reached,
minus an allowed lateness), never the wall clock: a quiet night moves no
clock, and the end of a replay file is not silence.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.catalog import SilenceRule
from streams.device import Install, Restart
from streams.rules.findings import Finding


def silences(
    restarts: Sequence[Restart], installs: Sequence[Install], fleet_ms: int, rule: SilenceRule
) -> list[Finding]:
    """Restarts within `restart_within_ms` after an install that no record followed in time.

    It starts `silence_ms` after the restart, once the fleet clock is there,
    and ends when the device speaks again (`back_ms`).
    """
    findings: list[Finding] = []
    for restart in sorted(restarts):
        install = _install_before(installs, restart.time_ms, rule.restart_within_ms)
        if install is None:
            continue
        silent_at = restart.time_ms + rule.silence_ms
        came_back_in_time = restart.back_ms and restart.back_ms <= silent_at
        if came_back_in_time or fleet_ms < silent_at:
            continue
        findings.append(
            Finding(
                alertname=rule.alertname,
                kb=install.kb,
                first_ms=restart.time_ms,
                starts_ms=silent_at,
                last_ms=silent_at,
                ends_ms=restart.back_ms,
                build=install.build,
            )
        )
    return findings


def pending_deadline(
    restarts: Sequence[Restart], installs: Sequence[Install], fleet_ms: int, rule: SilenceRule
) -> int:
    """The fleet time at which a silence could next be judged; 0 when none is pending."""
    deadlines = [
        restart.time_ms + rule.silence_ms
        for restart in restarts
        if not restart.back_ms
        and fleet_ms < restart.time_ms + rule.silence_ms
        and _install_before(installs, restart.time_ms, rule.restart_within_ms) is not None
    ]
    return min(deadlines, default=0)


def _install_before(installs: Sequence[Install], time_ms: int, within_ms: int) -> Install | None:
    before = [install for install in installs if 0 <= time_ms - install.time_ms <= within_ms]
    return max(before, key=lambda install: (install.time_ms, install.kb)) if before else None
