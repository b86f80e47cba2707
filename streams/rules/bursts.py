"""Bursts: at least N events within a window, the shape of every "loop" rule.

Pure and order-free: the input is a sorted list of event times, the output a
function of that list alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streams.device import Install


@dataclass(frozen=True, slots=True)
class Burst:
    """`min_count` events within a window, and the events that kept it going.

    Indexes point into the sorted times it was found in. `ends_ms` is 0 while
    the burst may still go on (the subject's newest time is not `stable_ms`
    past the last event yet).
    """

    first_index: int
    completing_index: int
    last_index: int
    first_ms: int
    starts_ms: int
    last_ms: int
    ends_ms: int


def find_bursts(
    times: Sequence[int], min_count: int, window_ms: int, stable_ms: int, newest_ms: int
) -> list[Burst]:
    """Every burst in `times` (sorted), oldest first.

    A burst starts at the first of `min_count` events that fit in `window_ms`;
    `starts_ms` is the event that completed the count. Later events closer than
    `stable_ms` to the previous one belong to it; it ends `stable_ms` after its
    last event, once `newest_ms` has got there.
    """
    found: list[Burst] = []
    index = 0
    while index + min_count <= len(times):
        completing = index + min_count - 1
        if times[completing] - times[index] > window_ms:
            index += 1
            continue
        last = completing
        while last + 1 < len(times) and times[last + 1] - times[last] < stable_ms:
            last += 1
        stable_at = times[last] + stable_ms
        found.append(
            Burst(
                first_index=index,
                completing_index=completing,
                last_index=last,
                first_ms=times[index],
                starts_ms=times[completing],
                last_ms=times[last],
                ends_ms=stable_at if newest_ms >= stable_at else 0,
            )
        )
        if newest_ms < stable_at:
            break
        index = last + 1
    return found


def attributed_install(installs: Sequence[Install], first_ms: int, within_ms: int) -> Install | None:
    """The most recent install at or before `first_ms`, if at most `within_ms` older."""
    before = [install for install in installs if install.time_ms <= first_ms]
    if not before:
        return None
    latest = max(before, key=lambda install: (install.time_ms, install.kb))
    return latest if first_ms - latest.time_ms <= within_ms else None
