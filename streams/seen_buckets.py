"""Which ten-minute buckets of each device the sieve has already sent as `seen`.

Winlogbeat ships unkeyed, so one device's records are spread over every input
partition, and the sieve reads them a partition's batch at a time: a partition
can be hours of event time ahead of another (as far as the held records allow,
`ingest.MAX_HELD_RECORDS`). Each partition's batch goes back over buckets that
another partition's batch already passed. Remembering only a device's last
bucket let most of those records through as `seen` again: 54 % of all records
instead of 20 % on the bench's 1,000-device fleet, in the order the consumer
read them. Each repeat was built, held, merged and then dropped when sent.

So each device keeps its newest bucket and a bit mask of the `WINDOW` buckets up
to it, together in one integer (64 bytes), beside the newest bucket's text
prefix (`2025-04-09T09:4`, one string shared by all devices): a record of the
newest bucket, most records of a stream read in order, is judged by comparing
text, as before. The number of a prefix is worked out once and kept.
"""

from __future__ import annotations

from datetime import date

# Buckets remembered up to a device's newest: 42 hours 40 minutes. On the bench's
# 1,000-device file a worker's partitions drifted further apart than 64 (10 h 40 min).
WINDOW = 256
PREFIX = len("2025-04-09T09:4")  # a ten-minute bucket, as text
_ALL = (1 << WINDOW) - 1
# Past this many devices (or bucket names) everything is forgotten at once:
# forgetting only lets a few repeated `seen` signals through.
MAX_TRACKED = 500_000


class SeenBuckets:
    """A memory of sent (device, bucket) pairs that may forget, never invent."""

    def __init__(self, max_tracked: int = MAX_TRACKED) -> None:
        self._max_tracked = max_tracked
        # device -> (newest bucket's prefix, newest bucket << WINDOW | mask); bit k of
        # the mask: the bucket k before the newest was sent
        self._devices: dict[str, tuple[str, int]] = {}
        self._numbers: dict[str, int | None] = {}  # prefix -> bucket number, None if not a time
        self._prefixes: dict[int, str] = {}  # bucket number -> its prefix, one string each

    def sent(self, device: str, stamp: str) -> bool:
        """Whether the bucket of `stamp` (a record's time, as text) went out for `device`."""
        memory = self._devices.get(device)
        if memory is None:
            return False
        prefix = stamp[:PREFIX]
        if prefix == memory[0]:
            return True
        # A known prefix without the method call: the path of a stream read out of order.
        number = self._numbers.get(prefix, -1)
        if number == -1:
            number = self._number(prefix)
        if number is None:
            return False
        bits = memory[1]
        age = (bits >> WINDOW) - number
        return 0 <= age < WINDOW and bool(bits >> age & 1)

    def mark(self, device: str, stamp: str) -> None:
        """Remember that the bucket of `stamp` went out for `device`."""
        if len(self._devices) >= self._max_tracked:
            self.forget()
        number = self._number(stamp[:PREFIX])
        if number is None:
            return  # not remembered: the next record of that time is sent again
        memory = self._devices.get(device)
        newest, mask = (number, 0) if memory is None else (memory[1] >> WINDOW, memory[1] & _ALL)
        if number > newest:
            mask = (mask << (number - newest)) & _ALL
            newest = number
        elif newest - number >= WINDOW:
            return
        self._devices[device] = (self._prefixes[newest], newest << WINDOW | mask | 1 << (newest - number))

    def forget(self) -> None:
        """Forget everything: each device's next bucket is sent again (after a rewind)."""
        self._devices.clear()
        self._numbers.clear()
        self._prefixes.clear()

    def _number(self, prefix: str) -> int | None:
        number = self._numbers.get(prefix, -1)
        if number == -1:
            if len(self._numbers) >= self._max_tracked:
                self.forget()  # the devices' prefixes must stay known numbers
            number = self._numbers[prefix] = bucket_number(prefix)
            if number is not None:
                self._prefixes[number] = prefix
        return number


def bucket_number(prefix: str) -> int | None:
    """Ten-minute buckets since year 1 for `YYYY-MM-DDTHH:M`; None for anything else.

    The record's own clock face, offset ignored: it only has to tell the buckets of
    one device's records apart, and a device writes all its times with one offset.
    """
    if len(prefix) != PREFIX or prefix[10] not in "Tt " or prefix[13] != ":":
        return None
    hours, tens = prefix[11:13], prefix[14]
    if not (hours.isdecimal() and tens.isdecimal() and hours.isascii() and tens.isascii()):
        return None
    try:
        day = date.fromisoformat(prefix[:10]).toordinal()
    except ValueError:
        return None
    hour, ten = int(hours), int(tens)
    if hour > 23 or ten > 5:
        return None
    return (day * 24 + hour) * 6 + ten
