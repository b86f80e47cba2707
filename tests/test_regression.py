"""`UpdateRegression`: significant and large, honest with small counts and repeated looks."""

from __future__ import annotations

import random
import zlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.catalog import Catalog, RegressionRule
from streams.evidence import Evidence, EvidenceKind
from streams.fleet import FleetEngine, KbState
from streams.metrics import Metrics
from streams.rules.regression import judge
from streams.timeutil import HOUR_MS, MINUTE_MS
from tests.builders import T0, final_by_fingerprint

KB = "KB5055523"


def fleet_stream(
    installs: int, affected: int, *, arm64_affected: bool = False, seed: int = 1
) -> list[Evidence]:
    """Installs over six hours, the affected devices among them an hour or two later."""
    rng = random.Random(seed)
    evidence = []
    for number in range(installs):
        arch = "arm64" if number % 5 == 0 else "x86_64"
        at = T0 + rng.randrange(0, 6 * HOUR_MS)
        evidence.append(Evidence(EvidenceKind.INSTALLED, KB, f"d{number}", arch, at))
        if number < affected * (5 if arm64_affected else 1) and (not arm64_affected or arch == "arm64"):
            evidence.append(
                Evidence(
                    EvidenceKind.AFFECTED, KB, f"d{number}", arch, at + rng.randrange(HOUR_MS, 2 * HOUR_MS)
                )
            )
    evidence.sort(key=lambda fact: fact.time_ms)
    return evidence


def run_fleet(
    evidence: list[Evidence], catalog: Catalog | None = None
) -> tuple[FleetEngine, list[dict[str, Any]]]:
    """The facts, then the fleet clock far past them all."""
    engine = FleetEngine({}, catalog or Catalog(), Metrics.create())
    alerts = [alert.to_json() for fact in evidence for alert in engine.process(fact)]
    alerts += [alert.to_json() for alert in engine.process(Evidence.progress(0, 2**50))]
    return engine, alerts


def test_a_five_percent_loop_rate_among_three_hundred_installs_fires():
    _, alerts = run_fleet(fleet_stream(300, 15))
    assert [alert["status"] for alert in alerts] == ["firing"]
    alert = alerts[0]
    assert set(alert["labels"]) == {"alertname", "severity", "kb", "arch"}
    assert alert["labels"]["alertname"] == "UpdateRegression"
    assert alert["labels"]["kb"] == KB
    assert int(alert["annotations"]["affected"]) >= 5
    assert "Pause the deployment ring" in alert["annotations"]["action"]
    assert "Known Issue Rollback" in alert["annotations"]["action"]


def test_one_loop_in_three_hundred_installs_stays_quiet():
    assert run_fleet(fleet_stream(300, 1))[1] == []


def test_a_quiet_fleet_stays_quiet():
    baseline = [
        Evidence(EvidenceKind.EXPOSURE, "", f"b{i}", "x86_64", T0 + i * MINUTE_MS) for i in range(500)
    ]
    assert run_fleet(baseline + fleet_stream(300, 0))[1] == []


def test_a_fleet_that_loops_as_often_without_updates_is_not_blamed_on_the_update():
    baseline = [Evidence(EvidenceKind.EXPOSURE, "", f"b{i}", "x86_64", T0 - HOUR_MS) for i in range(2000)]
    baseline += [
        Evidence(EvidenceKind.BACKGROUND_LOOP, "", f"b{i}", "x86_64", T0 - HOUR_MS) for i in range(60)
    ]
    assert run_fleet(baseline + fleet_stream(300, 15))[1] == []  # 5% vs a 3% baseline


def with_recoveries(evidence: list[Evidence], after_ms: int = 8 * HOUR_MS) -> list[Evidence]:
    recoveries = [
        Evidence(EvidenceKind.RECOVERED, KB, fact.device, fact.arch, fact.time_ms + after_ms)
        for fact in evidence
        if fact.kind is EvidenceKind.AFFECTED
    ]
    return sorted(evidence + recoveries, key=lambda fact: fact.time_ms)


def test_verdicts_do_not_depend_on_the_order_evidence_arrives_in():
    evidence = with_recoveries(fleet_stream(300, 15), after_ms=30 * MINUTE_MS)
    _, in_order = run_fleet(evidence)
    shuffled = list(evidence)
    random.Random(7).shuffle(shuffled)
    _, out_of_order = run_fleet(shuffled)
    assert in_order == out_of_order
    assert [alert["status"] for alert in in_order][:1] == ["firing"]


@settings(max_examples=15, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(min_value=2, max_value=6))
def test_partitions_interleaved_any_way_reach_the_verdicts_of_one_ordered_stream(rng, partitions):
    """What a worker sees: each partition in order, ticking, the partitions interleaved at random."""
    evidence = with_recoveries(fleet_stream(200, 12, seed=3), after_ms=20 * MINUTE_MS)
    _, expected = run_fleet(evidence)
    queues: list[list[Evidence]] = [[] for _ in range(partitions)]
    tick_ms = evidence[0].time_ms
    for fact in evidence:
        while fact.time_ms > tick_ms + 10 * MINUTE_MS:
            tick_ms += 10 * MINUTE_MS  # a tick trails the facts before it by the allowed lateness
            for number, queue in enumerate(queues):
                queue.append(Evidence.progress(number, tick_ms - 5 * MINUTE_MS))
        queues[zlib.crc32(fact.device.encode()) % partitions].append(fact)
    engine = FleetEngine({}, Catalog(), Metrics.create(), partitions)
    live: list[dict[str, Any]] = []
    while any(queues):
        queue = rng.choice([queue for queue in queues if queue])
        count = rng.randint(1, 40)
        for fact in queue[:count]:
            live += [alert.to_json() for alert in engine.process(fact)]
        del queue[:count]
    for number in range(partitions):
        live += [alert.to_json() for alert in engine.process(Evidence.progress(number, 2**50))]
    assert final_by_fingerprint(live) == final_by_fingerprint(expected)
    assert engine.metrics.registry.get_sample_value("kbwatch_evidence_late_total") == 0


def test_a_fact_behind_the_released_clock_is_applied_at_once_and_counted_late():
    engine = FleetEngine({}, Catalog(), Metrics.create())
    assert engine.process(Evidence.progress(0, T0)) == []
    engine.process(Evidence(EvidenceKind.INSTALLED, KB, "d1", "x86_64", T0 - HOUR_MS))
    engine.process(Evidence(EvidenceKind.INSTALLED, KB, "d2", "x86_64", T0 + HOUR_MS))
    sample = engine.metrics.registry.get_sample_value
    assert sample("kbwatch_evidence_late_total") == 1
    assert sample("kbwatch_fleet_evidence_held") == 1
    assert sample("kbwatch_update_installed_devices", {"kb": KB}) == 1


def test_facts_wait_for_every_partition_and_survive_a_restart_in_the_table():
    table: dict[str, bytes] = {}
    first = FleetEngine(table, Catalog(), Metrics.create(), partitions=2)
    for fact in fleet_stream(300, 15):
        first.process(fact)
    first.process(Evidence.progress(0, 2**50))
    assert first.metrics.registry.get_sample_value("kbwatch_update_installed_devices", {"kb": KB}) is None
    restarted = FleetEngine(table, Catalog(), Metrics.create(), partitions=2)
    alerts = restarted.process(Evidence.progress(1, 2**50))
    assert [alert.status for alert in alerts] == ["firing"]
    assert restarted.metrics.registry.get_sample_value("kbwatch_fleet_evidence_held") == 0


def test_cohorts_name_the_architecture_carrying_the_excess():
    _, alerts = run_fleet(fleet_stream(300, 12, arm64_affected=True))
    assert alerts and alerts[0]["labels"]["arch"] == "arm64"


def test_resolves_once_every_affected_device_recovered():
    engine, alerts = run_fleet(with_recoveries(fleet_stream(300, 15)))
    assert [alert["status"] for alert in alerts] == ["firing", "resolved"]
    assert alerts[0]["fingerprint"] == alerts[1]["fingerprint"]
    sample = engine.metrics.registry.get_sample_value
    assert sample("kbwatch_update_affected_devices", {"kb": KB}) == 15
    assert sample("kbwatch_update_failing_devices", {"kb": KB}) == 0
    assert sample("kbwatch_update_installed_devices", {"kb": KB}) == 300


def test_per_kb_metrics_keep_only_the_newest_kbs_and_sum_the_rest():
    catalog = Catalog(regression=RegressionRule(metric_kbs=2))
    evidence = [
        Evidence(EvidenceKind.INSTALLED, f"KB50000{index:02d}", "d", "x86_64", T0 + index * HOUR_MS)
        for index in range(5)
    ]
    engine, _ = run_fleet(evidence, catalog)
    sample = engine.metrics.registry.get_sample_value
    assert sample("kbwatch_update_installed_devices", {"kb": "KB5000004"}) == 1
    assert sample("kbwatch_update_installed_devices", {"kb": "KB5000000"}) is None
    assert sample("kbwatch_update_installed_devices", {"kb": "other"}) == 3


@pytest.mark.parametrize("baseline", [0.002, 0.01])
def test_repeated_looks_at_a_fleet_at_the_baseline_rate_rarely_false_alarm(baseline):
    """Ville's bound: under the baseline rate, a false alarm in any of 1000 looks is rarer than alpha."""
    rule = RegressionRule(alpha=0.01, min_affected=1, min_rate_ratio=0.0)
    rng = random.Random(42)
    false_alarms = 0
    runs = 400
    for _ in range(runs):
        affected = 0
        for installed in range(1, 1001):
            affected += rng.random() < baseline
            if judge(affected, installed, baseline, rule).significant:
                false_alarms += 1
                break
    assert false_alarms / runs <= rule.alpha * 2  # sampling slack on 400 runs


def test_a_device_reported_affected_again_earlier_is_counted_once_at_its_earliest():
    evidence = fleet_stream(300, 15)
    first = next(fact for fact in evidence if fact.kind is EvidenceKind.AFFECTED)
    earlier = Evidence(EvidenceKind.AFFECTED, KB, first.device, first.arch, first.time_ms - 30 * MINUTE_MS)
    engine, alerts = run_fleet([*evidence, earlier])
    _, expected = run_fleet([earlier if fact is first else fact for fact in evidence])
    assert alerts == expected
    assert engine.metrics.registry.get_sample_value("kbwatch_update_affected_devices", {"kb": KB}) == 15


def _with_progress(evidence: list[Evidence]) -> list[Evidence]:
    """The facts with a progress marker after every tenth, as a device agent's ticks would add."""
    stream: list[Evidence] = []
    for number, fact in enumerate(evidence):
        stream.append(fact)
        if number % 10 == 9:
            stream.append(Evidence.progress(0, fact.time_ms - 5 * MINUTE_MS))
    return [*stream, Evidence.progress(0, 2**50)]


@pytest.mark.parametrize("crash_at", [40, 150, 250, 340])
def test_evidence_handed_over_again_after_a_crash_counts_once(crash_at):
    # Faust re-delivers what followed its last commit; the table already holds some of it.
    stream = _with_progress(fleet_stream(300, 15))
    clean = FleetEngine({}, Catalog(), Metrics.create())
    expected = [
        alert.to_json()
        for offset, fact in enumerate(stream)
        for alert in clean.process(fact, offset, 1000 + offset)
    ]
    table: dict[str, bytes] = {}
    crashed = FleetEngine(table, Catalog(), Metrics.create())
    alerts = [
        alert.to_json()
        for offset, fact in enumerate(stream[:crash_at])
        for alert in crashed.process(fact, offset, 1000 + offset)
    ]
    restarted = FleetEngine(table, Catalog(), Metrics.create())
    committed = crash_at - 25  # the last commit was a while before the crash
    alerts += [
        alert.to_json()
        for offset, fact in enumerate(stream[committed:], start=committed)
        for alert in restarted.process(fact, offset, 1000 + offset)
    ]
    assert final_by_fingerprint(alerts) == final_by_fingerprint(expected)
    assert table[KB] == clean.states[KB]
    assert restarted.metrics.registry.get_sample_value("kbwatch_evidence_replayed_total") == 25


def test_a_fact_re_sent_while_held_counts_once():
    fact = Evidence(EvidenceKind.INSTALLED, KB, "d1", "x86_64", T0)
    engine = FleetEngine({}, Catalog(), Metrics.create())
    engine.process(fact)
    engine.process(fact)  # a device agent re-sent it after a crash
    engine.process(Evidence.progress(0, 2**50))
    assert engine._kb(KB).installed_total() == 1


def test_a_recreated_evidence_topic_counting_from_zero_again_is_not_taken_for_a_replay():
    first = [Evidence(EvidenceKind.INSTALLED, KB, f"d{n}", "x86_64", T0 + n * MINUTE_MS) for n in range(5)]
    again = [Evidence(EvidenceKind.INSTALLED, KB, f"e{n}", "x86_64", T0 + n * MINUTE_MS) for n in range(5)]
    engine = FleetEngine({}, Catalog(), Metrics.create())
    for offset, fact in enumerate(first):
        engine.process(fact, offset, 1_000 + offset)
    for offset, fact in enumerate(again):  # offsets from 0 again, produced later
        engine.process(fact, offset, 9_000 + offset)
    engine.process(Evidence.progress(0, 2**50), 5, 9_005)
    assert engine._kb(KB).installed_total() == 10
    assert engine.metrics.registry.get_sample_value("kbwatch_evidence_replayed_total") == 0


def _failing_and_affected(engine: FleetEngine) -> tuple[float | None, float | None]:
    sample = engine.metrics.registry.get_sample_value
    return (
        sample("kbwatch_update_failing_devices", {"kb": KB}),
        sample("kbwatch_update_affected_devices", {"kb": KB}),
    )


def _one_still_failing() -> tuple[list[Evidence], list[Evidence]]:
    """Fifteen devices affected, all but the last recovered: the regression stays firing."""
    evidence = fleet_stream(300, 15)
    affected = [fact for fact in evidence if fact.kind is EvidenceKind.AFFECTED]
    recoveries = [
        Evidence(EvidenceKind.RECOVERED, KB, fact.device, fact.arch, fact.time_ms + 8 * HOUR_MS)
        for fact in affected[:-1]
    ]
    return sorted(evidence + recoveries, key=lambda fact: fact.time_ms), recoveries


def test_a_recovery_sent_again_after_it_was_applied_counts_once():
    # A device agent killed after its evidence was flushed but before its state
    # was: the record comes again and the recovery with it, long after its release.
    evidence, recoveries = _one_still_failing()
    engine, alerts = run_fleet(evidence)
    assert [alert["status"] for alert in alerts] == ["firing"]
    assert engine.process(recoveries[0]) == []
    assert _failing_and_affected(engine) == (1, 15)
    assert engine.metrics.registry.get_sample_value("kbwatch_evidence_late_total") == 0  # repeated, not late


def test_a_recovery_sent_again_after_a_relapse_leaves_the_device_failing():
    evidence, recoveries = _one_still_failing()
    engine, _ = run_fleet(evidence)
    first = recoveries[0]
    relapse = Evidence(EvidenceKind.RELAPSED, KB, first.device, first.arch, first.time_ms + HOUR_MS)
    for fact in (relapse, relapse, first):  # the relapse twice, then the older recovery again
        assert engine.process(fact) == []
    assert _failing_and_affected(engine) == (2, 15)


def test_a_recovery_whose_affected_fact_was_lost_still_counts_the_device_affected():
    # A device agent killed after its state was flushed but before its evidence
    # was: the `affected` fact is gone, its recovery comes later. Counting the
    # recovery alone would take a failing device off the count and resolve early.
    evidence, recoveries = _one_still_failing()
    lost = next(
        fact
        for fact in evidence
        if fact.kind is EvidenceKind.AFFECTED and fact.device == recoveries[0].device
    )
    engine, alerts = run_fleet([fact for fact in evidence if fact is not lost])
    assert [alert["status"] for alert in alerts] == ["firing"]
    assert _failing_and_affected(engine) == (1, 15)
    engine.process(lost)  # sent again with the device's next duplicate record: counted once
    assert _failing_and_affected(engine) == (1, 15)


def test_a_recovered_device_said_again_whole_changes_nothing():
    evidence, recoveries = _one_still_failing()
    engine, _ = run_fleet(evidence)
    before = engine.states[KB]
    device = recoveries[0].device
    affected = next(fact for fact in evidence if fact.kind is EvidenceKind.AFFECTED and fact.device == device)
    assert engine.process(affected) == [] and engine.process(recoveries[0]) == []
    assert engine.states[KB] == before


def test_kb_states_round_trip_and_read_as_written_before_the_device_statuses():
    evidence, _ = _one_still_failing()
    engine, _ = run_fleet(evidence)
    state = engine._kb(KB)
    assert len(state.said) == 14
    assert KbState.from_wire(state.to_wire()) == state
    wire = orjson.loads(state.to_wire())
    del wire["s"]  # as 0.8.3 wrote it
    assert KbState.from_wire(orjson.dumps(wire)).said == {}


def test_a_relapse_whose_recovery_was_lost_takes_no_other_device_off_the_recovered():
    evidence, recoveries = _one_still_failing()
    engine, _ = run_fleet(evidence)
    still_failing = next(
        fact
        for fact in evidence
        if fact.kind is EvidenceKind.AFFECTED and fact.device not in {r.device for r in recoveries}
    )
    relapse = Evidence(EvidenceKind.RELAPSED, KB, still_failing.device, still_failing.arch, T0 + 20 * HOUR_MS)
    assert engine.process(relapse) == []
    assert _failing_and_affected(engine) == (1, 15)


def late_baseline(withdrawn: int) -> list[Evidence]:
    """A fleet looping at 3 % without updates, `withdrawn` of its loops taken back by late installs."""
    baseline = [Evidence(EvidenceKind.EXPOSURE, "", f"b{i}", "x86_64", T0 - HOUR_MS) for i in range(2000)]
    loops = [Evidence(EvidenceKind.BACKGROUND_LOOP, "", f"b{i}", "x86_64", T0 - HOUR_MS) for i in range(60)]
    withdrawals = [
        Evidence(EvidenceKind.BACKGROUND_LOOP_WITHDRAWN, "", fact.device, fact.arch, fact.time_ms)
        for fact in loops[:withdrawn]
    ]
    return baseline + loops + withdrawals


def test_baseline_facts_withdrawn_while_held_are_as_if_never_sent():
    withdrawn, _ = run_fleet(late_baseline(60) + fleet_stream(300, 15))
    never_sent, _ = run_fleet(late_baseline(0)[:2000] + fleet_stream(300, 15))
    assert withdrawn.states["_baseline"] == never_sent.states["_baseline"]
    sample = withdrawn.metrics.registry.get_sample_value
    assert sample("kbwatch_evidence_total", {"kind": "background_loop"}) == 0  # neither was applied
    assert sample("kbwatch_evidence_total", {"kind": "background_loop_withdrawn"}) == 0


def test_a_withdrawal_after_its_fact_was_applied_takes_it_off_the_baseline():
    # The background loops made 5 % no worse than usual; withdrawn late, they no longer excuse the KB.
    engine = FleetEngine({}, Catalog(), Metrics.create())
    facts = late_baseline(60)
    for fact in facts[:2060]:
        engine.process(fact)
    assert engine.process(Evidence.progress(0, T0)) == []
    alerts = [alert for fact in facts[2060:] + fleet_stream(300, 15) for alert in engine.process(fact)]
    alerts += engine.process(Evidence.progress(0, 2**50))
    assert [alert.status for alert in alerts] == ["firing"]
    assert engine.metrics.registry.get_sample_value("kbwatch_evidence_late_total") == 60
