"""A device agent killed between its writes: the verdicts are still replay's.

The device agent writes a device's state (a table changelog record) and then
sends what it caused (alerts, and evidence for the fleet agent) through one
producer; SIGKILL in between keeps one and loses the other, and Faust then
hands the signal over again. Driven here in one process, the way `kbwatch
replay` drives the engines, with the crash placed at every step that changed
an alert or told the fleet agent a device was affected or recovered: every
alert must end as replay ends it, and each `UpdateRegression` keep one
fingerprint. (The chaos test kills real processes, at random moments.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest

from streams.catalog import Catalog
from streams.clock import FleetClock
from streams.engine import Engine, Output
from streams.evidence import EvidenceKind
from streams.fleet import FleetEngine
from streams.metrics import Metrics
from streams.sieve import Sieve, Source
from streams.signals import Signal
from streams.simulate import FleetPlan, SimRecord, spring_2025
from streams.timeutil import HOUR_MS, wall_clock_ms
from tests.builders import (
    DEVICE,
    T0,
    crash_boot_signals,
    final_by_fingerprint,
    install,
    minutes,
    replayed_verdicts,
    restart,
)

STATUS_FACTS = {EvidenceKind.AFFECTED, EvidenceKind.RECOVERED, EvidenceKind.RELAPSED}


@cache
def stream() -> list[SimRecord]:
    return spring_2025(FleetPlan(devices=240, seed=99, keyed=True))[0]


@cache
def steps() -> list[Signal | int]:
    """The stream as the engines see it: device signals, and fleet ticks (their time)."""
    sieve = Sieve(1 << 20)
    clock = FleetClock(Catalog().silence.allowed_lateness_ms)
    now_ms = wall_clock_ms()
    found: list[Signal | int] = []
    for record in stream():
        for result in sieve.sift(record.source, record.value):
            if record.source is Source.WINLOGBEAT and result.signal is not None:
                clock.observe(result.event_ms, result.signal.device, now_ms)
            if result.signal is not None:
                found.append(result.signal)
        watermark = clock.due_tick()
        if watermark:
            found.append(watermark)
    return found


@dataclass
class Run:
    """One device agent (restartable on the same tables) and the fleet agent."""

    states: dict[str, bytes] = field(default_factory=dict)
    watches: dict[str, bytes] = field(default_factory=dict)
    fleet: FleetEngine = field(default_factory=lambda: FleetEngine({}, Catalog(), Metrics.create()))
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.engine = Engine(self.states, Catalog(), Metrics.create(), self.watches)

    def step(self, step: Signal | int) -> Output:
        return self.engine.tick(step) if isinstance(step, int) else self.engine.process(step)

    def send(self, output: Output) -> None:
        alerts = [*output.alerts, *output.resent]
        for fact in output.evidence:
            alerts += self.fleet.process(fact)
        self.alerts += [alert.to_json() for alert in alerts]


@cache
def paging_steps() -> list[int]:
    """The steps that change an alert or tell the fleet agent a device's status."""
    run = Run()
    found = []
    for index, step in enumerate(steps()):
        output = run.step(step)
        if output.alerts or any(fact.kind in STATUS_FACTS for fact in output.evidence):
            found.append(index)
        run.send(output)
    return found


def regression_fingerprints(alerts: list[dict[str, Any]]) -> dict[str, set[str]]:
    firing: dict[str, set[str]] = {}
    for alert in alerts:
        if alert["labels"]["alertname"] == "UpdateRegression" and alert["status"] == "firing":
            firing.setdefault(alert["labels"]["kb"], set()).add(alert["fingerprint"])
    return firing


def test_the_driver_ends_as_replay_does():
    run = Run()
    for step in steps():
        run.send(run.step(step))
    assert final_by_fingerprint(run.alerts) == replayed_verdicts(stream())
    assert len(paging_steps()) >= 10  # enough crash points to mean something


@pytest.mark.parametrize("lost", ["what it caused", "state"])
def test_a_kill_between_state_and_evidence_changes_no_fleet_verdict(lost):
    expected = replayed_verdicts(stream())
    for crash_at in paging_steps():
        run = Run()
        for index, step in enumerate(steps()):
            if index != crash_at:
                run.send(run.step(step))
                continue
            before = dict(run.states), dict(run.watches)
            output = run.step(step)
            if lost == "what it caused":
                pass  # the state's changelog record landed; its alerts and evidence did not
            else:
                run.send(output)  # the evidence landed, the state's changelog record not
                run.states, run.watches = before
            run.restart()
            run.send(run.step(step))  # Faust hands the signal over again
        several = {
            kb: prints for kb, prints in regression_fingerprints(run.alerts).items() if len(prints) > 1
        }
        assert not several, f"crash at step {crash_at}: {several}"
        assert final_by_fingerprint(run.alerts) == expected, f"crash at step {crash_at}"


def test_the_first_tick_after_a_restart_says_every_alert_and_fact_again_once():
    states: dict[str, bytes] = {}
    first = Engine(states, Catalog(), Metrics.create())
    signals = [install(T0)]
    for index in range(3):
        signals += crash_boot_signals(T0 + minutes(20 + 2 * index), 100 + index * 10)
    paged = [alert for signal in signals for alert in first.process(signal, partition=3).alerts]
    assert [alert.status for alert in paged] == ["firing"]

    restarted = Engine(states, Catalog(), Metrics.create())
    output = restarted.tick(T0 + HOUR_MS, partition=5)  # one walk says every partition's devices
    assert [alert.to_wire() for alert in output.resent] == [alert.to_wire() for alert in paged]
    assert output.alerts == []
    assert [fact.kind for fact in output.evidence] == [EvidenceKind.AFFECTED, EvidenceKind.PROGRESS]
    assert restarted.tick(T0 + HOUR_MS, partition=3).resent == []  # said once
    restarted.taken_over([3])  # a rebalance gave it the partition again
    assert len(restarted.tick(T0 + 2 * HOUR_MS, partition=3).resent) == 1
    labels = {"alertname": "PostUpdateBootLoop", "severity": "critical", "status": "firing"}
    assert restarted.metrics.registry.get_sample_value("kbwatch_alerts_total", labels) == 0  # not counted
    assert restarted.metrics.registry.get_sample_value("kbwatch_alerts_resent_total") == 2  # said twice


def test_a_standby_copy_of_another_workers_partition_is_not_said_again():
    """The table holds standby copies too; one behind its owner would bring back a resolved page."""
    states: dict[str, bytes] = {}
    first = Engine(states, Catalog(), Metrics.create())
    signals = [install(T0)]
    for index in range(3):
        signals += crash_boot_signals(T0 + minutes(20 + 2 * index), 100 + index * 10)
    for signal in signals:
        first.process(signal, partition=3)

    restarted = Engine(states, Catalog(), Metrics.create())
    restarted.taken_over([1])  # partition 3 is another worker's; its states here are a standby copy
    assert restarted.tick(T0 + HOUR_MS, partition=1).resent == []
    restarted.taken_over([1, 3])
    assert len(restarted.tick(T0 + HOUR_MS, partition=3).resent) == 1


def test_a_silence_watch_cut_off_by_a_crash_is_set_again_at_the_first_tick():
    """The watch is a record on another changelog than the state's: a crash can keep one only."""
    signals = [install(T0), restart(T0 + minutes(5), 200)]
    states: dict[str, bytes] = {}
    watches: dict[str, bytes] = {}
    first = Engine(states, Catalog(), Metrics.create(), watches)
    for signal in signals:
        first.process(signal, partition=2)
    assert DEVICE in watches
    del watches[DEVICE]  # the state's record landed, the watch's did not

    restarted = Engine(states, Catalog(), Metrics.create(), watches)
    restarted.tick(T0 + minutes(10), partition=2)
    assert DEVICE in watches
    alerts = restarted.tick(T0 + minutes(80), partition=2).alerts
    assert [(alert.labels["alertname"], alert.status) for alert in alerts] == [
        ("DeviceSilentAfterUpdate", "firing")
    ]
