"""Event time: parsing collectors' timestamps into UTC epoch milliseconds.

Per-device state keeps times as integer epoch milliseconds: they compare and
serialise cheaply, and state must stay small (issue: <= 1 KB per device).
Everything that leaves the process (alerts) carries RFC 3339 UTC strings.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS

# Event times before this are not from a Windows 10/11 fleet: a clock reset to
# the BIOS default, or a forged record. 2010 keeps old replay corpora usable.
EARLIEST_PLAUSIBLE_MS = 1_262_304_000_000  # 2010-01-01T00:00:00Z
# A record may be a little ahead of the processor's clock (skew); more is a
# broken device clock that must not drag the device's event time forward.
MAX_FUTURE_SKEW_MS = 24 * HOUR_MS


class BadTimestamp(ValueError):
    """The record's time cannot be read or is outside the plausible range."""


def parse_event_time(text: object, now_ms: int) -> int:
    """RFC 3339 / ISO 8601 string with an offset -> epoch ms, range-checked.

    Winlogbeat writes 7 fractional digits; Python reads at most 6, so the rest
    is cut. A time without an offset is rejected: guessing a zone would move
    every window by hours.
    """
    if not isinstance(text, str) or not 10 <= len(text) <= 64:
        raise BadTimestamp("timestamp is not a string of plausible length")
    try:
        moment = datetime.fromisoformat(_trim_fraction(text))
    except ValueError as error:
        raise BadTimestamp(f"unreadable timestamp {text[:40]!r}") from error
    if moment.tzinfo is None:
        raise BadTimestamp("timestamp has no UTC offset")
    millis = (moment - _EPOCH) // _ONE_MS
    check_plausible(millis, now_ms)
    return millis


def check_plausible(millis: int, now_ms: int) -> None:
    """Reject times before 2010 or more than a day ahead of the processor."""
    if millis < EARLIEST_PLAUSIBLE_MS:
        raise BadTimestamp("timestamp before 2010")
    if millis > now_ms + MAX_FUTURE_SKEW_MS:
        raise BadTimestamp("timestamp more than 24 h in the future")


def _trim_fraction(text: str) -> str:
    dot = text.find(".", 19)
    if dot < 0:
        return text
    end = dot + 1
    while end < len(text) and text[end].isdecimal():
        end += 1
    if end - dot - 1 <= 6:
        return text
    return text[: dot + 7] + text[end:]


def to_rfc3339(millis: int) -> str:
    """Epoch ms -> `2025-04-09T07:41:12.000Z`."""
    moment = datetime.fromtimestamp(millis / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def wall_clock_ms() -> int:
    """The processor's clock: only for input sanity checks and lag metrics."""
    return time.time_ns() // 1_000_000
