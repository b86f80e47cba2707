"""Event-time alignment of input partitions: a k-way merge with a bound.

An unkeyed producer spreads each device over every partition of the input
topic. When a worker catches up on a backlog, one partition's fetch can reach
hours further in event time than another's, and a device's records would then
reach the rules hours out of order. The sieve therefore releases a batch's
records in event-time order across partitions, and stops where a partition
that still has unread records could hold something earlier (its last known
time plus the allowed lateness). What is held back is read again later: the
caller seeks those partitions back to the first record not released.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Key = TypeVar("Key", bound=Hashable)  # a partition, however the caller names it
NEVER_READ = -(2**62)


@dataclass(slots=True)  # not frozen: one is made per record, and a frozen init costs 3x
class Timed(Generic[Item]):
    """A record of a partition: its offset, its event time (0: none) and what it became."""

    offset: int
    event_ms: int
    item: Item


@dataclass(frozen=True, slots=True)
class Merged(Generic[Key, Item]):
    """The records to process, in order, and where each held-back partition resumes."""

    released: list[tuple[Key, Timed[Item]]]
    resume_at: dict[Key, int]

    def still_held(self, batch: Mapping[Key, list[Timed[Item]]]) -> dict[Key, list[Timed[Item]]]:
        """What of `batch` stays held: each held-back partition's records from where it resumes.

        A partition's records are in offset order, so this is a slice found by
        bisection: a partition far ahead holds thousands, batch after batch.
        """
        return {
            partition: records[bisect_left(records, self.resume_at[partition], key=_offset) :]
            for partition, records in batch.items()
            if partition in self.resume_at
        }


def _offset(record: Timed[Any]) -> int:
    return record.offset


def merge(
    batch: Mapping[Key, Sequence[Timed[Item]]],
    behind: Mapping[Key, int],
    lateness_ms: int,
) -> Merged[Key, Item]:
    """Release `batch` in event-time order up to what the lagging partitions allow.

    `behind` holds every partition that still has unread records beyond this
    batch, with the newest event time read from it so far (`NEVER_READ` if
    none). Records without an event time go with the record before them.
    """
    bounds = {partition: time for partition, time in behind.items() if partition not in batch}
    # Each head's effective time is worked out as it comes up, not for the
    # whole batch first: a partition far ahead stays held batch after batch,
    # and walking all of it each time cost more than the merge itself.
    heap: list[tuple[int, int, int, Key]] = []
    for order, (partition, records) in enumerate(batch.items()):
        if records:
            heap.append((records[0].event_ms or behind.get(partition, 0), order, 0, partition))
    heapq.heapify(heap)
    released: list[tuple[Key, Timed[Item]]] = []
    while heap:
        time_ms, order, index, partition = heap[0]
        if bounds and time_ms > min(bounds.values()) + lateness_ms:
            break
        records = batch[partition]
        released.append((partition, records[index]))
        index += 1
        if index < len(records):
            heapq.heapreplace(heap, (records[index].event_ms or time_ms, order, index, partition))
        else:
            heapq.heappop(heap)
            if partition in behind:
                bounds[partition] = time_ms
    resume_at = {partition: batch[partition][index].offset for _, _, index, partition in heap}
    return Merged(released, resume_at)
