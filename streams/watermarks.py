"""The fleet clock when several sieves share the input: the slowest input partition rules.

Each worker's sieve reads some of the events topic's partitions and keeps its
own fleet clock (`streams.clock`). With one worker that clock speaks for the
whole input; with several, a sieve catching up on a backlog (after a takeover,
say) is hours behind another, and taking the newest tick would judge the
backlog's devices silent before their records are read. So a tick names the
input partitions its sieve owns and how many the topic has, and a device agent
lets its fleet time reach only what every input partition has been read up to.

Two exceptions keep the clock moving: a sieve with nothing at all to read says
its partitions are idle, and an idle partition holds nobody back (as a quiet
partition holds nothing back within one sieve); and a tick that names no
partitions (from `kbwatch replay`, or a 0.5 worker) speaks for the whole input.
A sieve that dies leaves its last word standing: its partitions hold the clock
at what they had reached until their new owner reads them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Coverage:
    """What a tick speaks for: input partitions of a topic with `total` of them."""

    partitions: tuple[int, ...]
    total: int
    idle: bool = False  # the sieve had nothing to read: these partitions are caught up


class InputWatermarks:
    """The watermark of each input partition as the ticks told it; not thread-safe."""

    def __init__(self) -> None:
        self._reached: dict[int, int] = {}  # input partition -> newest watermark reported for it
        self._idle: set[int] = set()
        self._total = 0

    def report(self, watermark_ms: int, coverage: Coverage | None) -> int:
        """Take one tick; return the fleet time every input partition allows (0: not yet known)."""
        if coverage is None or not coverage.partitions:
            return watermark_ms
        self._total = max(self._total, coverage.total)
        for partition in coverage.partitions:
            # Monotonic per partition: a new owner re-reading from the last
            # commit reports less than its predecessor did, and time does not
            # go back for the devices already judged.
            if watermark_ms > self._reached.get(partition, 0):
                self._reached[partition] = watermark_ms
            if coverage.idle:
                self._idle.add(partition)
            else:
                self._idle.discard(partition)
        return self.fleet_ms()

    def fleet_ms(self) -> int:
        """The slowest busy input partition's watermark; the newest one if all are idle."""
        if not self._reached:
            return 0
        busy = [
            self._reached.get(partition, 0) for partition in range(self._total) if partition not in self._idle
        ]
        return min(busy) if busy else max(self._reached.values())
