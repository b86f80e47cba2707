"""The fleet clock: how far the fleet as a whole has got in event time.

A watermark: the newest event time read, minus an allowed lateness, moved
only by records (a quiet night moves nothing). Ticks carry it to the device
agent, at most one per `tick_every_ms` of event time, so that silence is
judged in event time in replay exactly as live.

"The newest event time read" is the newest that a quorum of devices has
reached, not one record's: a device whose clock runs days fast (or a forged
record) would otherwise drag the fleet's clock ahead, and every watched
device would look silent at once. Live, the worker's own clock bounds that
too; in a backlog or a replayed file, where the worker's clock is far ahead
of the records, the quorum is what does. The quorum grows with the devices
seen: one of one or two, two of three or four, three of five to 999, then
one more per thousand (103 of 100,000).
"""

from __future__ import annotations

import heapq

from streams.timeutil import MINUTE_MS

TICK_EVERY_MS = MINUTE_MS
MAX_CLOCK_SKEW_MS = 5 * MINUTE_MS
# Devices counted for the quorum; past this many it stops growing (503).
MAX_COUNTED_DEVICES = 500_000


def quorum(devices: int) -> int:
    """How many devices must have reached a time before the fleet clock does."""
    if devices <= 2:
        return 1  # of two, neither can outvote the other
    return min((devices + 1) // 2, 3 + devices // 1000)


class FleetClock:
    """Tracks the watermark and says when it has moved enough for a tick."""

    def __init__(self, allowed_lateness_ms: int, tick_every_ms: int = TICK_EVERY_MS) -> None:
        self.allowed_lateness_ms = allowed_lateness_ms
        self.tick_every_ms = tick_every_ms
        self.newest_ms = 0
        self.last_tick_ms = 0
        self._devices: set[str] = set()
        self._quorum = 1
        # The `_quorum` devices furthest ahead, as a min-heap of (time, device) whose
        # root is the time they have all reached. A device's earlier entries stay in
        # the heap until they reach its root: `_leaders` says which entry is current.
        self._heap: list[tuple[int, str]] = []
        self._leaders: dict[str, int] = {}

    def observe(self, event_ms: int, device: str, now_ms: int | None = None) -> None:
        """A record of `device` with event time `event_ms` was read (0: it had none).

        A time ahead of the processor's clock (`now_ms`) by more than a few
        minutes is a device with a wrong clock: it still counts for that device,
        but it must not drag the whole fleet's clock ahead and make every
        watched device look silent.
        """
        if not event_ms or (now_ms is not None and event_ms > now_ms + MAX_CLOCK_SKEW_MS):
            return
        if device not in self._devices and len(self._devices) < MAX_COUNTED_DEVICES:
            self._devices.add(device)
            self._quorum = quorum(len(self._devices))
        leaders, heap = self._leaders, self._heap
        current = leaders.get(device)
        if current is not None:
            if event_ms <= current:
                return
        elif len(leaders) >= self._quorum:
            if event_ms <= heap[0][0]:
                return  # behind the quorum: moves nothing
            _, last = heapq.heappop(heap)
            del leaders[last]
        # When the quorum has just grown, the device takes the new place whatever its
        # time: the root is then at most the true quorum time, never ahead of it.
        leaders[device] = event_ms
        heapq.heappush(heap, (event_ms, device))
        while leaders.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # an entry its device has moved on from
        if len(heap) > 4 * len(leaders) + 64:
            self._heap = heap = [(time_ms, name) for name, time_ms in leaders.items()]
            heapq.heapify(heap)
        if len(leaders) >= self._quorum and heap[0][0] > self.newest_ms:
            self.newest_ms = heap[0][0]

    @property
    def watermark_ms(self) -> int:
        return max(0, self.newest_ms - self.allowed_lateness_ms) if self.newest_ms else 0

    def due_tick(self) -> int:
        """The watermark to announce now, or 0 if it has not moved a tick's worth."""
        watermark = self.watermark_ms
        if watermark and watermark - self.last_tick_ms >= self.tick_every_ms:
            self.last_tick_ms = watermark
            return watermark
        return 0
