"""Metric names and labels are a contract; series exist at 0 from the start."""

from prometheus_client import CollectorRegistry

from streams.catalog import Catalog
from streams.engine import Engine
from streams.metrics import Metrics
from tests.builders import T0, crash_boot_signals, install, minutes


def test_labelled_series_exist_at_zero_on_a_fresh_registry():
    registry = CollectorRegistry()
    Metrics.create(registry)
    sample = registry.get_sample_value
    assert sample("kbwatch_records_total", {"source": "winlogbeat", "outcome": "rejected"}) == 0
    assert sample("kbwatch_dlq_total", {"reason": "not_json"}) == 0
    assert (
        sample(
            "kbwatch_alerts_total",
            {"alertname": "PostUpdateBootLoop", "severity": "critical", "status": "firing"},
        )
        == 0
    )
    assert sample("kbwatch_signals_total", {"kind": "dirty", "outcome": "duplicate"}) == 0
    assert sample("kbwatch_build_info", {"version": __import__("streams").__version__}) == 1


def test_no_metric_has_a_device_or_host_label():
    registry = CollectorRegistry()
    Metrics.create(registry)
    for family in registry.collect():
        assert family.name.startswith("kbwatch_")
        for sample in family.samples:
            assert not {"device", "host", "host_id"} & set(sample.labels)


def test_the_engine_counts_crash_boots_alerts_and_devices():
    registry = CollectorRegistry()
    engine = Engine({}, Catalog(), Metrics.create(registry))
    signals = [install(T0)]
    for index in range(3):
        signals += crash_boot_signals(T0 + minutes(20 + 2 * index), 100 + index * 10)
    for signal in signals + signals[1:4]:
        engine.process(signal)
    sample = registry.get_sample_value
    assert sample("kbwatch_crash_boots_total") == 3
    assert sample("kbwatch_signals_total", {"kind": "dirty", "outcome": "duplicate"}) == 1
    assert (
        sample(
            "kbwatch_alerts_total",
            {"alertname": "PostUpdateBootLoop", "severity": "critical", "status": "firing"},
        )
        == 1
    )
    assert sample("kbwatch_devices_tracked") == 1
    assert sample("kbwatch_boot_loops_total", {"stop_code": "0x18B"}) == 1
    assert sample("kbwatch_boot_loops_total", {"stop_code": "other"}) == 0


def test_idle_devices_are_forgotten_in_event_time_not_wall_time():
    registry = CollectorRegistry()
    engine = Engine({}, Catalog(), Metrics.create(registry))
    engine.process(install(T0, device="old-device"))
    engine.tick(T0 + 3_600_000)
    assert engine.sweep() == 0
    engine.process(install(T0 + 15 * 24 * 3_600_000, device="new-device"))
    engine.tick(T0 + 15 * 24 * 3_600_000)  # a new day of fleet time: the partition is swept
    assert set(engine.states) == {"new-device"}
    assert registry.get_sample_value("kbwatch_devices_expired_total") == 1
    assert registry.get_sample_value("kbwatch_devices_tracked") == 1


def test_the_readme_documents_every_metric():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    registry = CollectorRegistry()
    Metrics.create(registry)
    names = set()
    for family in registry.collect():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        names.add(family.name + suffix)
    assert [name for name in sorted(names) if f"`{name}`" not in readme] == []


def test_an_unreadable_stored_state_starts_the_device_afresh_instead_of_stopping_the_agent():
    engine = Engine({"old-layout": b'{"d": "old-layout", "n": 1}'}, Catalog(), Metrics.create())
    engine.process(install(T0, device="old-layout"))
    assert b'"v":2' in engine.states["old-layout"]
    assert engine.sweep() == 0
