"""The fleet agent killed between any two of its table writes: the verdicts are still its own.

One piece of evidence can cause many writes to the fleet table (a release
applies every fact held for the seconds it passed, and lets their buckets go),
and each is a changelog record of its own. A worker killed in between leaves a
table that holds the first of them only; Faust then hands the evidence over
again from the last commit, to this worker restarted or to another. Driven
here in one process: the crash is placed at every write of every piece of
evidence that changed a KB or the baseline, and the table and the alerts must
come out as if nothing had happened.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest

from streams.catalog import Catalog
from streams.engine import Engine
from streams.evidence import BASELINE_KEY, Evidence, EvidenceKind
from streams.fleet import FleetEngine
from streams.metrics import Metrics
from tests.builders import T0, final_by_fingerprint
from tests.test_crash_windows import steps

COMMIT_LAG = 5  # pieces of evidence between the last commit and the crash
SENT_LAG = 3  # of which the last ones' alerts never reached the broker either

Write = tuple[str, bytes | None]  # a changelog record: key, value (None deletes)


class Changelog(dict[str, bytes]):
    """A table that also keeps every write in order, as its changelog topic does."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[Write] = []

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes.append((key, value))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.writes.append((key, None))
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.writes.append((key, None))
        return super().pop(key, *default)


def restored(writes: list[Write]) -> dict[str, bytes]:
    """The table a worker restores from these changelog records."""
    table: dict[str, bytes] = {}
    for key, value in writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


@cache
def evidence() -> list[Evidence]:
    """What the device agent tells the fleet agent over the simulated fleet, in order."""
    engine = Engine({}, Catalog(), Metrics.create(), {})
    found: list[Evidence] = []
    for step in steps():
        output = engine.tick(step) if isinstance(step, int) else engine.process(step)
        found += output.evidence
    return found


def produced_ms(offset: int) -> int:
    return 1_000 + offset


@cache
def clean_run() -> tuple[list[Write], list[int], list[list[dict[str, Any]]]]:
    """The uninterrupted run: its writes, where each evidence's writes begin, and its alerts."""
    table = Changelog()
    fleet = FleetEngine(table, Catalog(), Metrics.create())
    bounds, alerts = [], []
    for offset, fact in enumerate(evidence()):
        bounds.append(len(table.writes))
        alerts.append([alert.to_json() for alert in fleet.process(fact, offset, produced_ms(offset))])
    bounds.append(len(table.writes))
    return table.writes, bounds, alerts


def crash_points() -> Iterator[tuple[int, int]]:
    """(write, evidence) for every write inside a piece of evidence that changed a KB or the baseline."""
    writes, bounds, _ = clean_run()
    for offset in range(len(evidence())):
        own = range(bounds[offset], bounds[offset + 1])
        if any(not writes[k][0].startswith("_") or writes[k][0] == BASELINE_KEY for k in own):
            yield from ((k, offset) for k in own[1:])  # killed after write k - 1


def test_the_crash_points_cover_releases_late_facts_and_verdicts():
    _, _, alerts = clean_run()
    points = list(crash_points())
    assert len(points) >= 100
    crashed = {offset for _, offset in points}
    assert {evidence()[offset].kind for offset in crashed} >= {EvidenceKind.PROGRESS, EvidenceKind.RECOVERED}
    assert any(alerts[offset] for offset in crashed)  # some crashes lose an UpdateRegression change


def test_a_fleet_agent_killed_between_any_two_writes_ends_as_if_it_was_not():
    writes, bounds, clean_alerts = clean_run()
    for crash_at, offset in crash_points():
        committed = max(0, offset - COMMIT_LAG)
        sent = [alert for earlier in clean_alerts[: max(0, offset - SENT_LAG)] for alert in earlier]
        table = restored(writes[:crash_at])
        fleet = FleetEngine(table, Catalog(), Metrics.create())
        fleet.taken_over()
        for again in range(committed, offset + 1):
            sent += [alert.to_json() for alert in fleet.process(evidence()[again], again, produced_ms(again))]
        where = f"killed at write {crash_at}, inside evidence {offset} ({evidence()[offset].kind.value})"
        assert table == restored(writes[: bounds[offset + 1]]), where
        expected = [alert for earlier in clean_alerts[: offset + 1] for alert in earlier]
        assert final_by_fingerprint(sent) == final_by_fingerprint(expected), where


@pytest.mark.parametrize("seed", range(3))
def test_evidence_produced_out_of_offset_order_is_still_known_when_handed_over_again(seed):
    # Two workers' device agents produce to the one evidence partition: a record's
    # produce time can be older than one appended before it.
    facts = [Evidence(EvidenceKind.INSTALLED, "KB5055523", f"d{n}", "x86_64", T0 + n) for n in range(20)]
    times = [1_000 + n * 10 + random.Random(seed * 100 + n).randrange(-40, 40) for n in range(20)]
    table: dict[str, bytes] = {}
    fleet = FleetEngine(table, Catalog(), Metrics.create())
    for offset, fact in enumerate(facts):
        fleet.process(fact, offset, times[offset])
    restarted = FleetEngine(table, Catalog(), Metrics.create())
    for offset in range(5, 20):  # the last commit was at 5
        restarted.process(facts[offset], offset, times[offset])
    restarted.process(Evidence.progress(0, 2**50), 20, max(times) + 1)
    assert restarted._kb("KB5055523").installed_total() == 20
    assert restarted.metrics.registry.get_sample_value("kbwatch_evidence_replayed_total") == 15
