"""`PostUpdateBootLoop` through the detector, edge by edge."""

from __future__ import annotations

from dataclasses import replace

from streams.catalog import BootLoopRule, Catalog
from streams.detector import Applied, apply
from streams.device import DeviceState
from streams.engine import Engine
from streams.evidence import EvidenceKind
from streams.metrics import Metrics
from streams.signals import Signal, SignalKind
from streams.timeutil import HOUR_MS
from tests.builders import DEVICE, T0, crash_boot_signals, install, minutes, run, seen


def loop(start: int, crashes: int = 3, gap_minutes: float = 2, first_record: int = 100) -> list[Signal]:
    signals: list[Signal] = []
    for index in range(crashes):
        signals += crash_boot_signals(start + minutes(index * gap_minutes), first_record + index * 10)
    return signals


def firing(alerts):
    return [alert for alert in alerts if alert["status"] == "firing"]


def test_three_crash_boots_within_the_hour_after_an_install_fire_once():
    _, alerts = run([install(T0), *loop(T0 + minutes(20))])
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["status"] == "firing"
    assert alert["labels"] == {
        "alertname": "PostUpdateBootLoop",
        "severity": "critical",
        "device": DEVICE,
        "host": "PC-00042",
        "kb": "KB5055523",
        "os_build": "26100.3775",
        "arch": "arm64",
        "stop_code": "0x18B",
    }
    # startsAt is the record that completed the condition: the third crash boot's 41.
    assert alert["startsAt"] == "2025-04-08T14:24:02.000Z"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert "KB5055523" in alert["annotations"]["description"]
    assert "Known Issue Rollback" in alert["annotations"]["description"]
    assert "secure-kernel" in alert["annotations"]["description"]


def test_two_crash_boots_are_one_short():
    assert run([install(T0), *loop(T0 + minutes(20), crashes=2)])[1] == []


def test_crashes_spread_over_more_than_the_window_do_not_fire():
    assert run([install(T0), *loop(T0 + minutes(20), crashes=3, gap_minutes=31)])[1] == []


def test_a_loop_starting_after_72_hours_is_not_blamed_on_the_update():
    assert run([install(T0), *loop(T0 + 72 * HOUR_MS + minutes(1))])[1] == []
    assert len(run([install(T0), *loop(T0 + 72 * HOUR_MS - minutes(1))])[1]) == 1


def test_a_loop_without_any_install_does_not_fire():
    assert run(loop(T0))[1] == []


def test_crashes_before_the_install_do_not_count():
    assert run([*loop(T0 - minutes(30)), install(T0)])[1] == []


def test_extra_crashes_do_not_page_again():
    _, alerts = run([install(T0), *loop(T0 + minutes(20), crashes=8)])
    assert len(firing(alerts)) == 1


def test_duplicated_deliveries_count_once():
    signals = [install(T0), *loop(T0 + minutes(20), crashes=2)]
    assert run(signals + signals + signals)[1] == []


def test_a_record_delivered_again_after_the_page_sends_the_page_again():
    # The worker died after writing the state and before its alert reached the
    # broker: the record comes again, finds itself counted, and must not stay silent.
    engine = Engine({}, Catalog(), Metrics.create())
    signals = [install(T0), *loop(T0 + minutes(20))]
    outputs = [engine.process(signal) for signal in signals]
    (paged,) = [output for output in outputs if output.alerts]
    last = signals[outputs.index(paged)]
    again = engine.process(last)
    assert again.alerts == [] and [alert.to_wire() for alert in again.resent] == [
        alert.to_wire() for alert in paged.alerts
    ]
    labels = {"alertname": "PostUpdateBootLoop", "severity": "critical", "status": "firing"}
    assert engine.metrics.registry.get_sample_value("kbwatch_alerts_total", labels) == 1  # not counted again
    assert engine.metrics.registry.get_sample_value("kbwatch_alerts_resent_total") == 1  # but counted here


def test_a_record_delivered_again_after_the_page_sends_the_fleet_its_fact_again():
    # Killed after writing the state and before the evidence reached the broker:
    # the fleet agent would never count the device, so the duplicate says it again.
    engine = Engine({}, Catalog(), Metrics.create())
    signals = [install(T0), *loop(T0 + minutes(20))]
    outputs = [engine.process(signal) for signal in signals]
    (paged,) = [output for output in outputs if output.alerts]
    affected = [fact for fact in paged.evidence if fact.kind is EvidenceKind.AFFECTED]
    assert len(affected) == 1
    again = engine.process(signals[outputs.index(paged)])
    assert [fact for fact in again.evidence if fact.kind is not EvidenceKind.EXPOSURE] == affected


def test_forced_power_offs_are_not_crashes():
    signals = [install(T0)]
    for index in range(4):
        at = T0 + minutes(20 + index * 5)
        signals += [
            Signal(DEVICE, SignalKind.BOOT_START, at, record_key=f"System/{index * 2}"),
            Signal(DEVICE, SignalKind.FORCED_OFF, at + 2000, record_key=f"System/{index * 2 + 1}"),
        ]
    assert run(signals)[1] == []


def test_attributed_to_the_most_recent_install_before_the_first_crash():
    signals = [
        install(T0 - 20 * HOUR_MS, kb="KB5053656"),
        install(T0),
        *loop(T0 + minutes(20)),
        install(T0 + minutes(30), kb="KB5058411"),  # after the loop began: not the culprit
    ]
    assert [alert["labels"]["kb"] for alert in run(signals)[1]] == ["KB5055523"]


def test_resolves_after_six_hours_of_the_devices_own_event_time():
    signals = [install(T0), *loop(T0 + minutes(20))]
    last_crash = T0 + minutes(24) + 2000
    _, alerts = run([*signals, seen(last_crash + 6 * HOUR_MS - minutes(10))])
    assert [alert["status"] for alert in alerts] == ["firing"]
    _, alerts = run([*signals, seen(last_crash + 6 * HOUR_MS)])
    assert [alert["status"] for alert in alerts] == ["firing", "resolved"]
    resolved = alerts[1]
    assert resolved["endsAt"] == "2025-04-08T20:24:02.000Z"
    assert resolved["fingerprint"] == alerts[0]["fingerprint"]
    assert resolved["startsAt"] == alerts[0]["startsAt"]


def test_a_crash_during_the_stable_hours_keeps_it_firing():
    signals = [install(T0), *loop(T0 + minutes(20)), *crash_boot_signals(T0 + 3 * HOUR_MS, 900)]
    _, alerts = run([*signals, seen(T0 + 7 * HOUR_MS)])
    assert [alert["status"] for alert in alerts] == ["firing"]


def test_a_new_loop_after_recovery_is_a_new_episode_with_a_new_fingerprint():
    signals = [install(T0), *loop(T0 + minutes(20)), seen(T0 + 8 * HOUR_MS)]
    signals += loop(T0 + 10 * HOUR_MS, first_record=500)
    _, alerts = run(signals)
    assert [alert["status"] for alert in alerts] == ["firing", "resolved", "firing"]
    assert alerts[0]["fingerprint"] != alerts[2]["fingerprint"]


def test_a_device_shipping_its_log_a_day_late_gets_the_same_verdict():
    engine = Engine({}, Catalog(), Metrics.create())
    other = "0d6f1c1e-0000-4000-8000-000000000001"
    # The rest of the fleet is already a day further on when this device's
    # backlog arrives: only the device's own event time counts.
    for hour in range(24, 30):
        engine.process(seen(T0 + hour * HOUR_MS, device=other))
    alerts = [
        alert for signal in [install(T0), *loop(T0 + minutes(20))] for alert in engine.process(signal).alerts
    ]
    assert [(alert.status, alert.labels["device"]) for alert in alerts] == [("firing", DEVICE)]


def test_late_records_older_than_the_retention_are_ignored():
    catalog = Catalog()
    state, _ = run([install(T0), seen(T0 + 50 * HOUR_MS)])
    assert isinstance(state, DeviceState)
    late = crash_boot_signals(T0 + minutes(20), 100)[1]
    assert apply(state, late, catalog).applied is Applied.TOO_LATE


def test_thresholds_come_from_the_catalog():
    catalog = Catalog(boot_loop=replace(BootLoopRule(), min_crash_boots=2))
    assert len(run([install(T0), *loop(T0 + minutes(20), crashes=2)], catalog)[1]) == 1


def test_state_stays_small_and_bounded():
    signals = [install(T0), *loop(T0 + minutes(20), crashes=200, gap_minutes=1)]
    state, alerts = run(signals)
    assert state is not None
    assert len(state.markers) <= Catalog().limits.max_markers
    assert len(firing(alerts)) == 1
    quiet, _ = run([install(T0), seen(T0 + HOUR_MS)])
    assert quiet is not None and len(quiet.to_wire()) < 400


def evidence_of(signals: list[Signal]) -> list[tuple[EvidenceKind, int]]:
    state: DeviceState | None = None
    facts = []
    for signal in signals:
        result = apply(state, signal, Catalog())
        state = result.state
        facts += [(fact.kind, fact.time_ms) for fact in result.evidence]
    return facts


def test_an_install_report_read_after_the_loop_withdraws_the_baseline_facts_it_covers():
    # Install reports come on their own topic: a loop can be read before the
    # report of the install that caused it, and was then no update's fault.
    signals = [seen(T0 + minutes(5)), *loop(T0 + minutes(20))]
    before = evidence_of(signals)
    assert (EvidenceKind.EXPOSURE, T0 + minutes(5)) in before
    background = [time_ms for kind, time_ms in before if kind is EvidenceKind.BACKGROUND_LOOP]
    assert len(background) == 1
    after = evidence_of([*signals, install(T0)])[len(before) :]
    assert (EvidenceKind.EXPOSURE_WITHDRAWN, T0 + minutes(5)) in after
    assert (EvidenceKind.BACKGROUND_LOOP_WITHDRAWN, background[0]) in after
    assert any(kind is EvidenceKind.AFFECTED for kind, _ in after)  # the loop is the update's now
    # Read in event order, the same install withdraws nothing: there is nothing to take back.
    in_order = evidence_of([install(T0), *signals])
    assert not {EvidenceKind.EXPOSURE, EvidenceKind.BACKGROUND_LOOP} & {kind for kind, _ in in_order}


def test_an_install_after_the_baseline_facts_withdraws_none_of_them():
    signals = [seen(T0 + minutes(5)), *loop(T0 + minutes(20))]
    later = evidence_of([*signals, install(T0 + 4 * HOUR_MS)])
    assert not {EvidenceKind.EXPOSURE_WITHDRAWN, EvidenceKind.BACKGROUND_LOOP_WITHDRAWN} & {
        kind for kind, _ in later
    }


def test_the_exposure_sent_is_kept_in_the_state_so_a_restarted_worker_can_withdraw_it():
    state, _ = run([seen(T0 + minutes(5))])
    assert state is not None and state.exposure_ms == T0 + minutes(5)
    assert DeviceState.from_wire(state.to_wire()) == state
