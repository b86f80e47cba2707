"""`PostUpdateHelloFailure`: Windows Hello keeps failing after an update.

At least `min_failures` Hello failures within `window_ms`, with no Hello
success between them, the first at most `after_install_ms` after an install.
A success ends the episode (and starts the count again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from streams.catalog import HelloRule
from streams.device import Install, Marker
from streams.rules.bursts import attributed_install
from streams.rules.findings import Finding
from streams.signals import SignalKind


def hello_failures(markers: Sequence[Marker], installs: Sequence[Install], rule: HelloRule) -> list[Finding]:
    """Every Hello breakage episode in `markers` (any order), oldest first."""
    findings: list[Finding] = []
    run: list[int] = []  # failure times since the last success
    current: Finding | None = None
    for marker in sorted(markers):
        if marker.kind is SignalKind.HELLO_SUCCESS:
            if current is not None:
                findings.append(replace(current, ends_ms=marker.time_ms))
                current = None
            run = []
            continue
        run.append(marker.time_ms)
        if current is not None:
            current = replace(current, last_ms=marker.time_ms)
            continue
        current = _opened(run, installs, rule)
    if current is not None:
        findings.append(current)
    return findings


def _opened(run: list[int], installs: Sequence[Install], rule: HelloRule) -> Finding | None:
    if len(run) < rule.min_failures:
        return None
    first, completing = run[-rule.min_failures], run[-1]
    if completing - first > rule.window_ms:
        return None
    install = attributed_install(installs, first, rule.after_install_ms)
    if install is None:
        return None
    return Finding(
        alertname=rule.alertname,
        kb=install.kb,
        first_ms=first,
        starts_ms=completing,
        last_ms=completing,
        ends_ms=0,
        build=install.build,
    )
