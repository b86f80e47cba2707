"""What a device rule derives from a device's state: findings, one per episode."""

from __future__ import annotations

from dataclasses import dataclass


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
