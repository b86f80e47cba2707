"""What a device rule derives from a device's state: findings, one per episode."""

from __future__ import annotations

from dataclasses import dataclass

from streams.device import Install
from streams.rules.bursts import Burst


@dataclass(frozen=True, slots=True)
class Finding:
    """An episode as the evidence shows it now; `ends_ms` is 0 while it goes on."""

    alertname: str
    kb: str
    first_ms: int
    starts_ms: int
    last_ms: int
    ends_ms: int
    stop_code: int = 0
    subject: str = ""
    build: str = ""  # the build the attributed install brought, when known


def burst_finding(
    alertname: str, burst: Burst, install: Install, stop_code: int = 0, subject: str = ""
) -> Finding:
    """The finding of a burst attributed to `install`."""
    return Finding(
        alertname=alertname,
        kb=install.kb,
        first_ms=burst.first_ms,
        starts_ms=burst.starts_ms,
        last_ms=burst.last_ms,
        ends_ms=burst.ends_ms,
        stop_code=stop_code,
        subject=subject,
        build=install.build,
    )
