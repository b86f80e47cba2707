"""The fleet clock: how far the fleet as a whole has got in event time.

A watermark: the newest event time read, minus an allowed lateness, moved
only by records (a quiet night moves nothing). Ticks carry it to the device
agent, at most one per `tick_every_ms` of event time, so that silence is
judged in event time in replay exactly as live.
"""

from __future__ import annotations

from streams.timeutil import MINUTE_MS

TICK_EVERY_MS = MINUTE_MS
MAX_CLOCK_SKEW_MS = 5 * MINUTE_MS


class FleetClock:
    """Tracks the watermark and says when it has moved enough for a tick."""

    def __init__(self, allowed_lateness_ms: int, tick_every_ms: int = TICK_EVERY_MS) -> None:
        self.allowed_lateness_ms = allowed_lateness_ms
        self.tick_every_ms = tick_every_ms
        self.newest_ms = 0
        self.last_tick_ms = 0

    def observe(self, event_ms: int, now_ms: int | None = None) -> None:
        """A record's event time was read (0: it had none).

        A time ahead of the processor's clock (`now_ms`) by more than a few
        minutes is a device with a wrong clock: it still counts for that device,
        but it must not drag the whole fleet's clock ahead and make every
        watched device look silent.
        """
        if now_ms is not None and event_ms > now_ms + MAX_CLOCK_SKEW_MS:
            return
        if event_ms > self.newest_ms:
            self.newest_ms = event_ms

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
