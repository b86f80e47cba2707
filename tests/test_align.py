"""`streams.align`: what a merge releases and what stays held."""

from __future__ import annotations

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
