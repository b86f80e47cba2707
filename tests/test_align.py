"""`streams.align`: what a merge releases and what stays held."""

from __future__ import annotations

import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.align import NEVER_READ, Timed, merge


def test_a_lagging_partition_holds_back_what_is_later_and_keeps_its_place():
    batch = {
        "ahead": [Timed(offset, 1_000 * offset, f"a{offset}") for offset in range(10, 20)],
        "lagging": [Timed(3, 12_000, "l3")],
    }
    # "lagging" has more to read beyond its 12 s record: nothing after 12 s + 2 s may pass.
    merged = merge(batch, {"lagging": NEVER_READ}, lateness_ms=2_000)
    released = [record.item for _, record in merged.released]
    assert released == ["a10", "a11", "a12", "l3", "a13", "a14"]
    assert merged.resume_at == {"ahead": 15}
    held = merged.still_held(batch)
    assert list(held) == ["ahead"]
    assert [record.offset for record in held["ahead"]] == [15, 16, 17, 18, 19]


def _reference_merge(batch, behind, lateness_ms):
    """0.8.2's merge, which worked out every record's effective time before merging."""
    bounds = {partition: time for partition, time in behind.items() if partition not in batch}
    heap, effective = [], {}
    for order, (partition, records) in enumerate(batch.items()):
        times, last = [], behind.get(partition, 0)
        for record in records:
            last = record.event_ms or last
            times.append(last)
        effective[partition] = times
        if records:
            heap.append((times[0], order, 0, partition))
    heapq.heapify(heap)
    orders = {partition: order for order, partition in enumerate(batch)}
    released = []
    while heap:
        time_ms, _, index, partition = heap[0]
        if bounds and time_ms > min(bounds.values()) + lateness_ms:
            break
        heapq.heappop(heap)
        released.append((partition, batch[partition][index]))
        if index + 1 < len(batch[partition]):
            heapq.heappush(heap, (effective[partition][index + 1], orders[partition], index + 1, partition))
        elif partition in behind:
            bounds[partition] = time_ms
    return released, {partition: batch[partition][index].offset for _, _, index, partition in heap}


# Event times from a small range, so that ties and records without a time (0) are common.
_partition_records = st.lists(st.sampled_from([0, 1_000, 2_000, 3_000, 5_000, 9_000]), max_size=12)


@settings(max_examples=400, deadline=None)
@given(
    times=st.dictionaries(st.sampled_from("abcd"), _partition_records, max_size=4),
    behind=st.dictionaries(st.sampled_from("abcde"), st.sampled_from([NEVER_READ, 0, 2_000, 4_000])),
    lateness_ms=st.sampled_from([0, 1_000, 3_000]),
)
def test_the_merge_releases_what_working_out_every_time_first_released(times, behind, lateness_ms):
    # The merge works out a record's effective time only when it comes up; the
    # order, the bounds and where each partition resumes must not change.
    batch = {
        partition: [Timed(offset, ms, f"{partition}{offset}") for offset, ms in enumerate(records)]
        for partition, records in times.items()
    }
    merged = merge(batch, behind, lateness_ms)
    released, resume_at = _reference_merge(batch, behind, lateness_ms)
    assert merged.released == released
    assert merged.resume_at == resume_at
