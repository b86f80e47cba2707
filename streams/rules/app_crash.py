"""`PostUpdateAppCrashLoop`: one application crashing again and again after an update."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

from streams.catalog import AppCrashRule
from streams.device import AppCrash, Install
from streams.rules.bursts import attributed_install, find_bursts
from streams.rules.findings import Finding, burst_finding


def app_crash_loops(
    crashes: Sequence[AppCrash], installs: Sequence[Install], newest_ms: int, rule: AppCrashRule
) -> list[Finding]:
    """Per application: `min_crashes` within `window_ms`, the first soon after an install."""
    findings: list[Finding] = []
    by_app = sorted(crashes, key=lambda crash: (crash.app, crash.time_ms))
    for app, app_crashes in groupby(by_app, key=lambda crash: crash.app):
        times = [crash.time_ms for crash in app_crashes]
        for burst in find_bursts(times, rule.min_crashes, rule.window_ms, rule.stable_ms, newest_ms):
            install = attributed_install(installs, burst.first_ms, rule.after_install_ms)
            if install is None:
                continue
            findings.append(burst_finding(rule.alertname, burst, install, subject=app))
    return findings
